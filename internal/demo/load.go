package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	nomad "github.com/hashicorp/nomad/api"
)

// LoadConfig configures a load generator run.
type LoadConfig struct {
	Trace *Trace
	// Speed is trace seconds played per wall-clock second: 10 plays a
	// 5-minute spike in 30 seconds at the trace's request rates.
	Speed float64
	// Scale multiplies every rate of the trace.
	Scale float64
	// Loop restarts the trace when it ends; otherwise Run returns.
	Loop bool
	// Targets returns the base URLs (http://host:port) to spread load over.
	Targets func() []string
	// MaxInFlight bounds concurrent requests; past it requests are dropped
	// and counted, so a saturated generator shows instead of lying.
	MaxInFlight int
	// Timeout bounds one request.
	Timeout time.Duration
	// Progress receives a status line every ProgressEvery, if set.
	Progress      io.Writer
	ProgressEvery time.Duration
}

// LoadStats counts what a run did.
type LoadStats struct {
	Sent, OK, Failed, Dropped, NoTarget uint64
}

// Generator plays a trace as open-loop load: requests go out on schedule
// whether or not earlier ones have been answered, as real users do.
type Generator struct {
	cfg    LoadConfig
	client *http.Client
	stats  struct{ sent, ok, failed, dropped, noTarget atomic.Uint64 }
}

// NewGenerator validates cfg and builds a generator.
func NewGenerator(cfg LoadConfig) (*Generator, error) {
	if cfg.Trace == nil || len(cfg.Trace.Points) == 0 {
		return nil, errors.New("load: a trace is required")
	}
	if cfg.Speed <= 0 {
		return nil, fmt.Errorf("load: speed must be positive, got %g", cfg.Speed)
	}
	if cfg.Scale < 0 {
		return nil, fmt.Errorf("load: scale must not be negative, got %g", cfg.Scale)
	}
	if cfg.Targets == nil {
		return nil, errors.New("load: a target source is required")
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 4096
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.ProgressEvery <= 0 {
		cfg.ProgressEvery = 5 * time.Second
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 512
	tr.MaxConnsPerHost = 0
	return &Generator{cfg: cfg, client: &http.Client{Transport: tr, Timeout: cfg.Timeout}}, nil
}

// Stats returns the counts so far.
func (g *Generator) Stats() LoadStats {
	return LoadStats{
		Sent: g.stats.sent.Load(), OK: g.stats.ok.Load(), Failed: g.stats.failed.Load(),
		Dropped: g.stats.dropped.Load(), NoTarget: g.stats.noTarget.Load(),
	}
}

// due is how many requests the schedule has asked for after wall time el.
func (g *Generator) due(el time.Duration) float64 {
	tau := time.Duration(float64(el) * g.cfg.Speed)
	total := 0.0
	if d := g.cfg.Trace.Duration(); g.cfg.Loop && d > 0 && tau > d {
		laps := tau / d
		total += float64(laps) * g.cfg.Trace.Requests(0, d)
		tau -= laps * d
	}
	total += g.cfg.Trace.Requests(0, tau)
	return total * g.cfg.Scale / g.cfg.Speed
}

// Run plays the trace until it ends (or forever with Loop) or ctx is done,
// then waits for requests in flight.
func (g *Generator) Run(ctx context.Context) (LoadStats, error) {
	start := time.Now()
	end := time.Duration(float64(g.cfg.Trace.Duration()) / g.cfg.Speed)
	sem := make(chan struct{}, g.cfg.MaxInFlight)
	var wg sync.WaitGroup
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	lastProgress := start
	var issued uint64
	var next int
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			return g.Stats(), nil
		case now := <-tick.C:
			el := now.Sub(start)
			finished := !g.cfg.Loop && el >= end
			if finished {
				el = end // send exactly what the trace asks for, then stop
			}
			want := uint64(math.Round(g.due(el)*1e6) / 1e6)
			targets := g.cfg.Targets()
			for ; issued < want; issued++ {
				if len(targets) == 0 {
					g.stats.noTarget.Add(1)
					continue
				}
				select {
				case sem <- struct{}{}:
				default:
					g.stats.dropped.Add(1)
					continue
				}
				url := targets[next%len(targets)]
				next++
				g.stats.sent.Add(1)
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer func() { <-sem }()
					g.hit(ctx, url)
				}()
			}
			if finished {
				wg.Wait()
				g.progress(el)
				return g.Stats(), nil
			}
			if now.Sub(lastProgress) >= g.cfg.ProgressEvery {
				lastProgress = now
				g.progress(el)
			}
		}
	}
}

func (g *Generator) hit(ctx context.Context, url string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/", nil)
	if err != nil {
		g.stats.failed.Add(1)
		return
	}
	resp, err := g.client.Do(req)
	if err != nil {
		g.stats.failed.Add(1)
		return
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		g.stats.ok.Add(1)
	} else {
		g.stats.failed.Add(1)
	}
}

func (g *Generator) progress(el time.Duration) {
	if g.cfg.Progress == nil {
		return
	}
	tau := time.Duration(float64(el) * g.cfg.Speed)
	if d := g.cfg.Trace.Duration(); g.cfg.Loop && d > 0 {
		tau %= d
	}
	s := g.Stats()
	fmt.Fprintf(g.cfg.Progress, "load: %s played (trace at %s): target %.0f req/s; sent %d, ok %d, failed %d, dropped %d; %d instances\n",
		el.Round(time.Second), tau.Round(time.Second), g.cfg.Scale*g.cfg.Trace.RateAt(tau), s.Sent, s.OK, s.Failed, s.Dropped, len(g.cfg.Targets()))
}

// NomadTargets follows the registrations of a Nomad native service and
// returns a function that lists their base URLs. It stops when ctx is done.
func NomadTargets(ctx context.Context, client *nomad.Client, service string, log *slog.Logger) func() []string {
	var mu sync.Mutex
	var current []string
	go FollowService(ctx, client, service, func(regs []*nomad.ServiceRegistration) {
		urls := make([]string, 0, len(regs))
		for _, r := range regs {
			urls = append(urls, fmt.Sprintf("http://%s:%d", r.Address, r.Port))
		}
		mu.Lock()
		current = urls
		mu.Unlock()
	}, func(err error) { log.Warn("listing service instances", "service", service, "err", err) })
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return current
	}
}

// FollowService calls onChange with the registrations of a Nomad native
// service whenever Nomad's catalogue changes, using blocking queries, until
// ctx ends. A failed query goes to onError and is retried a second later.
func FollowService(ctx context.Context, client *nomad.Client, service string, onChange func([]*nomad.ServiceRegistration), onError func(error)) {
	var index uint64
	for ctx.Err() == nil {
		q := (&nomad.QueryOptions{WaitIndex: index, WaitTime: 30 * time.Second}).WithContext(ctx)
		regs, meta, err := client.Services().Get(service, q)
		if err != nil {
			if ctx.Err() == nil {
				onError(err)
				select {
				case <-ctx.Done():
				case <-time.After(time.Second):
				}
			}
			continue
		}
		onChange(regs)
		if meta.LastIndex < index {
			index = 0 // the index went backwards: start over
		} else {
			index = meta.LastIndex
		}
	}
}
