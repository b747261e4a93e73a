package providers

import (
	"context"
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
