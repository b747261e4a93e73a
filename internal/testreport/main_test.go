package main

import (
	"bytes"
	"strings"
	"testing"
)

// stream is what `go test -json` prints for two packages: one passes with
// a slow and a fast test, one fails a subtest and then crashes in a test
// that never ends.
const stream = `{"Action":"start","Package":"github.com/spillwayhq/spillway/a"}
{"Action":"run","Package":"github.com/spillwayhq/spillway/a","Test":"TestSlow"}
{"Action":"output","Package":"github.com/spillwayhq/spillway/a","Test":"TestSlow","Output":"=== RUN   TestSlow\n"}
{"Action":"output","Package":"github.com/spillwayhq/spillway/a","Test":"TestSlow","Output":"    labtest.go:160: labtest: waited 40.0s for 1 of 3 lab slots ($SPILLWAY_E2E_LABS)\n"}
{"Action":"output","Package":"github.com/spillwayhq/spillway/a","Test":"TestSlow","Output":"    slow_test.go:9: lab log noise\n"}
{"Action":"pass","Package":"github.com/spillwayhq/spillway/a","Test":"TestSlow","Elapsed":95.25}
{"Action":"pass","Package":"github.com/spillwayhq/spillway/a","Test":"TestFast","Elapsed":0.01}
{"Action":"skip","Package":"github.com/spillwayhq/spillway/a","Test":"TestSkipped","Elapsed":0}
{"Action":"output","Package":"github.com/spillwayhq/spillway/a","Output":"PASS\n"}
{"Action":"output","Package":"github.com/spillwayhq/spillway/a","Output":"ok  \tgithub.com/spillwayhq/spillway/a\t95.3s\n"}
{"Action":"pass","Package":"github.com/spillwayhq/spillway/a","Elapsed":95.3}
# github.com/spillwayhq/spillway/c [build failed]
{"Action":"output","Package":"github.com/spillwayhq/spillway/b","Test":"TestTable/bad_row","Output":"    table_test.go:12: got 2, want 3\n"}
{"Action":"fail","Package":"github.com/spillwayhq/spillway/b","Test":"TestTable/bad_row","Elapsed":0.5}
{"Action":"fail","Package":"github.com/spillwayhq/spillway/b","Test":"TestTable","Elapsed":0.6}
{"Action":"output","Package":"github.com/spillwayhq/spillway/b","Test":"TestCrash","Output":"    crash_test.go:3: about to crash\n"}
{"Action":"output","Package":"github.com/spillwayhq/spillway/b","Output":"panic: boom\n"}
`

func TestReportPrintsFailuresProgressAndTheSlowest(t *testing.T) {
	var out bytes.Buffer
	failed, err := run(strings.NewReader(stream), &out, []string{"-progress", "30s", "-slowest", "2"})
	if err != nil {
		t.Fatal(err)
	}
	if !failed {
		t.Error("a failed test and a crash: the report must fail")
	}
	got := out.String()
	for _, want := range []string{
		"ok  \tgithub.com/spillwayhq/spillway/a\t95.3s\n",
		"# github.com/spillwayhq/spillway/c [build failed]\n",
		"    done TestSlow (a) 55.2s\n",
		"table_test.go:12: got 2, want 3",
		"panic: boom",
		"crash_test.go:3: about to crash", // a test that never ended says where
		"The 2 slowest tests:\n     55.2s  a  TestSlow  (after 40.0s waiting for a lab)\n      0.6s  b  TestTable  (failed)\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("the report lacks %q:\n%s", want, got)
		}
	}
	// The digest comes last, with the lines that say why.
	if _, digest, ok := strings.Cut(got, "\nFailed: 3 test(s)"); !ok {
		t.Errorf("the report ends without a digest of the failures:\n%s", got)
	} else if want := "--- TestTable/bad_row (b)\n    table_test.go:12: got 2, want 3\n--- TestTable (b)\n--- TestCrash (never ended) (b)\n    crash_test.go:3: about to crash\n"; !strings.Contains(digest, want) {
		t.Errorf("the digest lacks %q:\n%s", want, digest)
	}
	for _, unwanted := range []string{"lab log noise", "PASS\n", "TestSkipped", "TestFast"} {
		if strings.Contains(got, unwanted) {
			t.Errorf("the report shows %q, which only a failure should:\n%s", unwanted, got)
		}
	}
}

func TestReportPassesWhenEverythingPasses(t *testing.T) {
	var out bytes.Buffer
	pass := strings.Join(strings.Split(stream, "\n")[:11], "\n")
	failed, err := run(strings.NewReader(pass), &out, []string{"-summary"})
	if err != nil {
		t.Fatal(err)
	}
	if failed {
		t.Errorf("every test passed, but the report failed:\n%s", out.String())
	}
	if got := out.String(); got != "\nThe 2 slowest tests:\n     55.2s  a  TestSlow  (after 40.0s waiting for a lab)\n      0.0s  a  TestFast\n" {
		t.Errorf("-summary prints only the slowest tests, got:\n%s", got)
	}
}
