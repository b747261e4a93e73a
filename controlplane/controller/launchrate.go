package controller

import (
	"context"
	"math"
	"sync"

	"golang.org/x/time/rate"

	"github.com/spillwayhq/spillway/providers"
)

// Launch rates per cloud account: a token bucket, fed by the cloud's
// answers. A throttled launch (RequestLimitExceeded, Throttling.User)
// halves the account's rate; each launch the cloud takes raises it again
// by a step, up to the most. Throttling is about the rate of calls on one
// account, not about the offerings, so it marks none of them exhausted.
const (
	launchRateMax  = 10.0 // launches per second
	launchRateMin  = 0.1
	launchRateStep = 0.5
)

// launchRates holds one bucket per provider (a cloud account and region:
// pools of the same account share their provider).
type launchRates struct {
	mu      sync.Mutex
	buckets map[providers.Provider]*rate.Limiter
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
		b = rate.NewLimiter(rate.Limit(launchRateMax), 2)
		l.buckets[p] = b
		c.rateGauge.WithLabelValues(p.Name()).Set(launchRateMax)
	}
	return b
}

// wait takes a launch token of p's account, waiting on the controller's
// clock.
func (c *Controller) waitLaunch(ctx context.Context, p providers.Provider) error {
	b := c.bucket(p)
	now := c.now()
	r := b.ReserveN(now, 1)
	if !r.OK() {
		return nil
	}
	if d := r.DelayFrom(now); d > 0 {
		if err := c.sleep(ctx, d); err != nil {
			r.CancelAt(c.now())
			return err
		}
	}
	return nil
}

// launched feeds a launch's answer back into p's account's rate.
func (c *Controller) launched(p providers.Provider, err error) {
	b := c.bucket(p)
	now := c.now()
	cur := float64(b.Limit())
	switch {
	case providers.IsThrottled(err):
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
		if cur < launchRateMax {
			next := math.Min(cur+launchRateStep, launchRateMax)
			b.SetLimitAt(now, rate.Limit(next))
			c.rateGauge.WithLabelValues(p.Name()).Set(next)
		}
	}
}

// launchRate is p's account's launches per second now.
func (c *Controller) launchRate(p providers.Provider) float64 {
	return float64(c.bucket(p).Limit())
}
