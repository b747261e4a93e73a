// Package apiclient is a small client of the control plane's REST API (see
// docs/api.md), used by the spillway CLI. It sends the API token, turns the
// API's error body into an *Error, and follows the event stream.
package apiclient

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// DefaultAddr is where `spillway serve` listens by default.
const DefaultAddr = "http://127.0.0.1:8480"

// Client calls one control plane.
type Client struct {
	// Addr is the base URL, e.g. http://127.0.0.1:8480.
	Addr string
	// Token is the API token; it is sent as a bearer token.
	Token string
	// HTTP is the client used; nil means one with a 30s timeout (the event
	// stream uses none).
	HTTP *http.Client
}

// New returns a client of addr ("host:port" gets http://).
func New(addr, token string) *Client {
	if addr == "" {
		addr = DefaultAddr
	}
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	return &Client{Addr: strings.TrimRight(addr, "/"), Token: token}
}

// Error is an error answer of the API.
type Error struct {
	Status  int
	Code    string
	Message string
	Details []string
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("%s (%d %s)", e.Message, e.Status, e.Code)
	for _, d := range e.Details {
		msg += "\n  " + d
	}
	return msg
}

// IsCode reports whether err is an API error with that code.
func IsCode(err error, code string) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == code
}

func (c *Client) httpClient(stream bool) *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	if stream {
		return &http.Client{}
	}
	return &http.Client{Timeout: 30 * time.Second}
}

func (c *Client) request(ctx context.Context, method, path string, q url.Values, body io.Reader, contentType string) (*http.Request, error) {
	u := c.Addr + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, fmt.Errorf("building the request %s %s: %w", method, path, err)
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Accept", "application/json")
	return req, nil
}

// Raw sends a request and returns the body of a 2xx answer. in is sent as
// JSON unless it is a []byte (sent as YAML) or nil.
func (c *Client) Raw(ctx context.Context, method, path string, q url.Values, in any) ([]byte, error) {
	var body io.Reader
	ct := ""
	switch v := in.(type) {
	case nil:
	case []byte:
		body, ct = bytes.NewReader(v), "application/yaml"
	default:
		b, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("encoding the request to %s: %w", path, err)
		}
		body, ct = bytes.NewReader(b), "application/json"
	}
	req, err := c.request(ctx, method, path, q, body, ct)
	if err != nil {
		return nil, err
	}
	resp, err := c.httpClient(false).Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("%s %s: reading the answer: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		return nil, decodeError(resp.StatusCode, out)
	}
	return out, nil
}

func decodeError(status int, body []byte) error {
	var e struct {
		Error struct {
			Code    string   `json:"code"`
			Message string   `json:"message"`
			Details []string `json:"details"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &e) != nil || e.Error.Code == "" {
		return &Error{Status: status, Code: "http_error", Message: strings.TrimSpace(string(body))}
	}
	return &Error{Status: status, Code: e.Error.Code, Message: e.Error.Message, Details: e.Error.Details}
}

// Do sends a request and decodes a 2xx answer into out (unless nil).
func (c *Client) Do(ctx context.Context, method, path string, q url.Values, in, out any) error {
	b, err := c.Raw(ctx, method, path, q, in)
	if err != nil || out == nil {
		return err
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%s %s: decoding the answer: %w", method, path, err)
	}
	return nil
}

// Event is one journal event.
type Event struct {
	Seq      int64           `json:"seq"`
	Time     time.Time       `json:"time"`
	Kind     string          `json:"kind"`
	Subject  string          `json:"subject,omitempty"`
	Activity string          `json:"activity,omitempty"`
	Actor    string          `json:"actor,omitempty"`
	Message  string          `json:"message"`
	Data     json.RawMessage `json:"data,omitempty"`
}

// Stream follows GET /v1/events/stream (q filters it), calling fn with
// each event's raw JSON and the event, until ctx ends, fn returns an error,
// or the server ends the stream. after resumes after that event's seq (0:
// from now). It reconnects (with Last-Event-ID) when the connection drops.
func (c *Client) Stream(ctx context.Context, q url.Values, after int64, fn func(raw []byte, ev Event) error) error {
	for {
		err := c.streamOnce(ctx, q, &after, fn)
		if ctx.Err() != nil {
			return nil
		}
		var apiErr *Error
		if errors.As(err, &apiErr) || errors.Is(err, errStop) {
			return err
		}
		if err == nil {
			return nil // the server ended the stream (shutdown)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(2 * time.Second):
		}
	}
}

var errStop = errors.New("stopped")

func (c *Client) streamOnce(ctx context.Context, q url.Values, after *int64, fn func([]byte, Event) error) error {
	req, err := c.request(ctx, http.MethodGet, "/v1/events/stream", q, nil, "")
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "text/event-stream")
	if *after > 0 {
		req.Header.Set("Last-Event-ID", fmt.Sprint(*after))
	}
	resp, err := c.httpClient(true).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return decodeError(resp.StatusCode, b)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	var data []byte
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "data: "):
			data = append(data, line[len("data: "):]...)
		case line == "" && len(data) > 0:
			var ev Event
			if err := json.Unmarshal(data, &ev); err != nil {
				return fmt.Errorf("decoding a streamed event: %w", err)
			}
			if err := fn(data, ev); err != nil {
				return fmt.Errorf("%w: %w", errStop, err)
			}
			*after = ev.Seq
			data = nil
		}
	}
	return sc.Err()
}
