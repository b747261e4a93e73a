package providers

import (
	"context"
	"net/http"
)

// guarded asks a check before every call; see Guard.
type guarded struct {
	next  Provider
	check func(context.Context) error
}

var _ Provider = (*guarded)(nil)

// Guard wraps p so that every call first runs check, and fails with its
// error without reaching the cloud when check fails. The elected leader's
// term guard uses it: a replica whose term has ended (after a pause, say)
// makes no cloud call, even one already on its way through the controller.
// A nil check returns p itself.
func Guard(p Provider, check func(context.Context) error) Provider {
	if check == nil {
		return p
	}
	return &guarded{next: p, check: check}
}

func (g *guarded) Name() string { return g.next.Name() }

func (g *guarded) Create(ctx context.Context, claim Claim) ([]Host, error) {
	if err := g.check(ctx); err != nil {
		return nil, err
	}
	return g.next.Create(ctx, claim)
}

func (g *guarded) Delete(ctx context.Context, host Host) error {
	if err := g.check(ctx); err != nil {
		return err
	}
	return g.next.Delete(ctx, host)
}

func (g *guarded) Get(ctx context.Context, id string) (Host, error) {
	if err := g.check(ctx); err != nil {
		return Host{}, err
	}
	return g.next.Get(ctx, id)
}

func (g *guarded) List(ctx context.Context, pool string) ([]Host, error) {
	if err := g.check(ctx); err != nil {
		return nil, err
	}
	return g.next.List(ctx, pool)
}

func (g *guarded) Catalog(ctx context.Context, pool Pool) ([]Offering, error) {
	if err := g.check(ctx); err != nil {
		return nil, err
	}
	return g.next.Catalog(ctx, pool)
}

// RefusedRequest is the error of an HTTP request that a request guard
// refused: it never left this process, and no retry may send it.
type RefusedRequest struct{ Err error }

func (e *RefusedRequest) Error() string { return "request not sent: " + e.Err.Error() }
func (e *RefusedRequest) Unwrap() error { return e.Err }

// RetryableError reports false, for any retryer that asks (the AWS
// provider's also checks the type; the Alibaba provider retries itself and
// checks the type).
func (e *RefusedRequest) RetryableError() bool { return false }

// HTTPDoer is an HTTP client, the shape of aws.HTTPClient.
type HTTPDoer interface {
	Do(*http.Request) (*http.Response, error)
}

// GuardClient wraps c so that check runs before every request is sent: each
// attempt of each API call, an SDK's own retries included, and every call
// of a provider method that makes several. Guard checks once per method;
// a replica paused inside a method (a retry's backoff, the next offering
// of a launch) would otherwise send the rest of its requests when it
// wakes, its term over. A refused request fails with a *RefusedRequest
// wrapping check's error.
func GuardClient(c HTTPDoer, check func(context.Context) error) HTTPDoer {
	if check == nil {
		return c
	}
	return guardedClient{next: c, check: check}
}

// GuardTransport is GuardClient for an http.RoundTripper.
func GuardTransport(rt http.RoundTripper, check func(context.Context) error) http.RoundTripper {
	if check == nil {
		return rt
	}
	return guardedTransport{next: rt, check: check}
}

type guardedClient struct {
	next  HTTPDoer
	check func(context.Context) error
}

func (g guardedClient) Do(req *http.Request) (*http.Response, error) {
	if err := refuse(req, g.check); err != nil {
		return nil, err
	}
	return g.next.Do(req)
}

type guardedTransport struct {
	next  http.RoundTripper
	check func(context.Context) error
}

func (g guardedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if err := refuse(req, g.check); err != nil {
		return nil, err
	}
	return g.next.RoundTrip(req)
}

// refuse runs check for req; when it fails, it closes req's body (as a
// RoundTripper must) and returns the refusal.
func refuse(req *http.Request, check func(context.Context) error) error {
	err := check(req.Context())
	if err == nil {
		return nil
	}
	if req.Body != nil {
		_ = req.Body.Close()
	}
	return &RefusedRequest{Err: err}
}
