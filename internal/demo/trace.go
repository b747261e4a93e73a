package demo

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Point is one row of a traffic trace: the request rate at an offset from
// the start.
type Point struct {
	At   time.Duration
	Rate float64 // requests per second
}

// Trace is a traffic shape: request rates at increasing offsets, linearly
// interpolated between them. After the last point the rate stays put.
type Trace struct {
	Name   string
	Points []Point
}

// ReadTraceFile parses a CSV trace file of `seconds,requests_per_second`
// rows. Blank lines, '#' comments and a header row are allowed.
func ReadTraceFile(path string) (*Trace, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading trace: %w", err)
	}
	defer f.Close()
	return ParseTrace(path, f)
}

// ParseTrace parses a trace; name is used in errors.
func ParseTrace(name string, r io.Reader) (*Trace, error) {
	t := &Trace{Name: name}
	sc := bufio.NewScanner(r)
	line, rows := 0, 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		rows++
		cols := strings.Split(text, ",")
		if len(cols) != 2 {
			return nil, fmt.Errorf("%s:%d: want 2 columns (seconds,requests_per_second), got %d", name, line, len(cols))
		}
		secText, rateText := strings.TrimSpace(cols[0]), strings.TrimSpace(cols[1])
		sec, err := strconv.ParseFloat(secText, 64)
		if err != nil {
			if rows == 1 && secText == "seconds" {
				continue // header
			}
			return nil, fmt.Errorf("%s:%d: seconds: want a number, got %q", name, line, secText)
		}
		rate, err := strconv.ParseFloat(rateText, 64)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: requests_per_second: want a number, got %q", name, line, rateText)
		}
		switch {
		case sec < 0 || math.IsNaN(sec) || math.IsInf(sec, 0):
			return nil, fmt.Errorf("%s:%d: seconds: must be a non-negative number, got %s", name, line, secText)
		case rate < 0 || math.IsNaN(rate) || math.IsInf(rate, 0):
			return nil, fmt.Errorf("%s:%d: requests_per_second: must be a non-negative number, got %s", name, line, rateText)
		case len(t.Points) > 0 && secondsOf(t.Points[len(t.Points)-1]) >= sec:
			return nil, fmt.Errorf("%s:%d: seconds: must increase, %s follows %g", name, line, secText, secondsOf(t.Points[len(t.Points)-1]))
		}
		t.Points = append(t.Points, Point{At: time.Duration(sec * float64(time.Second)), Rate: rate})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if len(t.Points) == 0 {
		return nil, fmt.Errorf("%s: the trace has no rows", name)
	}
	return t, nil
}

func secondsOf(p Point) float64 { return p.At.Seconds() }

// Duration is the offset of the last point.
func (t *Trace) Duration() time.Duration { return t.Points[len(t.Points)-1].At }

// RateAt returns the interpolated request rate at offset d.
func (t *Trace) RateAt(d time.Duration) float64 {
	ps := t.Points
	if d <= ps[0].At {
		return ps[0].Rate
	}
	i := sort.Search(len(ps), func(i int) bool { return ps[i].At >= d })
	if i == len(ps) {
		return ps[len(ps)-1].Rate
	}
	a, b := ps[i-1], ps[i]
	frac := float64(d-a.At) / float64(b.At-a.At)
	return a.Rate + frac*(b.Rate-a.Rate)
}

// Requests returns how many requests the trace sends between offsets from
// and to: the integral of the rate.
func (t *Trace) Requests(from, to time.Duration) float64 {
	if to <= from {
		return 0
	}
	// The rate is piecewise linear, so the trapezoid rule over the trace's
	// own break points is exact.
	cuts := []time.Duration{from}
	for _, p := range t.Points {
		if p.At > from && p.At < to {
			cuts = append(cuts, p.At)
		}
	}
	cuts = append(cuts, to)
	total := 0.0
	for i := 1; i < len(cuts); i++ {
		a, b := cuts[i-1], cuts[i]
		total += (t.RateAt(a) + t.RateAt(b)) / 2 * (b - a).Seconds()
	}
	return total
}
