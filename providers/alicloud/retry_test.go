package alicloud

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"syscall"
	"testing"

	"github.com/spillwayhq/spillway/providers"
)

// TestRetryableKeepsToWhatAnotherTryCanMend: with the SDK's retries off,
// the provider retries transient transport errors, and never a request its
// guard refused, a cancelled call, an untrusted certificate or a name that
// does not resolve.
func TestRetryableKeepsToWhatAnotherTryCanMend(t *testing.T) {
	sent := func(err error) error { return &url.Error{Op: "Post", URL: "http://ecs.example/", Err: err} }
	for _, c := range []struct {
		name string
		err  error
		want bool
	}{
		{"connection refused", sent(&net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}), true},
		{"answer cut off", fmt.Errorf("reading the answer: %w", io.ErrUnexpectedEOF), true},
		{"refused by the guard", sent(&providers.RefusedRequest{Err: errors.New("the term is over")}), false},
		{"cancelled", sent(context.Canceled), false},
		{"untrusted certificate", sent(x509.UnknownAuthorityError{}), false},
		{"unknown name", sent(&net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{Err: "no such host", Name: "ecs.example", IsNotFound: true}}), false},
		{"an answer that is not an error of the exchange", errors.New("ecs: InvalidParameter"), false},
	} {
		if got := retryable(c.err); got != c.want {
			t.Errorf("%s: retryable = %v, want %v", c.name, got, c.want)
		}
	}
	// A refusal keeps its type through mapError; a transport error is
	// Unavailable, so the planner falls back.
	var refused *providers.RefusedRequest
	if err := mapError(sent(&providers.RefusedRequest{Err: errors.New("x")})); !errors.As(err, &refused) || providers.IsUnavailable(err) {
		t.Errorf("mapError of a refusal: %v", err)
	}
	if err := mapError(sent(syscall.ECONNRESET)); !providers.IsUnavailable(err) {
		t.Errorf("mapError of a reset connection: %v, want Unavailable", err)
	}
}
