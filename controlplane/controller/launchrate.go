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

// launchRates holds one bucket per provider (a cloud account and region:
// pools of the same account share their provider).
type launchRates struct {
	mu      sync.Mutex
	buckets map[providers.Provider]*rate.Limiter
	// cut is when each account's rate was last halved; raised is how
	// much the launches taken at raisedAt raised it.
	cut      map[providers.Provider]time.Time
	raisedAt map[providers.Provider]time.Time
	raised   map[providers.Provider]float64
}

func (c *Controller) bucket(p providers.Provider) *rate.Limiter {
	l := &c.rates
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.buckets == nil {
		l.buckets = map[providers.Provider]*rate.Limiter{}
	}
	b := l.buckets[p]
	if b == nil {
		b = rate.NewLimiter(rate.Limit(launchRateMax), launchRateBurst)
		l.buckets[p] = b
		c.rateGauge.WithLabelValues(p.Name()).Set(launchRateMax)
	}
	return b
}

// waitLaunch takes a launch token of p's account, waiting on the
// controller's clock, and returns when the launch may be sent.
func (c *Controller) waitLaunch(ctx context.Context, p providers.Provider) (time.Time, error) {
	b := c.bucket(p)
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
	b := c.bucket(p)
	l := &c.rates
	// One lock for the whole update: answers arriving together change the
	// rate one at a time.
	l.mu.Lock()
	defer l.mu.Unlock()
	now := c.now()
	cur := float64(b.Limit())
	last, cutBefore := l.cut[p]
	switch {
	case providers.IsThrottled(err):
		if cutBefore && sent.Before(last) {
			return // sent before the last halving: that halving answered it
		}
		// Answers read at the same moment change the rate alike in any
		// order (the scale simulation's figures are the same for the same
		// seed): a halving undoes the raises of launches taken at that
		// moment, and a launch taken at the moment of a halving raises
		// nothing.
		if at, ok := l.raisedAt[p]; ok && at.Equal(now) {
			cur -= l.raised[p]
		}
		if l.cut == nil {
			l.cut, l.raisedAt, l.raised = map[providers.Provider]time.Time{}, map[providers.Provider]time.Time{}, map[providers.Provider]float64{}
		}
		l.cut[p], l.raised[p] = now, 0
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
		if cutBefore && last.Equal(now) {
			return
		}
		if cur < launchRateMax {
			next := math.Min(cur+launchRateStep, launchRateMax)
			b.SetLimitAt(now, rate.Limit(next))
			if l.raisedAt == nil {
				l.cut, l.raisedAt, l.raised = map[providers.Provider]time.Time{}, map[providers.Provider]time.Time{}, map[providers.Provider]float64{}
			}
			if at, ok := l.raisedAt[p]; !ok || !at.Equal(now) {
				l.raisedAt[p], l.raised[p] = now, 0
			}
			l.raised[p] += next - cur
			c.rateGauge.WithLabelValues(p.Name()).Set(next)
		}
	}
}

// launchRate is p's account's launches per second now.
func (c *Controller) launchRate(p providers.Provider) float64 {
	return float64(c.bucket(p).Limit())
}
