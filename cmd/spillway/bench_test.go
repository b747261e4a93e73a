package main

import (
	"strings"
	"testing"
)

func TestBenchScaleoutPrintsFigures(t *testing.T) {
	t.Setenv("AWS_CA_BUNDLE", "/nonexistent/ca.pem") // the command must clear it
	out, errOut, err := runCmd(t, "bench", "scaleout", "--hosts", "10", "--seed", "3")
	if err != nil {
		t.Fatalf("bench scaleout: %v\n%s", err, errOut)
	}
	// Not a terminal: a plain line per scenario on stderr.
	if !strings.HasPrefix(errOut, "plain+10: placed 10 of 10 in ") || strings.Contains(errOut, "\r") {
		t.Errorf("stderr = %q", errOut)
	}
	for _, want := range []string{"plain+10 (seed 3): placed 10 of 10 burst allocations", "time to capacity     p50 ",
		"physical lower bound p50 ", "over the lower bound at p99", "fallback latency     none", "decision latency     p50 ",
		"peak RSS ", "Sources of the latencies:"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestBenchScaleoutRejectsUnknownScenario(t *testing.T) {
	if _, _, err := runCmd(t, "bench", "scaleout", "--scenario", "nope"); err == nil || !strings.Contains(err.Error(), `unknown scenario "nope"`) {
		t.Fatalf("err = %v", err)
	}
}
