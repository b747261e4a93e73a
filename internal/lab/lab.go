// Package lab runs Spillway's local hybrid-cloud lab on loopback: a real
// Nomad server, Nomad client agents standing in for each business unit's
// data-centre hosts and for the shared pool, Prometheus, Alertmanager, the
// control plane, and the demo service with its load generator. `spillway
// lab` and the end-to-end tests both use it. Every process gets free ports
// and a directory under the lab's root; Stop kills everything the lab
// started, and SweepStale cleans up after a lab that was killed outright.
package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	nomad "github.com/hashicorp/nomad/api"

	"github.com/spillwayhq/spillway/controlplane/auth"
	"github.com/spillwayhq/spillway/controlplane/metrics"
	"github.com/spillwayhq/spillway/internal/tools"
)

// BusinessUnit is a tenant of the data centre with its own hosts.
type BusinessUnit struct {
	Name  string
	Hosts int
}

// Options configures a lab.
type Options struct {
	// Dir is the lab's root. Empty means a new temporary directory, removed
	// by Stop unless KeepDir is set.
	Dir     string
	KeepDir bool

	BusinessUnits []BusinessUnit
	// SharedHosts is how many hosts the business units lend to the shared
	// pool, taken from them in turn.
	SharedHosts int
	// SharedLease is the lab shared pool's lease (LabPools); zero is 1h.
	// SharedDrainDeadline is its drain_deadline; zero is 30s.
	SharedLease, SharedDrainDeadline time.Duration
	// HostCPU (MHz) and HostMemoryMB size every internal host.
	HostCPU, HostMemoryMB int

	// Spillway is the spillway binary, which runs the control plane, the
	// demo service and the load generator.
	Spillway string
	// Serve starts `spillway serve` against the lab.
	Serve bool
	// Policies is the control plane's policy directory; empty means none.
	Policies string
	// Pools is the control plane's pool directory; empty means none.
	Pools string
	// LabPools gives the control plane pool files written from the lab's
	// own topology (its business units and shared pool, and with Cloud a
	// cloud pool per simulated cloud: AWSCloudPool, AlicloudCloudPool),
	// when Pools is empty.
	LabPools bool
	// Demo starts the demo service; nil leaves it out.
	Demo *DemoOptions
	// Load starts the load generator once the demo is healthy; nil leaves it out.
	Load *LoadOptions

	// Cloud runs the cloud simulator in the lab, whose instances boot
	// their Ignition config into real Nomad clients; nil leaves it out.
	// See CloudOptions.
	Cloud *CloudOptions

	// Progress receives a line per step.
	Progress io.Writer
}

// DemoOptions configures the demo service job.
type DemoOptions struct {
	// Count is the initial number of instances.
	Count int
	// BusinessUnit owns the service; its hosts' node pool runs it.
	BusinessUnit string
	// Capacity is the requests per second one instance serves.
	Capacity float64
}

// LoadOptions configures the load generator.
type LoadOptions struct {
	Trace        string
	Speed, Scale float64
	Loop         bool
}

// DefaultOptions is a roomy lab for tests to start from: two business
// units of three hosts each, plus two shared-pool hosts, the control plane,
// and the demo service of business unit bu-a with two instances; no cloud.
// `spillway lab` (make run) starts a smaller one that bursts: see its flags.
func DefaultOptions() Options {
	return Options{
		BusinessUnits: []BusinessUnit{{Name: "bu-a", Hosts: 3}, {Name: "bu-b", Hosts: 3}},
		SharedHosts:   2,
		HostCPU:       2000,
		HostMemoryMB:  2048,
		Serve:         true,
		Demo:          &DemoOptions{Count: 2, BusinessUnit: "bu-a", Capacity: 100},
	}
}

type binaries struct{ nomad, prometheus, alertmanager string }

// Lab is a running lab.
type Lab struct {
	Dir string
	// NomadAddr is the Nomad server's HTTP address (http://127.0.0.1:port).
	NomadAddr string
	// NomadRPC is the server's RPC address clients join (127.0.0.1:port).
	NomadRPC        string
	PrometheusURL   string
	AlertmanagerURL string
	// SpillwayURL is the control plane's address, when Serve is set.
	SpillwayURL string
	// APIToken is an admin token of the lab's control plane.
	APIToken string
	// ViewerToken is a viewer token of it: the console and the API's reads,
	// with no write control.
	ViewerToken string
	// OperatorToken is an operator token of it: what an on-call engineer
	// may change (pause a pool, extend a lease, reclaim a host), not the
	// admin's configuration.
	OperatorToken string
	// Hosts are the internal data-centre hosts.
	Hosts []*Host

	opts      Options
	bins      binaries
	servePort int
	// alertmanagerToken is the operator token Alertmanager sends.
	alertmanagerToken string
	// promArgs start Prometheus; prometheus is its current process.
	promArgs   []string
	prometheus *process
	// serve is the control plane's current process.
	serve *process
	// server is the Nomad server's agent config; nomadServer its current
	// process.
	server      agentConfig
	nomadServer *process
	// ports are the ports the lab reserved for its processes.
	ports portSet
	// keep keeps a temporary directory at Stop: the lab failed (see Keep).
	keep atomic.Bool
	// prom reads the lab's Prometheus for the live summary.
	prom *metrics.Prometheus
	// serveEnv is added to serve's environment (SetServeEnv).
	serveEnv []string
	nomad    *nomad.Client
	tempDir  bool
	mu       sync.Mutex
	procs    []*process
	stopOnce sync.Once
	cancel   context.CancelFunc
	cloud    *cloudLab
}

// Start brings the lab up and waits until it is ready: the Nomad server has
// a leader, every client is ready, Prometheus and Alertmanager answer, and
// the control plane and demo service are healthy when asked for. On error
// everything started so far is stopped.
func Start(ctx context.Context, opts Options) (_ *Lab, err error) {
	if opts.Progress == nil {
		opts.Progress = io.Discard
	}
	if opts.HostCPU == 0 {
		opts.HostCPU = 2000
	}
	if opts.HostMemoryMB == 0 {
		opts.HostMemoryMB = 2048
	}
	l := &Lab{opts: opts, Dir: opts.Dir}
	if err := l.findBinaries(); err != nil {
		return nil, err
	}
	if killed := SweepStale(); len(killed) > 0 {
		l.progress("cleaned up %d processes left by an earlier lab", len(killed))
	}
	if l.Dir == "" {
		dir, err := os.MkdirTemp("", "spillway-lab-")
		if err != nil {
			return nil, err
		}
		l.Dir, l.tempDir = dir, true
	}
	if l.Dir, err = filepath.Abs(l.Dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(l.Dir, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(l.Dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return nil, err
	}
	becomeSubreaper()
	defer func() {
		if err != nil {
			// A lab that failed to start keeps its directory: the logs
			// say why.
			l.keep.Store(true)
			l.Stop()
			err = fmt.Errorf("%w\nthe lab's directory is kept with every log: %s (logs in %s)", err, l.Dir, filepath.Join(l.Dir, "logs"))
		}
	}()
	l.progress("lab directory %s", l.Dir)
	// The control plane's port is chosen first: Prometheus scrapes it and
	// Alertmanager sends to it.
	ports, err := l.freePorts(1)
	if err != nil {
		return nil, err
	}
	l.servePort = ports[0]
	// Tokens of the control plane: an admin's, an operator's and a
	// viewer's for people, one for Alertmanager.
	if l.APIToken, _, err = auth.Generate(); err != nil {
		return nil, err
	}
	if l.alertmanagerToken, _, err = auth.Generate(); err != nil {
		return nil, err
	}
	if l.ViewerToken, _, err = auth.Generate(); err != nil {
		return nil, err
	}
	if l.OperatorToken, _, err = auth.Generate(); err != nil {
		return nil, err
	}

	if err := l.startNomadServer(ctx); err != nil {
		return nil, err
	}
	// Clients, Prometheus and Alertmanager come up in parallel.
	var wg sync.WaitGroup
	errs := make([]error, 3)
	wg.Add(2)
	go func() { defer wg.Done(); errs[0] = l.startHosts(ctx) }()
	go func() {
		defer wg.Done()
		// Prometheus is configured with Alertmanager's address.
		if errs[1] = l.startAlertmanager(ctx); errs[1] == nil {
			errs[2] = l.startPrometheus(ctx)
		}
	}()
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	// Background work lives until Stop, not until the caller's ctx ends.
	bg, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	go l.followService(bg, DemoService)
	if opts.Cloud != nil {
		if err := l.startCloud(bg, *opts.Cloud); err != nil {
			return nil, err
		}
	}
	if opts.Serve {
		if err := l.startServe(ctx); err != nil {
			return nil, err
		}
	}
	if opts.Demo != nil {
		if err := l.RunDemo(ctx, *opts.Demo); err != nil {
			return nil, err
		}
	}
	if opts.Load != nil {
		if _, err := l.StartLoad(*opts.Load); err != nil {
			return nil, err
		}
	}
	return l, nil
}

func (l *Lab) findBinaries() error {
	var errs []error
	for _, t := range []struct {
		tool tools.Tool
		dst  *string
	}{{tools.Nomad, &l.bins.nomad}, {tools.Prometheus, &l.bins.prometheus}, {tools.Alertmanager, &l.bins.alertmanager}} {
		p, err := t.tool.Path()
		if err != nil {
			errs = append(errs, err)
		}
		*t.dst = p
	}
	if (l.opts.Serve || l.opts.Demo != nil || l.opts.Load != nil) && l.opts.Spillway == "" {
		errs = append(errs, errors.New("the lab needs the spillway binary (Options.Spillway) to run the control plane and the demo"))
	}
	return errors.Join(errs...)
}

func (l *Lab) progress(format string, args ...any) {
	fmt.Fprintf(l.opts.Progress, "lab: "+format+"\n", args...)
}

// Nomad returns an API client for the lab's Nomad server.
func (l *Lab) Nomad() *nomad.Client { return l.nomad }

// Stop kills every process the lab started, their descendants included,
// and removes a temporary lab directory. It is safe to call more than once.
func (l *Lab) Stop() {
	l.stopOnce.Do(func() {
		if l.cancel != nil {
			l.cancel()
		}
		l.mu.Lock()
		procs := append([]*process(nil), l.procs...)
		l.mu.Unlock()
		// Stop in reverse order: load, demo, control plane, then the infrastructure.
		var wg sync.WaitGroup
		for i := len(procs) - 1; i >= 0; i-- {
			wg.Add(1)
			go func(p *process) { defer wg.Done(); p.stop(5 * time.Second) }(procs[i])
		}
		wg.Wait()
		// Executors and tasks Nomad started live in their own process groups.
		dir := l.Dir
		killMarked(func(d string) bool { return d == dir }, 10*time.Second)
		removeAllocCgroups(dir)
		unmountUnder(dir)
		l.ports.release()
		if l.tempDir && !l.opts.KeepDir && !l.keep.Load() {
			_ = os.RemoveAll(l.Dir)
		}
	})
}

// Keep makes Stop leave the lab's directory, with its logs, even when it
// is a temporary one: for a lab that failed.
func (l *Lab) Keep() { l.keep.Store(true) }

// Logs writes the last lines of every process's log, for a failed test.
func (l *Lab) Logs(w io.Writer, lines int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	printed := map[string]bool{}
	for _, p := range l.procs {
		// A process started again (a restarted Nomad server, Prometheus,
		// the control plane) appends to the same log: it is written once.
		if printed[p.logPath] {
			continue
		}
		printed[p.logPath] = true
		fmt.Fprintf(w, "----- %s (%s) -----\n%s\n", p.name, p.logPath, p.tail(lines))
	}
}

// freePorts reserves n ports for the lab's processes (see portSet).
func (l *Lab) freePorts(n int) ([]int, error) { return l.ports.take(n) }

// waitFor polls ready until it returns nil, the process dies, or ctx or
// the timeout ends. It prints a progress line every few seconds.
func (l *Lab) waitFor(ctx context.Context, what string, timeout time.Duration, procs []*process, ready func(context.Context) error) error {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	lastNote := start
	var last error
	for {
		for _, p := range procs {
			if dead, err := p.exited(); dead {
				return fmt.Errorf("%s: %s stopped while starting (%v); its log %s ends with:\n%s", what, p.name, err, p.logPath, p.tail(20))
			}
		}
		if last = ready(ctx); last == nil {
			l.progress("%s: ready (%s)", what, time.Since(start).Round(100*time.Millisecond))
			return nil
		}
		select {
		case <-ctx.Done():
			var tails strings.Builder
			for _, p := range procs {
				fmt.Fprintf(&tails, "\n%s's log %s ends with:\n%s", p.name, p.logPath, p.tail(20))
			}
			return fmt.Errorf("%s: not ready after %s: %v%s", what, time.Since(start).Round(time.Second), last, tails.String())
		case <-time.After(200 * time.Millisecond):
		}
		if time.Since(lastNote) >= 5*time.Second {
			lastNote = time.Now()
			l.progress("%s: still waiting (%s): %v", what, time.Since(start).Round(time.Second), last)
		}
	}
}

func httpOK(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

func (l *Lab) startNomadServer(ctx context.Context) error {
	ports, err := l.freePorts(3)
	if err != nil {
		return err
	}
	l.NomadAddr = fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	l.NomadRPC = fmt.Sprintf("127.0.0.1:%d", ports[1])
	l.server = agentConfig{Name: "server", Datacenter: Datacenter, HTTP: ports[0], RPC: ports[1], Serf: ports[2], Server: true}
	cfg := nomad.DefaultConfig()
	cfg.Address = l.NomadAddr
	cfg.SecretID = ""
	cfg.Region = ""
	cfg.Namespace = ""
	if l.nomad, err = nomad.NewClient(cfg); err != nil {
		return err
	}
	return l.runNomadServer(ctx)
}

// RestartNomadServer stops the lab's Nomad server (SIGTERM, as an operator
// restarting it would), leaves it down for down, and starts it again on
// the same addresses and data directory, so the cluster keeps its jobs,
// nodes and allocations; it returns once the server has a leader again.
// Every connection to the server breaks: the event streams its readers
// follow, blocking queries, the clients' RPC. While it is down, requests
// are refused. The clients reconnect by themselves.
func (l *Lab) RestartNomadServer(ctx context.Context, down time.Duration) error {
	l.mu.Lock()
	p := l.nomadServer
	l.mu.Unlock()
	l.progress("nomad server: stopping for %s", down)
	p.stop(10 * time.Second)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(down):
	}
	return l.runNomadServer(ctx)
}

// runNomadServer starts the Nomad server's agent and waits for its leader.
func (l *Lab) runNomadServer(ctx context.Context) error {
	l.progress("nomad server: starting on %s", l.NomadAddr)
	p, err := l.startAgent(l.server)
	if err != nil {
		return err
	}
	l.mu.Lock()
	l.nomadServer = p
	l.mu.Unlock()
	return l.waitFor(ctx, "nomad server", 60*time.Second, []*process{p}, func(context.Context) error {
		leader, err := l.nomad.Status().Leader()
		if err != nil {
			return err
		}
		if leader == "" {
			return errors.New("no leader yet")
		}
		return nil
	})
}

// hostMeta is an internal host's node meta: its business unit and tier,
// and, for the business unit's own hosts, whom it serves. Shared hosts
// serve nobody until Spillway lends them.
func hostMeta(bu, tier string) map[string]string {
	m := map[string]string{MetaBusinessUnit: bu, MetaTier: tier}
	if tier == TierOwn {
		m[MetaServes] = bu
	}
	return m
}

func (l *Lab) startHosts(ctx context.Context) error {
	type spec struct{ name, bu, pool, tier string }
	var specs []spec
	for _, bu := range l.opts.BusinessUnits {
		for i := 1; i <= bu.Hosts; i++ {
			specs = append(specs, spec{fmt.Sprintf("%s-%d", bu.Name, i), bu.Name, bu.Name, TierOwn})
		}
	}
	for i := 1; i <= l.opts.SharedHosts && len(l.opts.BusinessUnits) > 0; i++ {
		lender := l.opts.BusinessUnits[(i-1)%len(l.opts.BusinessUnits)].Name
		specs = append(specs, spec{fmt.Sprintf("shared-%d", i), lender, SharedPool, TierShared})
	}
	if len(specs) == 0 {
		return nil
	}
	l.progress("nomad clients: starting %d internal hosts (%d business units, %d shared)", len(specs), len(l.opts.BusinessUnits), l.opts.SharedHosts)
	var procs []*process
	for _, s := range specs {
		ports, err := l.freePorts(3)
		if err != nil {
			return err
		}
		dynLow, dynHigh, err := l.ports.dynamicBlock()
		if err != nil {
			return err
		}
		p, err := l.startAgent(agentConfig{
			Name: s.name, Datacenter: Datacenter, HTTP: ports[0], RPC: ports[1], Serf: ports[2],
			DynamicLow: dynLow, DynamicHigh: dynHigh,
			Servers: l.NomadRPC, NodePool: s.pool, NodeClass: InternalClass,
			CPU: l.opts.HostCPU, MemoryMB: l.opts.HostMemoryMB,
			Meta: sortedMeta(hostMeta(s.bu, s.tier)),
		})
		if err != nil {
			return err
		}
		procs = append(procs, p)
		l.Hosts = append(l.Hosts, &Host{Name: s.name, BusinessUnit: s.bu, NodePool: s.pool, Tier: s.tier,
			HTTPAddr: fmt.Sprintf("http://127.0.0.1:%d", ports[0]), proc: p})
	}
	want := len(specs)
	return l.waitFor(ctx, "nomad clients", 90*time.Second, procs, func(context.Context) error {
		nodes, _, err := l.nomad.Nodes().List(nil)
		if err != nil {
			return err
		}
		ready := 0
		for _, n := range nodes {
			if n.Status == nomad.NodeStatusReady {
				ready++
			}
		}
		if ready < want {
			return fmt.Errorf("%d of %d nodes ready", ready, want)
		}
		return nil
	})
}

// FreezeHost stops the Nomad agent of internal host name (bu-a-1,
// shared-1) with SIGSTOP, as FreezeCloudHost does a cloud host's: to the
// Nomad servers its heartbeats stop, as a hung agent or a cut line looks,
// while its tasks run on. Only the agent stops: the plugins it started
// (logmon, executors) keep reading and running its tasks. ThawHost
// resumes it.
func (l *Lab) FreezeHost(name string) error {
	return l.signalHost(name, syscall.SIGSTOP, "frozen (SIGSTOP)")
}

// ThawHost resumes the agent of an internal host FreezeHost stopped.
func (l *Lab) ThawHost(name string) error {
	return l.signalHost(name, syscall.SIGCONT, "resumed (SIGCONT)")
}

func (l *Lab) signalHost(name string, sig syscall.Signal, what string) error {
	i := slices.IndexFunc(l.Hosts, func(h *Host) bool { return h.Name == name })
	if i < 0 || l.Hosts[i].proc == nil {
		return fmt.Errorf("the lab has no internal host %s", name)
	}
	return l.signalAgent(l.Hosts[i].proc, "host "+name, sig, what)
}

// signalAgent sends sig to the nomad agent p of host (its words: "host
// bu-a-1", "cloud host i-0abc") and says what it did to it.
func (l *Lab) signalAgent(p *process, host string, sig syscall.Signal, what string) error {
	if ok, _ := p.exited(); ok {
		return fmt.Errorf("the nomad agent of %s has exited", host)
	}
	if err := syscall.Kill(p.cmd.Process.Pid, sig); err != nil {
		return fmt.Errorf("signalling the nomad agent of %s: %w", host, err)
	}
	l.progress("%s: nomad agent %s", host, what)
	return nil
}
