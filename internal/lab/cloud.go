package lab

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	ignition "github.com/coreos/ignition/v2/config/v3_5"
	igntypes "github.com/coreos/ignition/v2/config/v3_5/types"
	nomad "github.com/hashicorp/nomad/api"
	"github.com/vincent-petithory/dataurl"

	"github.com/spillwayhq/spillway/providers/bootstrap"
	"github.com/spillwayhq/spillway/providers/cloudsim"
)

// CloudOptions runs the cloud simulator inside the lab. Both the EC2 and
// the ECS APIs are served on one loopback listener (Lab.Cloud). When a
// simulated instance boots, the lab interprets its user data as the
// Ignition config a Flatcar or Fedora CoreOS host would get: it writes the
// config's files into a per-instance directory, emulates the platform
// metadata (the instance ID afterburn would write), runs the units ordered
// before the Nomad unit, and starts a real Nomad client agent from the
// rendered Nomad config, rewritten for loopback. Terminating the instance
// stops that agent and everything it started.
type CloudOptions struct {
	// Config configures the simulated clouds; its accounts are the
	// credentials the providers sign with.
	Config cloudsim.Config
	// Clock drives instance lifecycles. Nil is the wall clock, on which
	// Config.TimeScale shortens every simulated latency.
	Clock cloudsim.Clock
	// Timeline receives each cloud host's phases: requested, running,
	// booted, Nomad node registered, node ready. Times come from Clock.
	Timeline bootstrap.Timeline
	// HostCPU (MHz) and HostMemoryMB size each cloud host. Zero means the
	// lab's internal host size.
	HostCPU, HostMemoryMB int
	// MaxHosts is max_hosts of each cloud pool the lab writes (with
	// Options.LabPools). Zero means 10.
	MaxHosts int
	// DownGrace is the control plane's clouds.down_grace. Zero means its
	// default.
	DownGrace time.Duration
	// Link, when set, is a dedicated line every cloud pool the lab writes
	// names (with Options.LabPools).
	Link *Link
}

// Link is a Link document of the lab's pool files.
type Link struct {
	Name string
	// Bandwidth is as the pool files write it, e.g. 100Mbps.
	Bandwidth string
	// TargetUtilization is in percent; zero leaves the default (80%).
	TargetUtilization int
}

// DefaultDescribeLag is how long the lab's clouds hide a just-launched
// instance from their APIs (cloudsim's Latency.DescribeLag, scaled by its
// TimeScale), unless CloudOptions.Config sets it; a negative one turns it
// off.
const DefaultDescribeLag = 3 * time.Second

// instanceEnv marks every process of one cloud instance (its agent, and
// the executors and tasks the agent starts) with the instance ID.
const instanceEnv = "SPILLWAY_LAB_INSTANCE"

// CloudHost is the lab's view of one simulated cloud instance it booted.
type CloudHost struct {
	ID       string
	Provider string
	Pool     string
	Claim    string
	// Dir is the instance directory: root/ holds the files Ignition wrote,
	// data/ is Nomad's data_dir, nomad.d/ the agent's rewritten config.
	Dir string
	// NodeID is the Nomad node, once registered.
	NodeID string
	// Booted is set once the agent started; Terminated once it was stopped.
	Booted, Terminated bool
	// Err is why the instance did not boot into a Nomad client, if so.
	Err error
}

type cloudLab struct {
	l        *Lab
	ctx      context.Context
	sim      *cloudsim.Simulator
	timeline bootstrap.Timeline
	cpu, mem int

	mu    sync.Mutex
	hosts map[string]*cloudHost
	seen  map[string]map[bootstrap.Phase]bool // instance → phases recorded
}

type cloudHost struct {
	CloudHost
	prePull  bool
	proc     *process
	bootDone chan struct{}
}

// Cloud returns the lab's cloud simulator, or nil without Options.Cloud.
func (l *Lab) Cloud() *cloudsim.Simulator {
	if l.cloud == nil {
		return nil
	}
	return l.cloud.sim
}

// CloudHosts returns the cloud instances the lab booted, in ID order.
func (l *Lab) CloudHosts() []CloudHost {
	if l.cloud == nil {
		return nil
	}
	c := l.cloud
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]CloudHost, 0, len(c.hosts))
	for _, h := range c.hosts {
		out = append(out, h.CloudHost)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// InstanceProcesses lists the live processes of one cloud instance: its
// Nomad agent and whatever that agent started. After the instance is
// terminated it is empty.
func InstanceProcesses(id string) []int {
	var live []int
	for _, pid := range instancePIDs(id) {
		if !isZombie(pid) {
			live = append(live, pid)
		}
	}
	return live
}

// startCloud starts the simulator and the watch that records phases. ctx
// lives until Stop, which closes the simulator.
func (l *Lab) startCloud(ctx context.Context, o CloudOptions) error {
	c := &cloudLab{l: l, ctx: ctx, timeline: o.Timeline, cpu: o.HostCPU, mem: o.HostMemoryMB,
		hosts: map[string]*cloudHost{}, seen: map[string]map[bootstrap.Phase]bool{}}
	if c.timeline == nil {
		c.timeline = bootstrap.TimelineFunc(func(bootstrap.Event) {})
	}
	if c.cpu == 0 {
		c.cpu = l.opts.HostCPU
	}
	if c.mem == 0 {
		c.mem = l.opts.HostMemoryMB
	}
	opts := []cloudsim.Option{cloudsim.WithBootHook(c.boot), cloudsim.WithTerminateHook(c.terminate)}
	if o.Config.Latency.DescribeLag == 0 {
		// The lab's clouds are eventually consistent, as EC2 and ECS are.
		o.Config.Latency.DescribeLag = DefaultDescribeLag
	}
	if o.Clock != nil {
		opts = append(opts, cloudsim.WithClock(o.Clock))
	}
	sim, err := cloudsim.New(o.Config, opts...)
	if err != nil {
		return fmt.Errorf("starting the cloud simulator: %w", err)
	}
	if err := sim.Start("127.0.0.1:0"); err != nil {
		return err
	}
	c.sim = sim
	l.cloud = c
	l.progress("cloud simulator: EC2 and ECS on %s", sim.URL())
	go func() {
		<-ctx.Done()
		_ = sim.Close()
	}()
	go c.watchInstances()
	go c.watchNodes()
	return nil
}

// record emits phase for host once, after any earlier phase it lacks
// (stamped with the same time), so each host's timeline is in order.
func (c *cloudLab) record(ev bootstrap.Event) {
	c.mu.Lock()
	seen := c.seen[ev.Host]
	if seen == nil {
		seen = map[bootstrap.Phase]bool{}
		c.seen[ev.Host] = seen
	}
	var emit []bootstrap.Event
	for _, p := range bootstrap.Phases {
		if !seen[p] {
			seen[p] = true
			e := ev
			e.Phase = p
			if p != bootstrap.PhaseRegistered && p != bootstrap.PhaseReady {
				e.Node = ""
			}
			emit = append(emit, e)
		}
		if p == ev.Phase {
			break
		}
	}
	c.mu.Unlock()
	for _, e := range emit {
		c.timeline.Record(e)
	}
}

func (c *cloudLab) recorded(id string, p bootstrap.Phase) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.seen[id][p]
}

func hostEvent(in cloudsim.Instance) bootstrap.Event {
	return bootstrap.Event{Host: in.ID, Provider: in.Cloud, Pool: in.Tags[poolTag], Claim: in.Tags[claimTag]}
}

// The ownership tags (providers.TagPool and TagClaim), spelled out so the
// lab does not depend on the providers package for two strings.
const (
	poolTag  = "spillway:pool"
	claimTag = "spillway:claim"
)

// watchInstances records when instances are requested and running. The
// simulator has no watch API, so it samples every 100ms of wall time.
func (c *cloudLab) watchInstances() {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
		for _, in := range c.sim.Instances("") {
			ev := hostEvent(in)
			if !c.recorded(in.ID, bootstrap.PhaseRequested) {
				ev.Phase, ev.At = bootstrap.PhaseRequested, in.LaunchTime
				c.record(ev)
			}
			if (in.State == "running" || in.State == "Running") && !c.recorded(in.ID, bootstrap.PhaseRunning) {
				ev.Phase, ev.At = bootstrap.PhaseRunning, c.sim.Now()
				c.record(ev)
			}
		}
	}
}

// watchNodes follows the Nomad nodes with blocking queries and records
// when a cloud host's node registers and becomes ready.
func (c *cloudLab) watchNodes() {
	var index uint64
	for c.ctx.Err() == nil {
		q := (&nomad.QueryOptions{WaitIndex: index, WaitTime: 5 * time.Second}).WithContext(c.ctx)
		nodes, meta, err := c.l.nomad.Nodes().List(q)
		if err != nil {
			select {
			case <-c.ctx.Done():
				return
			case <-time.After(500 * time.Millisecond):
			}
			continue
		}
		index = meta.LastIndex
		for _, n := range nodes {
			c.mu.Lock()
			h := c.hosts[n.Name] // the rendered config names the node after the instance
			var (
				ev      bootstrap.Event
				prePull bool
			)
			if h != nil {
				if h.NodeID == "" {
					h.NodeID = n.ID
				}
				ev = bootstrap.Event{Host: h.ID, Provider: h.Provider, Pool: h.Pool, Claim: h.Claim, Node: n.ID}
				prePull = h.prePull
			}
			c.mu.Unlock()
			if h == nil || n.Status == nomad.NodeStatusDown {
				continue
			}
			if !c.recorded(h.ID, bootstrap.PhaseRegistered) {
				ev.Phase, ev.At = bootstrap.PhaseRegistered, c.sim.Now()
				c.record(ev)
			}
			if n.Status != nomad.NodeStatusReady || n.SchedulingEligibility != nomad.NodeSchedulingEligible || c.recorded(h.ID, bootstrap.PhaseReady) {
				continue
			}
			if prePull && !c.prePulled(n.ID) {
				continue // the next change of the node wakes the query again
			}
			ev.Phase, ev.At = bootstrap.PhaseReady, c.sim.Now()
			c.record(ev)
		}
	}
}

// prePulled reports whether a node's meta says its images are pre-pulled.
func (c *cloudLab) prePulled(nodeID string) bool {
	node, _, err := c.l.nomad.Nodes().Info(nodeID, nil)
	return err == nil && node.Meta[bootstrap.MetaPrePull] == bootstrap.PrePullDone
}

// boot is the simulator's boot hook. It returns at once; the instance
// boots in the background.
func (c *cloudLab) boot(_ context.Context, ev cloudsim.InstanceEvent) {
	if c.ctx.Err() != nil {
		return
	}
	h := &cloudHost{CloudHost: CloudHost{ID: ev.InstanceID, Provider: ev.Provider, Pool: ev.Tags[poolTag], Claim: ev.Tags[claimTag],
		Dir: filepath.Join(c.l.Dir, "nomad", ev.InstanceID)}, bootDone: make(chan struct{})}
	c.mu.Lock()
	if _, dup := c.hosts[ev.InstanceID]; dup {
		c.mu.Unlock()
		return
	}
	c.hosts[ev.InstanceID] = h
	c.mu.Unlock()
	go func() {
		defer close(h.bootDone)
		err := c.bootInstance(h, ev)
		c.mu.Lock()
		h.Err = err
		h.Booted = err == nil
		c.mu.Unlock()
		if err != nil {
			c.l.progress("cloud host %s (%s): boot failed: %v", ev.InstanceID, ev.Provider, err)
		}
	}()
}

// bootInstance applies the Ignition config and starts the Nomad agent.
func (c *cloudLab) bootInstance(h *cloudHost, ev cloudsim.InstanceEvent) error {
	cfg, err := c.ignitionConfig(ev.UserData)
	if err != nil {
		return err
	}
	root := filepath.Join(h.Dir, "root")
	skipped, err := writeStorage(root, cfg.Storage)
	if err != nil {
		return fmt.Errorf("applying storage: %w", err)
	}
	if err := writeMetadata(root, ev); err != nil {
		return fmt.Errorf("emulating platform metadata: %w", err)
	}
	units := enabledUnits(cfg.Systemd)
	nomadUnit, ok := findNomadUnit(units)
	if !ok {
		return errors.New("the Ignition config has no enabled unit that runs `nomad agent`")
	}
	c.mu.Lock()
	h.prePull = units[bootstrap.PrePullUnit] != ""
	c.mu.Unlock()
	// Units ordered before the Nomad unit run first, as systemd would.
	bootLog, err := os.OpenFile(filepath.Join(h.Dir, "boot.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer bootLog.Close()
	for _, r := range skipped {
		fmt.Fprintf(bootLog, "lab: not fetching %s (the lab brings its own nomad)\n", r)
	}
	for _, name := range unitsBefore(units, nomadUnit) {
		if err := runUnit(c.ctx, root, name, units[name], nil, 30*time.Second, bootLog); err != nil {
			return err
		}
	}
	// On a fake clock an instance can launch and boot between two samples
	// of watchInstances: take its launch time from the simulator then.
	if !c.recorded(h.ID, bootstrap.PhaseRequested) {
		for _, in := range c.sim.Instances(h.Provider) {
			if in.ID == h.ID {
				ev := hostEvent(in)
				ev.Phase, ev.At = bootstrap.PhaseRequested, in.LaunchTime
				c.record(ev)
			}
		}
	}
	c.record(bootstrap.Event{Host: h.ID, Provider: h.Provider, Pool: h.Pool, Claim: h.Claim, Phase: bootstrap.PhaseBooted, At: c.sim.Now()})

	args, agentAddr, err := c.nomadArgs(h, root, units[nomadUnit])
	if err != nil {
		return err
	}
	if c.ctx.Err() != nil {
		return errors.New("the lab is stopping")
	}
	p, err := c.l.startProcess("nomad-"+h.ID, c.l.bins.nomad, args, []string{instanceEnv + "=" + h.ID},
		[]string{"AWS_CA_BUNDLE", "NOMAD_ADDR", "NOMAD_TOKEN", "NOMAD_REGION", "NOMAD_NAMESPACE", instanceEnv})
	if err != nil {
		return err
	}
	c.mu.Lock()
	h.proc = p
	c.mu.Unlock()
	c.l.progress("cloud host %s (%s, pool %s): booted, nomad client starting", h.ID, h.Provider, h.Pool)
	// Units ordered after the Nomad unit (the image pre-pull) run once the
	// agent started, against it, marked as the instance's processes. The
	// lab has no container engine: DOCKER is /bin/true, so images count as
	// pulled at once; everything else the unit does, it does for real.
	if after := unitsAfter(units, nomadUnit); len(after) > 0 {
		env := []string{"NOMAD_ADDR=" + agentAddr, "NOMAD_BIN=" + c.l.bins.nomad, "DOCKER=/bin/true",
			markerEnv + "=" + c.l.Dir, instanceEnv + "=" + h.ID}
		go func() {
			f, err := os.OpenFile(filepath.Join(h.Dir, "boot.log"), os.O_WRONLY|os.O_APPEND, 0o644)
			if err != nil {
				return
			}
			defer f.Close()
			for _, name := range after {
				if err := runUnit(c.ctx, root, name, units[name], env, 2*time.Minute, f); err != nil {
					c.mu.Lock()
					gone := h.Terminated
					c.mu.Unlock()
					if !gone && c.ctx.Err() == nil {
						c.l.progress("cloud host %s: %v", h.ID, err)
					}
					return
				}
			}
		}()
	}
	return nil
}

// ignitionConfig parses user data as an Ignition config (spec 3.0–3.5),
// following a pointer config (ignition.config.replace) when its source is
// on loopback.
func (c *cloudLab) ignitionConfig(userData []byte) (igntypes.Config, error) {
	cfg, rep, err := ignition.ParseCompatibleVersion(userData)
	if err != nil {
		return cfg, fmt.Errorf("user data is not an Ignition config: %w", err)
	}
	if rep.IsFatal() {
		return cfg, fmt.Errorf("invalid Ignition config: %s", rep)
	}
	rp := cfg.Ignition.Config.Replace
	if rp.Source == nil || *rp.Source == "" {
		return cfg, nil
	}
	u, err := url.Parse(*rp.Source)
	if err != nil || u.Scheme != "http" || net.ParseIP(u.Hostname()) == nil || !net.ParseIP(u.Hostname()).IsLoopback() {
		return cfg, fmt.Errorf("the lab follows pointer configs only to http://127.0.0.1, not %q", *rp.Source)
	}
	ctx, cancel := context.WithTimeout(c.ctx, 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return cfg, fmt.Errorf("fetching the replacement config: %w", err)
	}
	defer resp.Body.Close()
	full, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil || resp.StatusCode != http.StatusOK {
		return cfg, fmt.Errorf("fetching the replacement config: %s %v", resp.Status, err)
	}
	if h := rp.Verification.Hash; h != nil {
		sum := sha512.Sum512(full)
		if *h != "sha512-"+hex.EncodeToString(sum[:]) {
			return cfg, errors.New("the replacement config does not match its sha512")
		}
	}
	next, rep, err := ignition.ParseCompatibleVersion(full)
	if err != nil || rep.IsFatal() {
		return cfg, fmt.Errorf("invalid replacement config: %v %s", err, rep)
	}
	return next, nil
}

// writeStorage writes directories, inline files and links under root. It
// returns the remote sources it skipped: the lab has no internet, and
// brings its own nomad binary.
func writeStorage(root string, st igntypes.Storage) ([]string, error) {
	for _, d := range st.Directories {
		mode := os.FileMode(0o755)
		if d.Mode != nil {
			mode = os.FileMode(*d.Mode)
		}
		if err := os.MkdirAll(under(root, d.Path), mode); err != nil {
			return nil, err
		}
	}
	var skipped []string
	for _, f := range st.Files {
		if f.Contents.Source == nil {
			continue
		}
		src := *f.Contents.Source
		if !strings.HasPrefix(src, "data:") {
			skipped = append(skipped, f.Path+" from "+src)
			continue
		}
		data, err := decodeDataURL(src, f.Contents.Compression)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.Path, err)
		}
		mode := os.FileMode(0o644)
		if f.Mode != nil {
			mode = os.FileMode(*f.Mode)
		}
		p := under(root, f.Path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(p, data, mode); err != nil {
			return nil, err
		}
		if err := os.Chmod(p, mode); err != nil {
			return nil, err
		}
	}
	for _, ln := range st.Links {
		if ln.Target == nil {
			continue
		}
		p := under(root, ln.Path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return nil, err
		}
		_ = os.Remove(p)
		if err := os.Symlink(under(root, *ln.Target), p); err != nil {
			return nil, err
		}
	}
	return skipped, nil
}

func decodeDataURL(src string, compression *string) ([]byte, error) {
	du, err := dataurl.DecodeString(src)
	if err != nil {
		return nil, fmt.Errorf("decoding data URL: %w", err)
	}
	if compression == nil || *compression == "" {
		return du.Data, nil
	}
	if *compression != "gzip" {
		return nil, fmt.Errorf("unsupported compression %q", *compression)
	}
	zr, err := gzip.NewReader(bytes.NewReader(du.Data))
	if err != nil {
		return nil, err
	}
	return io.ReadAll(io.LimitReader(zr, 64<<20))
}

// under maps an absolute host path into root.
func under(root, p string) string {
	return filepath.Join(root, filepath.Clean("/"+p))
}

// writeMetadata writes what the OS's metadata agent would: afterburn on
// Fedora CoreOS (/run/metadata/afterburn) and coreos-metadata on Flatcar
// (/run/metadata/flatcar, COREOS_ prefix, EC2 for AWS). Both are written,
// so the lab need not know the variant.
func writeMetadata(root string, ev cloudsim.InstanceEvent) error {
	cloud := map[string]string{cloudsim.CloudAWS: "AWS", cloudsim.CloudAlicloud: "ALIYUN"}[ev.Provider]
	if cloud == "" {
		return fmt.Errorf("unknown cloud %q", ev.Provider)
	}
	attrs := func(prefix, cloud string) string {
		var b strings.Builder
		kv := func(k, v string) { fmt.Fprintf(&b, "%s_%s_%s=%s\n", prefix, cloud, k, v) }
		kv("INSTANCE_ID", ev.InstanceID)
		kv("INSTANCE_TYPE", ev.InstanceType)
		if ev.Provider == cloudsim.CloudAWS {
			kv("IPV4_LOCAL", ev.PrivateIP)
			kv("AVAILABILITY_ZONE", ev.Zone)
			kv("REGION", ev.Region)
		} else {
			kv("IPV4_PRIVATE", ev.PrivateIP)
			kv("ZONE_ID", ev.Zone)
			kv("REGION_ID", ev.Region)
		}
		return b.String()
	}
	dir := under(root, "/run/metadata")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	flatcarCloud := cloud
	if cloud == "AWS" {
		flatcarCloud = "EC2"
	}
	if err := os.WriteFile(filepath.Join(dir, "afterburn"), []byte(attrs("AFTERBURN", cloud)), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "flatcar"), []byte(attrs("COREOS", flatcarCloud)), 0o644)
}

// enabledUnits returns the enabled units' contents by name.
func enabledUnits(sd igntypes.Systemd) map[string]string {
	out := map[string]string{}
	for _, u := range sd.Units {
		if u.Enabled != nil && *u.Enabled && u.Contents != nil {
			out[u.Name] = *u.Contents
		}
	}
	return out
}

// unitDirectives returns the values of key in a unit file, split on space.
func unitDirectives(contents, key string) []string {
	var out []string
	for _, line := range strings.Split(contents, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if ok && strings.TrimSpace(k) == key {
			out = append(out, strings.Fields(v)...)
		}
	}
	return out
}

func findNomadUnit(units map[string]string) (string, bool) {
	names := make([]string, 0, len(units))
	for n := range units {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		cmdline := unitDirectives(units[n], "ExecStart")
		if len(cmdline) >= 2 && filepath.Base(cmdline[0]) == "nomad" && cmdline[1] == "agent" {
			return n, true
		}
	}
	return "", false
}

// unitsBefore returns the enabled units that must run before unit: those
// it requires and those ordered Before= it, in name order.
func unitsBefore(units map[string]string, unit string) []string {
	want := map[string]bool{}
	for _, r := range unitDirectives(units[unit], "Requires") {
		want[r] = true
	}
	for n, c := range units {
		for _, b := range unitDirectives(c, "Before") {
			if b == unit {
				want[n] = true
			}
		}
	}
	var out []string
	for n := range want {
		if _, ok := units[n]; ok && n != unit {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// unitsAfter returns the enabled units that require unit or are ordered
// After= it, in name order.
func unitsAfter(units map[string]string, unit string) []string {
	var out []string
	for n, c := range units {
		if n == unit {
			continue
		}
		deps := append(unitDirectives(c, "After"), unitDirectives(c, "Requires")...)
		if slices.Contains(deps, unit) {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// runUnit runs a oneshot unit whose ExecStart is a file the config wrote,
// with RootEnv pointing the rendered script at the instance's root and env
// added. Units that run programs of the OS itself are skipped. The lab
// does not read Environment= or EnvironmentFile=: env says what the unit
// needs on loopback.
func runUnit(ctx context.Context, root, name, contents string, env []string, timeout time.Duration, log io.Writer) error {
	for _, c := range unitDirectives(contents, "ConditionPathExists") {
		if neg, ok := strings.CutPrefix(c, "!"); ok {
			if _, err := os.Stat(under(root, neg)); err == nil {
				fmt.Fprintf(log, "lab: %s: skipped, %s exists\n", name, neg)
				return nil
			}
		}
	}
	execStart := unitDirectives(contents, "ExecStart")
	if len(execStart) == 0 {
		return nil
	}
	script := under(root, execStart[0])
	if _, err := os.Stat(script); err != nil {
		fmt.Fprintf(log, "lab: %s: skipped, %s is part of the OS\n", name, execStart[0])
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", append([]string{script}, execStart[1:]...)...)
	cmd.Env = append(filterEnv(os.Environ(), []string{"NOMAD_ADDR", "NOMAD_TOKEN", "NOMAD_REGION", "NOMAD_NAMESPACE", "NOMAD_CACERT",
		"NOMAD_CLIENT_CERT", "NOMAD_CLIENT_KEY", "AWS_CA_BUNDLE", instanceEnv}), append([]string{bootstrap.RootEnv + "=" + root}, env...)...)
	cmd.Stdout, cmd.Stderr = log, log
	fmt.Fprintf(log, "lab: %s: running %s\n", name, execStart[0])
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("unit %s: %s: %w (see %s)", name, execStart[0], err, filepath.Join(filepath.Dir(root), "boot.log"))
	}
	fmt.Fprintf(log, "lab: %s: done\n", name)
	return nil
}

// nomadArgs rewrites the Nomad configs the unit's ExecStart names for
// loopback and returns the agent's arguments.
//
// Kept as rendered: datacenter, region, name, node pool, class, meta and
// every other setting. Rewritten: data_dir (under the instance), bind and
// advertise addresses (127.0.0.1), ports (free ones), servers (the lab's
// server, instead of the rendered servers or retry_join), the network
// interface (lo), the dynamic port range (a block of the lab's), host size, the raw_exec driver, no update check, and a
// fingerprint denylist of the cloud environment fingerprinters so nothing
// probes 169.254.169.254. Left out: the tls and acl blocks, since the
// lab's server runs without mTLS and ACLs.
func (c *cloudLab) nomadArgs(h *cloudHost, root, unit string) (args []string, agentAddr string, err error) {
	cmdline := unitDirectives(unit, "ExecStart")
	var paths []string
	for i := 1; i < len(cmdline); i++ {
		a := cmdline[i]
		if v, ok := strings.CutPrefix(a, "-config="); ok {
			paths = append(paths, v)
		} else if a == "-config" && i+1 < len(cmdline) {
			paths = append(paths, cmdline[i+1])
			i++
		}
	}
	if len(paths) == 0 {
		return nil, "", errors.New("the Nomad unit passes no -config")
	}
	var files []string
	for _, p := range paths {
		hp := under(root, p)
		st, err := os.Stat(hp)
		if err != nil {
			return nil, "", fmt.Errorf("nomad config %s: %w", p, err)
		}
		if !st.IsDir() {
			files = append(files, hp)
			continue
		}
		entries, err := os.ReadDir(hp)
		if err != nil {
			return nil, "", err
		}
		for _, e := range entries { // Nomad reads a directory in name order
			if !e.IsDir() && (strings.HasSuffix(e.Name(), ".json") || strings.HasSuffix(e.Name(), ".hcl")) {
				files = append(files, filepath.Join(hp, e.Name()))
			}
		}
	}
	outDir := filepath.Join(h.Dir, "nomad.d")
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return nil, "", err
	}
	for i, f := range files {
		if strings.HasSuffix(f, ".hcl") {
			return nil, "", fmt.Errorf("nomad config %s is HCL; the lab rewrites only JSON configs", strings.TrimPrefix(f, root))
		}
		var data []byte
		data, err = os.ReadFile(f)
		if err != nil {
			return nil, "", err
		}
		var cfg map[string]any
		if err := json.Unmarshal(data, &cfg); err != nil {
			return nil, "", fmt.Errorf("nomad config %s: %w", strings.TrimPrefix(f, root), err)
		}
		if _, ok := cfg["server"]; ok {
			return nil, "", fmt.Errorf("nomad config %s configures a server; cloud hosts are clients", strings.TrimPrefix(f, root))
		}
		for _, k := range []string{"data_dir", "bind_addr", "addresses", "advertise", "ports", "tls", "acl", "log_file", "consul", "vault"} {
			delete(cfg, k)
		}
		if cl, ok := cfg["client"].(map[string]any); ok {
			for _, k := range []string{"servers", "server_join", "network_interface", "min_dynamic_port", "max_dynamic_port", "cpu_total_compute", "memory_total_mb", "state_dir", "alloc_dir"} {
				delete(cl, k)
			}
		}
		if len(cfg) == 0 {
			continue
		}
		out := filepath.Join(outDir, fmt.Sprintf("%02d-%s", i, filepath.Base(f)))
		b, _ := json.MarshalIndent(cfg, "", "  ")
		if err := os.WriteFile(out, b, 0o600); err != nil {
			return nil, "", err
		}
		args = append(args, "-config", out)
	}
	ports, err := c.l.freePorts(3)
	if err != nil {
		return nil, "", err
	}
	dynLow, dynHigh, err := c.l.ports.dynamicBlock()
	if err != nil {
		return nil, "", err
	}
	dataDir := filepath.Join(h.Dir, "data")
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return nil, "", err
	}
	lab := map[string]any{
		"data_dir":             dataDir,
		"bind_addr":            "127.0.0.1",
		"log_level":            "INFO",
		"disable_update_check": true,
		"ports":                map[string]any{"http": ports[0], "rpc": ports[1], "serf": ports[2]},
		"advertise": map[string]any{
			"http": fmt.Sprintf("127.0.0.1:%d", ports[0]),
			"rpc":  fmt.Sprintf("127.0.0.1:%d", ports[1]),
			"serf": fmt.Sprintf("127.0.0.1:%d", ports[2]),
		},
		"client": map[string]any{
			"enabled":           true,
			"servers":           []string{c.l.NomadRPC},
			"network_interface": "lo",
			"min_dynamic_port":  dynLow,
			"max_dynamic_port":  dynHigh,
			"cpu_total_compute": c.cpu,
			"memory_total_mb":   c.mem,
			"gc_interval":       "10s",
			"options": map[string]any{
				"fingerprint.denylist": "env_aws,env_gce,env_azure,env_digitalocean,consul,vault",
				"driver.allowlist":     "raw_exec",
			},
		},
		"plugin": map[string]any{"raw_exec": map[string]any{"config": map[string]any{"enabled": true}}},
	}
	b, _ := json.MarshalIndent(lab, "", "  ")
	out := filepath.Join(outDir, "99-lab.json")
	if err := os.WriteFile(out, b, 0o600); err != nil {
		return nil, "", err
	}
	return append([]string{"agent"}, append(args, "-config", out)...), fmt.Sprintf("http://127.0.0.1:%d", ports[0]), nil
}

// terminate is the simulator's terminate hook: like a powered-off VM, the
// instance's agent and everything it started stop. The node is marked
// ineligible at once; Nomad marks it down when its heartbeat TTL passes.
func (c *cloudLab) terminate(_ context.Context, ev cloudsim.InstanceEvent) {
	c.mu.Lock()
	h := c.hosts[ev.InstanceID]
	if h == nil || h.Terminated {
		c.mu.Unlock()
		return
	}
	h.Terminated = true
	c.mu.Unlock()
	go func() {
		select {
		case <-h.bootDone:
		case <-time.After(30 * time.Second):
		}
		c.mu.Lock()
		p, node := h.proc, h.NodeID
		c.mu.Unlock()
		if p != nil {
			p.stop(5 * time.Second)
		}
		killInstance(ev.InstanceID, 10*time.Second)
		unmountUnder(h.Dir)
		if node != "" && c.ctx.Err() == nil {
			if _, err := c.l.nomad.Nodes().ToggleEligibility(node, false, nil); err != nil {
				c.l.progress("cloud host %s: marking node %s ineligible: %v", ev.InstanceID, node, err)
			}
		}
		c.l.progress("cloud host %s: terminated, nomad client stopped", ev.InstanceID)
	}()
}

// FreezeCloudHost stops a booted cloud host's Nomad agent with SIGSTOP:
// to the Nomad servers, as a flap of the line to the cloud or a hung agent
// looks (its heartbeats stop), while its tasks run on. ThawCloudHost
// resumes it.
func (l *Lab) FreezeCloudHost(id string) error {
	return l.signalCloudHost(id, syscall.SIGSTOP, "frozen (SIGSTOP)")
}

// ThawCloudHost resumes a cloud host's agent FreezeCloudHost stopped.
func (l *Lab) ThawCloudHost(id string) error {
	return l.signalCloudHost(id, syscall.SIGCONT, "resumed (SIGCONT)")
}

func (l *Lab) signalCloudHost(id string, sig syscall.Signal, what string) error {
	if l.cloud == nil {
		return fmt.Errorf("the lab has no cloud simulator")
	}
	l.cloud.mu.Lock()
	h := l.cloud.hosts[id]
	var p *process
	if h != nil {
		p = h.proc
	}
	l.cloud.mu.Unlock()
	if p == nil {
		return fmt.Errorf("cloud host %s has no running nomad agent", id)
	}
	return l.signalAgent(p, "cloud host "+id, sig, what)
}

// killInstance kills every process marked with the instance until none is
// left or the timeout passes: Nomad lets tasks outlive their agent, a
// terminated VM does not.
func killInstance(id string, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for {
		pids := instancePIDs(id)
		if len(pids) == 0 {
			return
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		reap(pids)
		if time.Now().After(deadline) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// instancePIDs lists the processes of one cloud instance, zombies too.
func instancePIDs(id string) []int {
	return pidsWithEnv(instanceEnv, func(v string) bool { return v == id })
}
