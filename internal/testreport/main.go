// Command testreport turns `go test -json` into what `make test` prints:
// the usual package lines ("ok", "FAIL"), the output of each failed test in
// full, a line for each long test as it ends (so a 10-minute suite shows
// progress), and at the end the slowest tests with their durations, so that
// every change sees what it cost, then a digest of the failed tests with
// the last lines each logged (what a CI log's tail shows). It never fails
// a test for being slow.
//
//	go test -json ./... | go run ./internal/testreport -save bin/test.json
//	go run ./internal/testreport -slowest 10 < bin/test.json   # the report alone
//
// It exits 1 when a test, a package or a build failed, whatever the exit
// status of the go test before it in a pipe.
package main

import (
	"bufio"
	"cmp"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// event is one line of `go test -json` (cmd/test2json).
type event struct {
	Time    time.Time
	Action  string
	Package string
	Test    string
	Elapsed float64
	Output  string
}

// timing is how long one test took.
type timing struct {
	Package, Test string
	// Elapsed is the test's own time; Waited, the part of go test's time
	// it spent waiting for a lab slot (labtest), before it began.
	Elapsed, Waited time.Duration
	Failed          bool
}

// waitedMarker is what labtest logs when a test waited for a lab slot
// (labtest.WaitedPrefix; not imported, so that the report builds
// without the lab).
const waitedMarker = "labtest: waited "

// waited finds labtest's line in a test's output and returns the wait.
func waited(out []string) time.Duration {
	for _, line := range out {
		_, rest, ok := strings.Cut(line, waitedMarker)
		if !ok {
			continue
		}
		secs, _, _ := strings.Cut(rest, "s ")
		if v, err := strconv.ParseFloat(secs, 64); err == nil {
			return time.Duration(v * float64(time.Second))
		}
	}
	return 0
}

// report follows a stream of events.
type report struct {
	out io.Writer
	// progressAfter: a top-level test that took longer gets a line when it
	// ends; zero prints none.
	progressAfter time.Duration
	// quiet prints nothing but the summary (replaying a saved stream).
	quiet bool

	pending  map[string][]string // output of running tests, by package and test
	tests    []timing
	failures []failure
	failed   bool
}

// failure is a failed test and what its test files logged: the lines that
// say why it failed, for the digest at the end of the report (a failing
// end-to-end test prints pages of lab output after them, and a CI log's
// tail would show only those).
type failure struct {
	Package, Test string
	Lines         []string
}

// logLine matches what testing prints for t.Log, t.Error and t.Fatal: an
// indented "file.go:line: " (a continuation of a multi-line message is
// indented further and not matched).
var logLine = regexp.MustCompile(`^ {4}(?: {4})*[\w.-]+\.go:\d+: `)

// digestLines is how many of a failed test's log lines the digest keeps
// (the last ones), and digestWidth how much of each.
const (
	digestLines = 12
	digestWidth = 300
)

// newFailure keeps the log lines of a failed test's output.
func newFailure(pkg, test string, out []string) failure {
	f := failure{Package: pkg, Test: test}
	for _, chunk := range out {
		for line := range strings.SplitSeq(strings.TrimRight(chunk, "\n"), "\n") {
			if !logLine.MatchString(line) || strings.Contains(line, waitedMarker) {
				continue
			}
			line = strings.TrimSpace(line)
			if r := []rune(line); len(r) > digestWidth {
				line = string(r[:digestWidth]) + "…"
			}
			f.Lines = append(f.Lines, line)
		}
	}
	if len(f.Lines) > digestLines {
		f.Lines = f.Lines[len(f.Lines)-digestLines:]
	}
	return f
}

// digest writes each failed test with the last lines its test files
// logged, after everything else.
func (r *report) digest(w io.Writer) {
	if len(r.failures) == 0 {
		return
	}
	fmt.Fprintf(w, "\nFailed: %d test(s); the last lines each logged:\n", len(r.failures))
	for _, f := range r.failures {
		fmt.Fprintf(w, "--- %s (%s)\n", f.Test, short(f.Package))
		for _, line := range f.Lines {
			fmt.Fprintf(w, "    %s\n", line)
		}
	}
}

func newReport(out io.Writer, progressAfter time.Duration) *report {
	return &report{out: out, progressAfter: progressAfter, pending: map[string][]string{}}
}

func key(pkg, test string) string { return pkg + "\x00" + test }

// line handles one line of the stream: an event, or text that is not one
// (a build error, printed as it is).
func (r *report) line(raw []byte) {
	var ev event
	if len(raw) == 0 || raw[0] != '{' || json.Unmarshal(raw, &ev) != nil || ev.Action == "" {
		r.print(string(raw) + "\n")
		return
	}
	switch ev.Action {
	case "build-output":
		r.print(ev.Output)
	case "build-fail":
		r.failed = true
	case "output":
		if ev.Test == "" {
			// The package's own lines: "ok", "FAIL", a panic or a timeout.
			if ev.Output != "PASS\n" && !strings.HasPrefix(ev.Output, "=== ") {
				r.print(ev.Output)
			}
			return
		}
		k := key(ev.Package, ev.Test)
		r.pending[k] = append(r.pending[k], ev.Output)
	case "pass", "fail", "skip":
		if ev.Action == "fail" {
			r.failed = true
		}
		if ev.Test == "" {
			return
		}
		k := key(ev.Package, ev.Test)
		out := r.pending[k]
		delete(r.pending, k)
		if ev.Action == "fail" {
			r.print(strings.Join(out, ""))
			r.failures = append(r.failures, newFailure(ev.Package, ev.Test, out))
		}
		if ev.Action == "skip" || strings.Contains(ev.Test, "/") {
			return
		}
		t := timing{Package: ev.Package, Test: ev.Test, Elapsed: time.Duration(ev.Elapsed * float64(time.Second)), Failed: ev.Action == "fail"}
		t.Waited = min(waited(out), t.Elapsed)
		t.Elapsed -= t.Waited
		r.tests = append(r.tests, t)
		if r.progressAfter > 0 && t.Elapsed >= r.progressAfter && ev.Action == "pass" {
			r.print(fmt.Sprintf("    done %s (%s) %.1fs\n", t.Test, short(t.Package), t.Elapsed.Seconds()))
		}
	}
}

// end flushes what is left: the output of tests that never ended (the
// binary crashed or timed out) is printed, since it says where.
func (r *report) end() {
	keys := make([]string, 0, len(r.pending))
	for k := range r.pending {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if len(r.pending[k]) > 0 {
			r.failed = true
			r.print(strings.Join(r.pending[k], ""))
			pkg, test, _ := strings.Cut(k, "\x00")
			r.failures = append(r.failures, newFailure(pkg, test+" (never ended)", r.pending[k]))
		}
	}
	r.pending = map[string][]string{}
}

func (r *report) print(s string) {
	if !r.quiet {
		fmt.Fprint(r.out, s)
	}
}

// slowest writes the n slowest top-level tests.
func (r *report) slowest(w io.Writer, n int) {
	tests := slices.Clone(r.tests)
	slices.SortStableFunc(tests, func(a, b timing) int { return cmp.Compare(b.Elapsed, a.Elapsed) })
	if len(tests) > n {
		tests = tests[:n]
	}
	if len(tests) == 0 {
		return
	}
	fmt.Fprintf(w, "\nThe %d slowest tests:\n", len(tests))
	for _, t := range tests {
		mark := ""
		if t.Waited > 0 {
			mark += fmt.Sprintf("  (after %.1fs waiting for a lab)", t.Waited.Seconds())
		}
		if t.Failed {
			mark += "  (failed)"
		}
		fmt.Fprintf(w, "  %7.1fs  %s  %s%s\n", t.Elapsed.Seconds(), short(t.Package), t.Test, mark)
	}
}

// short drops the module path from a package's import path.
func short(pkg string) string {
	if _, rest, ok := strings.Cut(pkg, "/spillway/"); ok {
		return rest
	}
	return pkg
}

func run(stdin io.Reader, stdout io.Writer, args []string) (failed bool, err error) {
	fs := flag.NewFlagSet("testreport", flag.ContinueOnError)
	save := fs.String("save", "", "also write the raw stream to this file")
	n := fs.Int("slowest", 10, "how many of the slowest tests to list")
	progress := fs.Duration("progress", 30*time.Second, "print a line when a test that took longer than this ends (0: never)")
	summary := fs.Bool("summary", false, "print only the slowest tests (to replay a saved stream)")
	if err := fs.Parse(args); err != nil {
		return false, err
	}
	var in io.Reader = stdin
	if *save != "" {
		f, err := os.Create(*save)
		if err != nil {
			return false, fmt.Errorf("saving the test stream: %w", err)
		}
		defer f.Close()
		in = io.TeeReader(stdin, f)
	}
	r := newReport(stdout, *progress)
	r.quiet = *summary
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 0, 64*1024), 16*1024*1024)
	for sc.Scan() {
		r.line(sc.Bytes())
	}
	if err := sc.Err(); err != nil {
		return true, fmt.Errorf("reading the test stream: %w", err)
	}
	r.end()
	r.slowest(stdout, *n)
	r.digest(stdout)
	return r.failed, nil
}

func main() {
	failed, err := run(os.Stdin, os.Stdout, os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "testreport:", err)
		os.Exit(2)
	}
	if failed {
		os.Exit(1)
	}
}
