// Package metrics owns where Spillway reads metric values from: the
// [Source] interface that scaling checks query, its Prometheus
// implementation over the Prometheus HTTP API (client_golang api/v1) with
// timeouts and basic or bearer auth, and the checks every scaling input
// needs: exactly one series ([One]), a real number, and a sample recent
// enough to trust (stale-data detection by sample timestamp).
//
// It does not interpret values; policies does that, purely.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spillwayhq/spillway/policies"
)

// Sample is one series' value at a time. It is the policies package's
// type, so readings pass to the pure strategies as they are. For
// [Prometheus.Query] its Time is the newest evaluation at which the series
// had data, so an old Time means the data stopped.
type Sample = policies.Sample

// Source evaluates PromQL.
//
// Query returns every series the expression yields at time at, each with
// its newest sample at or before at. An expression that yields nothing
// returns no samples and no error; [One] turns that into [ErrNoData].
// Errors are wrapped with the query; a cancelled or expired ctx stops the
// query.
type Source interface {
	Query(ctx context.Context, promql string, at time.Time) ([]Sample, error)
}

// ErrNoData is returned by [One] when the query returned no series.
var ErrNoData = errors.New("the query returned no series")

// StaleError is returned by [One] when the newest sample is older than
// allowed.
type StaleError struct {
	Age, StaleAfter time.Duration
	SampleTime      time.Time
}

func (e *StaleError) Error() string {
	return fmt.Sprintf("stale data: newest sample is %s old (at %s), stale after %s",
		e.Age.Round(time.Second), e.SampleTime.UTC().Format(time.RFC3339), e.StaleAfter)
}

// CardinalityError is returned by [One] when a query meant to give one
// value returned several series. Wrap the query in an aggregation such as
// sum(...) or max(...).
type CardinalityError struct {
	Series []map[string]string
}

func (e *CardinalityError) Error() string {
	var ls []string
	for i, s := range e.Series {
		if i == 3 {
			ls = append(ls, fmt.Sprintf("and %d more", len(e.Series)-3))
			break
		}
		ls = append(ls, FormatLabels(s))
	}
	return fmt.Sprintf("expected one series, got %d (%s); aggregate the query, e.g. sum(...) or max(...)", len(e.Series), strings.Join(ls, ", "))
}

// NotNumberError is returned by [One] for NaN or infinite values.
type NotNumberError struct{ Value float64 }

func (e *NotNumberError) Error() string {
	return "value is not a number: " + strconv.FormatFloat(e.Value, 'g', -1, 64)
}

// IsStale reports whether err is or wraps a [StaleError].
func IsStale(err error) bool {
	var e *StaleError
	return errors.As(err, &e)
}

// IsCardinality reports whether err is or wraps a [CardinalityError].
func IsCardinality(err error) bool {
	var e *CardinalityError
	return errors.As(err, &e)
}

// One checks that samples hold exactly one series with a real value no
// older than staleAfter at at (staleAfter 0 disables the age check), and
// returns it. It returns [ErrNoData], *[CardinalityError],
// *[NotNumberError] or *[StaleError].
//
// Series that stopped (stale) are ignored when others are fresh, so a
// series replaced by one with new labels does not count twice.
func One(samples []Sample, at time.Time, staleAfter time.Duration) (Sample, error) {
	if len(samples) > 1 && staleAfter > 0 {
		var fresh []Sample
		for _, s := range samples {
			if !s.Time.IsZero() && at.Sub(s.Time) <= staleAfter {
				fresh = append(fresh, s)
			}
		}
		if len(fresh) > 0 {
			samples = fresh
		}
	}
	switch len(samples) {
	case 0:
		return Sample{}, ErrNoData
	case 1:
	default:
		e := &CardinalityError{}
		for _, s := range samples {
			e.Series = append(e.Series, s.Labels)
		}
		return Sample{}, e
	}
	s := samples[0]
	if math.IsNaN(s.Value) || math.IsInf(s.Value, 0) {
		return Sample{}, &NotNumberError{Value: s.Value}
	}
	if staleAfter > 0 {
		if age := at.Sub(s.Time); s.Time.IsZero() || age > staleAfter {
			return Sample{}, &StaleError{Age: age, StaleAfter: staleAfter, SampleTime: s.Time}
		}
	}
	return s, nil
}

// FormatLabels writes labels as {a="1", b="2"}, sorted by name.
func FormatLabels(ls map[string]string) string {
	keys := make([]string, 0, len(ls))
	for k := range ls {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + strconv.Quote(ls[k])
	}
	return "{" + strings.Join(parts, ", ") + "}"
}
