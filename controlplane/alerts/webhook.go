// Package alerts owns Spillway's Alertmanager intake: decoding and checking
// webhook notifications (payload version 4), and the set of alerts firing
// now, deduplicated by fingerprint so a repeated notification of the same
// group never counts twice. What an alert makes Spillway do is decided by
// the policies' alert rules; this package only says what is firing, what is
// new and what is a repeat.
package alerts

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/spillwayhq/spillway/internal/strictjson"
)

// DefaultMaxPayloadBytes is the default bound of a notification's body.
// Alertmanager puts every alert of a group in one notification (10,000
// alerts are about 2.6 MB), and it never retries a 4xx: a limit too small
// for a real group loses those alerts.
const DefaultMaxPayloadBytes = 16 << 20

// TooLargeError is a body over the receiver's limit.
type TooLargeError struct{ Limit int64 }

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("the body is larger than %d bytes (alerts.max_body_bytes)", e.Limit)
}

// Status of an alert or a notification.
const (
	StatusFiring   = "firing"
	StatusResolved = "resolved"
)

// Notification is Alertmanager's webhook payload, version 4.
type Notification struct {
	Version           string            `json:"version"`
	GroupKey          string            `json:"groupKey"`
	TruncatedAlerts   int               `json:"truncatedAlerts"`
	Status            string            `json:"status"`
	Receiver          string            `json:"receiver"`
	GroupLabels       map[string]string `json:"groupLabels"`
	CommonLabels      map[string]string `json:"commonLabels"`
	CommonAnnotations map[string]string `json:"commonAnnotations"`
	ExternalURL       string            `json:"externalURL"`
	Alerts            []Alert           `json:"alerts"`
}

// Alert is one alert of a notification.
type Alert struct {
	Status string            `json:"status"`
	Labels map[string]string `json:"labels"`
	// Annotations are not read: nothing Spillway decides depends on them,
	// and a group of 10,000 alerts would hold them all in memory.
	StartsAt     time.Time `json:"startsAt"`
	EndsAt       time.Time `json:"endsAt"`
	GeneratorURL string    `json:"generatorURL"`
	Fingerprint  string    `json:"fingerprint"`
}

// Name is the alert's alertname label.
func (a Alert) Name() string { return a.Labels["alertname"] }

// PayloadError is a notification Spillway refuses, with where and why.
type PayloadError struct {
	// Field is the JSON path, e.g. "alerts[2].fingerprint"; empty for the document.
	Field string
	// Line and Column locate a syntax or type error in the body, when known.
	Line, Column int
	Msg          string
}

func (e *PayloadError) Error() string {
	var b strings.Builder
	if e.Line > 0 {
		fmt.Fprintf(&b, "line %d, column %d: ", e.Line, e.Column)
	}
	if e.Field != "" {
		b.WriteString(e.Field + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// PayloadErrors is every problem found in one notification.
type PayloadErrors []*PayloadError

func (es PayloadErrors) Error() string {
	msgs := make([]string, len(es))
	for i, e := range es {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "; ")
}

// Decode reads and checks one notification of at most limit bytes (a
// larger one is a *TooLargeError). Unknown fields are allowed, so an
// Alertmanager upgrade that adds fields keeps working; a key given twice
// is not; every field Spillway relies on is checked, and all problems are
// reported at once.
func Decode(r io.Reader, limit int64) (*Notification, error) {
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig) || int64(len(data)) > limit:
		return nil, &TooLargeError{Limit: limit}
	case err != nil:
		return nil, &PayloadError{Msg: fmt.Sprintf("reading the body: %v", err)}
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, &PayloadError{Msg: "the body is empty; want an Alertmanager webhook notification (JSON)"}
	}
	var dup *strictjson.DuplicateKeyError
	if errors.As(strictjson.CheckDuplicateKeys(data, strictjson.Exact), &dup) {
		return nil, &PayloadError{Line: dup.Line, Column: dup.Column, Field: dup.Path, Msg: "duplicate key"}
	}
	var n Notification
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&n); err != nil {
		return nil, jsonError(data, err)
	}
	if dec.More() {
		return nil, &PayloadError{Msg: "the body holds more than one JSON document"}
	}
	if errs := n.check(); len(errs) > 0 {
		return nil, errs
	}
	return &n, nil
}

func (n *Notification) check() PayloadErrors {
	var errs PayloadErrors
	bad := func(field, format string, args ...any) {
		errs = append(errs, &PayloadError{Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	if n.Version != "4" {
		bad("version", "want \"4\" (Alertmanager's webhook payload version), got %q", n.Version)
	}
	if n.Status != StatusFiring && n.Status != StatusResolved {
		bad("status", "want firing or resolved, got %q", n.Status)
	}
	if len(n.Alerts) == 0 {
		bad("alerts", "want at least one alert")
	}
	for i, a := range n.Alerts {
		if (a.Status == StatusFiring || a.Status == StatusResolved) && a.Fingerprint != "" && a.Name() != "" && !a.StartsAt.IsZero() {
			continue // the common case, without formatting a path
		}
		at := fmt.Sprintf("alerts[%d]", i)
		if a.Status != StatusFiring && a.Status != StatusResolved {
			bad(at+".status", "want firing or resolved, got %q", a.Status)
		}
		if a.Fingerprint == "" {
			bad(at+".fingerprint", "required: Spillway deduplicates by it")
		}
		if a.Name() == "" {
			bad(at+".labels.alertname", "required")
		}
		if a.StartsAt.IsZero() {
			bad(at+".startsAt", "required")
		}
	}
	return errs
}

// jsonError turns a decoding error into a PayloadError with a line and column.
func jsonError(data []byte, err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	var tim *time.ParseError
	switch {
	case errors.As(err, &syn):
		// Offset counts the offending byte; point at it.
		line, col := strictjson.Position(data, max(syn.Offset-1, 0))
		return &PayloadError{Line: line, Column: col, Msg: "malformed JSON: " + syn.Error()}
	case errors.As(err, &typ):
		line, col := strictjson.Position(data, typ.Offset)
		return &PayloadError{Line: line, Column: col, Field: typ.Field, Msg: fmt.Sprintf("want %s, got a JSON %s", typ.Type, typ.Value)}
	case errors.As(err, &tim):
		return &PayloadError{Msg: fmt.Sprintf("bad time %q: want RFC 3339", tim.Value)}
	case errors.Is(err, io.ErrUnexpectedEOF):
		line, col := strictjson.Position(data, int64(len(data)))
		return &PayloadError{Line: line, Column: col, Msg: "malformed JSON: unexpected end of the body"}
	}
	return &PayloadError{Msg: "malformed JSON: " + err.Error()}
}
