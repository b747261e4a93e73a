package bandwidth

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Bandwidth
		err  string
	}{
		{in: "1Gbps", want: 1e9},
		{in: "100Mbps", want: 100e6},
		{in: "100 Mbit/s", want: 100e6},
		{in: "2.5gbps", want: 2.5e9},
		{in: "20Mbps", want: 20e6},
		{in: "500kbps", want: 500e3},
		{in: "10Gbit/s", want: 10e9},
		{in: "0Mbps", want: 0},
		{in: "7bps", want: 7},
		{in: "100", err: "expected a bandwidth"},
		{in: "fast", err: "expected a bandwidth"},
		{in: "", err: "expected a bandwidth"},
		{in: "1GB", err: "unknown unit"},
		{in: "-1Gbps", err: "must not be negative"},
		{in: "1.2.3Gbps", err: "expected a bandwidth"},
	} {
		got, err := Parse(tc.in)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("Parse(%q) = %v, %v; want an error with %q", tc.in, got, err, tc.err)
		case tc.err == "" && (err != nil || got != tc.want):
			t.Errorf("Parse(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestString(t *testing.T) {
	for b, want := range map[Bandwidth]string{1e9: "1Gbps", 100e6: "100Mbps", 2.5e9: "2.5Gbps", 20e6: "20Mbps", 999: "999bps", 1500: "1.5kbps", 0: "0bps"} {
		if got := b.String(); got != want {
			t.Errorf("%v.String() = %q, want %q", float64(b), got, want)
		}
		if back, err := Parse(want); err != nil || back != b {
			t.Errorf("Parse(%q) = %v, %v; want %v", want, back, err, float64(b))
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"1Gbps", "100 Mbit/s", "-1bps", "1e3Mbps", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := Parse(s)
		if err == nil && b < 0 {
			t.Fatalf("Parse(%q) = %v: negative", s, b)
		}
	})
}
