package controller

import (
	"context"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/spillwayhq/spillway/providers"
)

// Launch rates per cloud account: a token bucket, fed by the cloud's
// answers. A throttled launch (RequestLimitExceeded, Throttling.User)
// halves the account's rate, once for all the launches that were sent
// before it was halved (a hundred scale-outs' launches in flight at once,
// throttled together, are one signal, not a hundred: halving on each
// took the rate to its floor, ten seconds a launch, and a throttled
// +1,000-host burst took nine minutes); each launch the cloud takes
// raises it again by a step, up to the most. Throttling is about the rate of calls on one
// account, not about the offerings, so it marks none of them exhausted.
//
// The most is 50 launches a second with a burst of 10: a hundred task
// groups queued at once (a +1,000-host burst) go out within two seconds.
// It was 10 with a burst of 2, which held the hundredth group's launch
// back ten seconds on a cloud that throttled nothing: most of Spillway's
// overhead over the physical path at +1,000 hosts. The cloud, not this
// bucket, says how fast an account may go: EC2's documented default for
// RunInstances is a burst of 5 and 2 a second, and its throttles bring
// the rate down to that within a few halvings.
const (
	launchRateMax   = 50.0 // launches per second
	launchRateBurst = 10
	launchRateMin   = 0.1
	launchRateStep  = 0.5
)

// launchRates holds one account per provider (a cloud account and
// region: pools of the same account share their provider).
type launchRates struct {
	mu       sync.Mutex
	accounts map[providers.Provider]*launchAccount
}

// launchAccount is one account's launch rate: its bucket; when its rate
// was last halved (zero: never); and how much the launches taken at
// raisedAt raised it.
type launchAccount struct {
	bucket        *rate.Limiter
	cut, raisedAt time.Time
	raised        float64
}

// account returns p's account, at the most rate when new.
func (c *Controller) account(p providers.Provider) *launchAccount {
	l := &c.rates
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.accounts == nil {
		l.accounts = map[providers.Provider]*launchAccount{}
	}
	a := l.accounts[p]
	if a == nil {
		a = &launchAccount{bucket: rate.NewLimiter(rate.Limit(launchRateMax), launchRateBurst)}
		l.accounts[p] = a
		c.rateGauge.WithLabelValues(p.Name()).Set(launchRateMax)
	}
	return a
}

// waitLaunch takes a launch token of p's account, waiting on the
// controller's clock, and returns when the launch may be sent.
func (c *Controller) waitLaunch(ctx context.Context, p providers.Provider) (time.Time, error) {
	b := c.account(p).bucket
	now := c.now()
	r := b.ReserveN(now, 1)
	if !r.OK() {
		return now, nil
	}
	if d := r.DelayFrom(now); d > 0 {
		if err := c.sleep(ctx, d); err != nil {
			r.CancelAt(c.now())
			return time.Time{}, err
		}
	}
	return c.now(), nil
}

// launched feeds the answer to a launch sent at sent back into p's
// account's rate.
func (c *Controller) launched(p providers.Provider, sent time.Time, err error) {
	a := c.account(p)
	b := a.bucket
	l := &c.rates
	// One lock for the whole update: answers arriving together change the
	// rate one at a time.
	l.mu.Lock()
	defer l.mu.Unlock()
	now := c.now()
	cur := float64(b.Limit())
	switch {
	case providers.IsThrottled(err):
		if !a.cut.IsZero() && sent.Before(a.cut) {
			return // sent before the last halving: that halving answered it
		}
		// Answers read at the same moment change the rate alike in any
		// order (the scale simulation's figures are the same for the same
		// seed): a halving undoes the raises of launches taken at that
		// moment, and a launch taken at the moment of a halving raises
		// nothing.
		if a.raisedAt.Equal(now) {
			cur -= a.raised
		}
		a.cut, a.raised = now, 0
		next := math.Max(cur/2, launchRateMin)
		if after, ok := providers.RetryAfter(err); ok && after > 0 {
			next = math.Min(next, math.Max(1/after.Seconds(), launchRateMin))
		}
		b.SetLimitAt(now, rate.Limit(next))
		// The cloud said "slower" now: the burst saved up is spent, so the
		// next launch waits a whole interval of the new rate.
		if left := math.Ceil(b.TokensAt(now)); left > 0 {
			b.ReserveN(now, int(left))
		}
		c.rateGauge.WithLabelValues(p.Name()).Set(next)
		c.cfg.Logger.Warn("the cloud throttled a launch: slowing this account's launches", "provider", p.Name(), "launches_per_second", next, "err", err)
	case err == nil:
		if a.cut.Equal(now) {
			return
		}
		if cur < launchRateMax {
			next := math.Min(cur+launchRateStep, launchRateMax)
			b.SetLimitAt(now, rate.Limit(next))
			if !a.raisedAt.Equal(now) {
				a.raisedAt, a.raised = now, 0
			}
			a.raised += next - cur
			c.rateGauge.WithLabelValues(p.Name()).Set(next)
		}
	}
}

// launchRate is p's account's launches per second now.
func (c *Controller) launchRate(p providers.Provider) float64 {
	return float64(c.account(p).bucket.Limit())
}
