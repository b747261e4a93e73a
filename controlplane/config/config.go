// Package config owns the daemon's configuration (`spillway serve --config`):
// its schema and defaults, strict loading and validation, and the layering of
// a YAML file, SPILLWAY_* environment variables and command-line flags, in
// that order of precedence, through viper.
package config

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
	"go.yaml.in/yaml/v3"

	"github.com/spillwayhq/spillway/controlplane/auth"
	"github.com/spillwayhq/spillway/internal/strictyaml"
)

// EnvPrefix prefixes every environment variable that sets a config key:
// key "nomad.address" is SPILLWAY_NOMAD_ADDRESS.
const EnvPrefix = "SPILLWAY"

// Config is the daemon's configuration.
type Config struct {
	// Listen is the address the API, the console and /metrics are served on.
	Listen     string     `yaml:"listen"`
	TLS        TLS        `yaml:"tls"`
	Log        Log        `yaml:"log"`
	Nomad      Nomad      `yaml:"nomad"`
	Prometheus Prometheus `yaml:"prometheus"`
	Policies   Policies   `yaml:"policies"`
	Pools      Pools      `yaml:"pools"`
	API        API        `yaml:"api"`
	Journal    Journal    `yaml:"journal"`
	Alerts     Alerts     `yaml:"alerts"`
	Leader     Leader     `yaml:"leader"`
	Clouds     Clouds     `yaml:"clouds"`
	ScaleOut   ScaleOut   `yaml:"scale_out"`
}

// ScaleOut bounds the scale-out activities of the provisioning controller.
type ScaleOut struct {
	// Grace is how long past its deadline a scale-out keeps asking for
	// capacity that no tier could give (default 5m, 30s to 24h). Then it
	// ends: partial if it got hosts, unmet if none, and its end and the
	// reason are journaled. A new demand cycle of the group (its count or
	// allocation size changes) starts a new scale-out.
	Grace time.Duration `yaml:"grace"`
}

// Clouds says how serve reaches the clouds its cloud pools rent from. Each
// cloud pool names its provider and region in its pool file; the keys here
// are shared by every pool of a cloud.
type Clouds struct {
	// Cluster is the value of the spillway:cluster tag on every instance
	// (default "spillway"); it must match the Terraform modules'
	// cluster_name variable, and follows its rule: 1–32 lowercase letters,
	// digits and dashes, starting and ending with a letter or digit.
	Cluster string `yaml:"cluster"`
	// OrphanGrace: an instance tagged as ours with no journaled claim is
	// terminated once it has been seen so in two passes this far apart and
	// is this old (default 10m, 1m to 24h), and only when the journal is
	// older than it.
	OrphanGrace time.Duration `yaml:"orphan_grace"`
	// DownGrace: a rented host whose Nomad node was ready and is not any
	// more (a link flap, a hung agent) is kept this long before it is
	// terminated (default 5m, 30s to 24h); Nomad's disconnect.lost_after
	// plays the same part for allocations.
	DownGrace time.Duration `yaml:"down_grace"`
	AWS       AWSCloud      `yaml:"aws"`
	Alicloud  AlicloudCloud `yaml:"alicloud"`
}

// AWSCloud says how to reach EC2. With no access key, credentials come
// from the SDK's standard chain (AWS_ACCESS_KEY_ID and
// AWS_SECRET_ACCESS_KEY, the shared config and SSO, the instance or task
// role).
type AWSCloud struct {
	// Endpoint overrides the EC2 endpoint with an http or https URL, such
	// as the cloud simulator's http://127.0.0.1:PORT. Empty: the region's
	// endpoint.
	Endpoint string `yaml:"endpoint"`
	// AccessKeyID and SecretAccessKey are a static key; set both or neither.
	AccessKeyID     string `yaml:"access_key_id"`
	SecretAccessKey Secret `yaml:"secret_access_key"`
}

// AlicloudCloud says how to reach Alibaba Cloud ECS. With no access key,
// credentials come from the SDK's default chain
// (ALIBABA_CLOUD_ACCESS_KEY_ID and ALIBABA_CLOUD_ACCESS_KEY_SECRET, the
// credentials file, the instance RAM role named in
// ALIBABA_CLOUD_ECS_METADATA).
type AlicloudCloud struct {
	// Endpoint overrides the ECS endpoint with an http or https URL of a
	// host and optional port, no path, such as the cloud simulator's
	// http://127.0.0.1:PORT; the URL's scheme is the scheme requests use.
	// Empty: the SDK's endpoint for the region, over https.
	Endpoint string `yaml:"endpoint"`
	// AccessKeyID and AccessKeySecret are a static AccessKey; set both or
	// neither.
	AccessKeyID     string `yaml:"access_key_id"`
	AccessKeySecret Secret `yaml:"access_key_secret"`
}

// Domain splits Endpoint into what the ECS SDK takes: the host[:port]
// requests go to and the scheme, "http" or "https". Both are empty when
// Endpoint is; Validate has checked its shape.
func (a AlicloudCloud) Domain() (host, scheme string) {
	if a.Endpoint == "" {
		return "", ""
	}
	u, err := url.Parse(a.Endpoint)
	if err != nil {
		return "", ""
	}
	return u.Host, u.Scheme
}

// Leader configures the election of the one replica that acts when several
// run (deploy/spillway.nomad.hcl); the others serve reads.
type Leader struct {
	// Enabled elects the acting replica through a lease in the shared
	// PostgreSQL journal, so it needs journal.driver postgres.
	Enabled bool `yaml:"enabled"`
	// TTL is the lease (2s to 10m), on the database's clock: a leader that
	// cannot renew it for this long stops acting. A replica that dies is
	// replaced within TTL + RenewInterval; one that stops cleanly, at once.
	TTL time.Duration `yaml:"ttl"`
	// RenewInterval is how often the leader renews the lease (default:
	// a third of the TTL; at most half of it).
	RenewInterval time.Duration `yaml:"renew_interval"`
}

// RemovedKeys implements strictyaml.Retired: the keys of the election
// through a Nomad variable lock, which needs Nomad 1.7 or later.
func (Leader) RemovedKeys() map[string]string {
	const why = "the leader's lease is in the PostgreSQL journal now, not in a Nomad variable lock; delete this key"
	return map[string]string{"path": why, "namespace": why, "lock_delay": why}
}

// Journal says where the durable record of events and the lending ledger is.
type Journal struct {
	// Driver is sqlite (one replica; the default) or postgres (required
	// when several replicas run, since they share the journal).
	Driver string `yaml:"driver"`
	// Path is the SQLite database file (driver sqlite). A relative path in
	// the file is relative to the file.
	Path string `yaml:"path"`
	// DSN is the PostgreSQL connection string (driver postgres), as a URL
	// (postgres://user:password@host:5432/spillway?sslmode=verify-full) or
	// key=value pairs. It may hold a password, so it never prints.
	DSN Secret `yaml:"dsn"`
}

// Alerts configures the Alertmanager receiver.
type Alerts struct {
	// TTL forgets a firing alert Alertmanager has not re-sent for this long
	// (its resolve was lost). Keep it above Alertmanager's repeat_interval.
	TTL time.Duration `yaml:"ttl"`
	// MaxFiring caps the firing alerts that a policy's rule matched (alerts
	// that match none are counted, never stored). A notification that would
	// pass it is refused with 503 and Retry-After, which Alertmanager
	// retries (it retries only a 5xx), so nothing is lost.
	MaxFiring int `yaml:"max_firing"`
	// MaxBodyBytes bounds a webhook notification; a larger one gets 413.
	// Alertmanager sends a whole group at once (10,000 alerts are about
	// 2.6 MB) and never retries a 4xx, so keep it above the largest group.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
}

// TLS serves the API over HTTPS when both files are set.
type TLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Pools says where the pool files are: business units, the shared pool
// and the cloud pools.
type Pools struct {
	// Dir holds the pool files (*.yaml, *.yml). Empty means no pools: the
	// control plane scales job counts only. A relative path in the file is
	// relative to the file.
	Dir string `yaml:"dir"`
}

// API configures the REST API.
type API struct {
	// Tokens may call the API. With none, every /v1 route answers 401.
	Tokens []auth.Token `yaml:"tokens"`
	// MaxStreams caps the event streams open at once; the one beyond gets
	// 503 with Retry-After.
	MaxStreams int `yaml:"max_streams"`
}

// Policies says where the scaling policy files are.
type Policies struct {
	// Dir holds the policy files (*.yaml, *.yml). Empty means no policies.
	// They are loaded at start and again on SIGHUP or POST /v1/reload.
	Dir string `yaml:"dir"`
}

// Log configures structured logging.
type Log struct {
	// Level is debug, info, warn or error.
	Level string `yaml:"level"`
	// Format is text or json.
	Format string `yaml:"format"`
}

// Nomad says how to reach the Nomad cluster Spillway scales.
type Nomad struct {
	// Address defaults to $NOMAD_ADDR, then http://127.0.0.1:4646.
	Address   string `yaml:"address"`
	Region    string `yaml:"region"`
	Namespace string `yaml:"namespace"`
	// Token is a Nomad ACL token; it defaults to $NOMAD_TOKEN.
	Token Secret `yaml:"token"`
	// StaleCounts is how long after the cluster model lost Nomad's event
	// stream policies are still evaluated on its last known counts, with
	// scale-in held; 0 fails their evaluation at once.
	StaleCounts time.Duration `yaml:"stale_counts"`
}

// Prometheus says how to reach the Prometheus that holds the traffic metrics.
type Prometheus struct {
	Address string        `yaml:"address"`
	Timeout time.Duration `yaml:"timeout"`
	// BearerToken authenticates to Prometheus, when it asks for it.
	BearerToken Secret `yaml:"bearer_token"`
}

// Default returns the configuration used for every key not set elsewhere.
func Default() Config {
	return Config{
		Listen:     "127.0.0.1:8480",
		Log:        Log{Level: "info", Format: "text"},
		Nomad:      Nomad{Namespace: "default", StaleCounts: time.Minute},
		Prometheus: Prometheus{Address: "http://127.0.0.1:9090", Timeout: 10 * time.Second},
		Journal:    Journal{Driver: "sqlite", Path: "spillway.db"},
		API:        API{MaxStreams: 256},
		Alerts:     Alerts{TTL: 2 * time.Hour, MaxFiring: 20000, MaxBodyBytes: 16 << 20},
		Leader:     Leader{TTL: 10 * time.Second},
		Clouds:     Clouds{Cluster: "spillway", OrphanGrace: 10 * time.Minute, DownGrace: 5 * time.Minute},
		ScaleOut:   ScaleOut{Grace: 5 * time.Minute},
	}
}

// Keys lists every config key, dotted.
func Keys() []string { return strictyaml.Keys(reflect.TypeFor[Config]()) }

// EnvVar returns the environment variable that sets key.
func EnvVar(key string) string {
	return EnvPrefix + "_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// Flag binds a command-line flag to a config key.
type Flag struct {
	Key  string
	Flag *pflag.Flag
}

// Load reads file (optional: "" means defaults and environment only), then
// the environment, then the flags that were set on the command line. Every
// problem is reported at once; file problems carry file:line:column and the
// key. The returned hash identifies the effective configuration.
func Load(file string, flags []Flag) (*Config, string, error) {
	var pos *strictyaml.Positions
	var probe Config
	if file != "" {
		// The strict pass: unknown keys and wrong types, with positions.
		var err error
		pos, err = strictyaml.ReadFile(file, &probe)
		if err != nil {
			return nil, "", keyErrors(strictyaml.AsErrors(file, err))
		}
	}

	v := viper.New()
	def := Default()
	for _, k := range Keys() {
		v.SetDefault(k, lookup(reflect.ValueOf(def), k))
	}
	if file != "" {
		// The file's layer is the strictly decoded, typed values of the keys
		// the file sets. Letting viper re-read the YAML would re-type them
		// (a hex digest of digits only becomes a number).
		if err := v.MergeConfigMap(fileLayer(reflect.ValueOf(probe), pos)); err != nil {
			return nil, "", fmt.Errorf("%s: %w", file, err)
		}
	}
	v.SetEnvPrefix(EnvPrefix)
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AutomaticEnv()
	for _, f := range flags {
		if err := v.BindPFlag(f.Key, f.Flag); err != nil {
			return nil, "", fmt.Errorf("binding flag --%s: %w", f.Flag.Name, err)
		}
	}

	var cfg Config
	err := v.Unmarshal(&cfg, func(dc *mapstructure.DecoderConfig) {
		dc.TagName = "yaml"
		dc.ErrorUnused = true
		dc.DecodeHook = mapstructure.ComposeDecodeHookFunc(mapstructure.StringToTimeDurationHookFunc(), mapstructure.TextUnmarshallerHookFunc())
	})
	if err != nil {
		// The file passed the strict pass, so this comes from the environment or flags.
		return nil, "", fmt.Errorf("environment or flags: %w", err)
	}

	// Relative paths written in the file are relative to the file, as in
	// Prometheus's config; from the environment or flags, to the working directory.
	if file != "" {
		for _, p := range []struct {
			got    *string
			inFile string
		}{
			{&cfg.Policies.Dir, probe.Policies.Dir},
			{&cfg.Journal.Path, probe.Journal.Path},
			{&cfg.Pools.Dir, probe.Pools.Dir},
			{&cfg.TLS.CertFile, probe.TLS.CertFile},
			{&cfg.TLS.KeyFile, probe.TLS.KeyFile},
		} {
			if *p.got != "" && *p.got == p.inFile && !filepath.IsAbs(*p.got) {
				*p.got = filepath.Join(filepath.Dir(file), *p.got)
			}
		}
	}

	if errs := cfg.Validate(pos, file); len(errs) > 0 {
		return nil, "", keyErrors(errs)
	}
	return &cfg, cfg.Hash(), nil
}

// Validate checks the semantics of the configuration. pos locates keys that
// came from file; keys set elsewhere are reported by name and source.
func (c *Config) Validate(pos *strictyaml.Positions, file string) strictyaml.Errors {
	var errs strictyaml.Errors
	bad := func(key, format string, args ...any) {
		if pos != nil && pos.Has(key) {
			errs = append(errs, pos.Errorf(key, format, args...))
			return
		}
		src := EnvVar(key) + " or its flag"
		if os.Getenv(EnvVar(key)) != "" {
			src = EnvVar(key)
		}
		errs = append(errs, &strictyaml.Error{File: src, Path: key, Msg: fmt.Sprintf(format, args...)})
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		bad("listen", "want host:port, got %q", c.Listen)
	}
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, c.Log.Level) {
		bad("log.level", "want one of debug, info, warn, error; got %q", c.Log.Level)
	}
	if !slices.Contains([]string{"text", "json"}, c.Log.Format) {
		bad("log.format", "want text or json, got %q", c.Log.Format)
	}
	if c.Nomad.Address != "" {
		if err := checkURL(c.Nomad.Address); err != nil {
			bad("nomad.address", "%v", err)
		}
	}
	if err := checkURL(c.Prometheus.Address); err != nil {
		bad("prometheus.address", "%v", err)
	}
	if c.Policies.Dir != "" {
		if st, err := os.Stat(c.Policies.Dir); err != nil || !st.IsDir() {
			bad("policies.dir", "%q is not a directory", c.Policies.Dir)
		}
	}
	names := map[string]bool{}
	for i, t := range c.API.Tokens {
		key := fmt.Sprintf("api.tokens[%d]", i)
		if err := t.Validate(); err != nil {
			for _, e := range strings.Split(err.Error(), "\n") {
				field, msg, _ := strings.Cut(e, ": ")
				bad(key+"."+field, "%s", msg)
			}
		}
		if names[t.Name] {
			bad(key+".name", "%q is used by another token", t.Name)
		}
		names[t.Name] = true
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		bad("tls", "set both cert_file and key_file, or neither")
	}
	for key, f := range map[string]string{"tls.cert_file": c.TLS.CertFile, "tls.key_file": c.TLS.KeyFile} {
		if f == "" {
			continue
		}
		if _, err := os.Stat(f); err != nil {
			bad(key, "cannot read %q: %v", f, strictyaml.PathErrorCause(err))
		}
	}
	if c.Pools.Dir != "" {
		if st, err := os.Stat(c.Pools.Dir); err != nil || !st.IsDir() {
			bad("pools.dir", "%q is not a directory", c.Pools.Dir)
		}
	}
	switch c.Journal.Driver {
	case "sqlite":
		if c.Journal.Path == "" {
			bad("journal.path", "required: the journal is where decisions and loans are kept")
		}
	case "postgres":
		if c.Journal.DSN == "" {
			bad("journal.dsn", "required with journal.driver postgres: the PostgreSQL connection string")
		} else if err := checkDSN(c.Journal.DSN.Reveal()); err != nil {
			bad("journal.dsn", "%v", err)
		}
	default:
		bad("journal.driver", "want sqlite or postgres, got %q", c.Journal.Driver)
	}
	if c.Leader.Enabled {
		if c.Journal.Driver != "postgres" {
			bad("leader.enabled", "needs journal.driver postgres: the replicas must share one journal")
		}
		if c.Leader.TTL < 2*time.Second || c.Leader.TTL > 10*time.Minute {
			bad("leader.ttl", "want 2s to 10m, got %s", c.Leader.TTL)
		}
		if c.Leader.RenewInterval < 0 || c.Leader.RenewInterval > c.Leader.TTL/2 {
			bad("leader.renew_interval", "want at most half of leader.ttl (%s), got %s", c.Leader.TTL/2, c.Leader.RenewInterval)
		}
	}
	if c.Nomad.StaleCounts < 0 || c.Nomad.StaleCounts > 10*time.Minute {
		bad("nomad.stale_counts", "want 0 to 10m, got %s", c.Nomad.StaleCounts)
	}
	if c.Alerts.TTL <= 0 {
		bad("alerts.ttl", "must be positive, got %s", c.Alerts.TTL)
	}
	if c.Alerts.MaxFiring < 1 || c.Alerts.MaxFiring > 1000000 {
		bad("alerts.max_firing", "want 1 to 1000000, got %d", c.Alerts.MaxFiring)
	}
	if c.Alerts.MaxBodyBytes < 64<<10 || c.Alerts.MaxBodyBytes > 1<<30 {
		bad("alerts.max_body_bytes", "want 65536 (64 KiB) to 1073741824 (1 GiB), got %d", c.Alerts.MaxBodyBytes)
	}
	if c.API.MaxStreams < 1 || c.API.MaxStreams > 100000 {
		bad("api.max_streams", "want 1 to 100000, got %d", c.API.MaxStreams)
	}
	if c.Prometheus.Timeout <= 0 {
		bad("prometheus.timeout", "must be positive, got %s", c.Prometheus.Timeout)
	}
	c.Clouds.validate(bad)
	if c.ScaleOut.Grace < 30*time.Second || c.ScaleOut.Grace > 24*time.Hour {
		bad("scale_out.grace", "want 30s to 24h, got %s", c.ScaleOut.Grace)
	}
	errs.Sort()
	return errs
}

// clusterName is what clouds.cluster may be: the rule of the Terraform
// modules' cluster_name variable, which names their resources and the
// ownership tag their policies require.
var clusterName = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$`)

// validate checks the clouds keys, reporting each problem through bad.
func (c *Clouds) validate(bad func(key, format string, args ...any)) {
	if !clusterName.MatchString(c.Cluster) {
		bad("clouds.cluster", "want 1-32 lowercase letters, digits and dashes, starting and ending with a letter or digit (the Terraform modules' cluster_name), got %q", c.Cluster)
	}
	if c.DownGrace < 30*time.Second || c.DownGrace > 24*time.Hour {
		bad("clouds.down_grace", "want 30s to 24h, got %s", c.DownGrace)
	}
	if c.OrphanGrace > 24*time.Hour {
		bad("clouds.orphan_grace", "want at most 24h, got %s", c.OrphanGrace)
	}
	if c.OrphanGrace < time.Minute {
		bad("clouds.orphan_grace", "must be at least 1m (an instance is listed a moment before the ledger records it), got %s", c.OrphanGrace)
	}
	if c.AWS.Endpoint != "" {
		if err := checkURL(c.AWS.Endpoint); err != nil {
			bad("clouds.aws.endpoint", "%v", err)
		}
	}
	if c.Alicloud.Endpoint != "" {
		if err := checkURL(c.Alicloud.Endpoint); err != nil {
			bad("clouds.alicloud.endpoint", "%v", err)
		} else if u, _ := url.Parse(c.Alicloud.Endpoint); strings.Trim(u.Path, "/") != "" || u.RawQuery != "" || u.User != nil {
			bad("clouds.alicloud.endpoint", "want scheme://host[:port] with no path, query or user, got %q", c.Alicloud.Endpoint)
		}
	}
	// A half-set key is reported at the half that is set, where it was set.
	pair := func(prefix, id, secret string, idSet, secretSet bool) {
		switch {
		case idSet && !secretSet:
			bad(prefix+"."+id, "needs %s.%s too: set both or neither (neither uses the SDK's credential chain)", prefix, secret)
		case secretSet && !idSet:
			bad(prefix+"."+secret, "needs %s.%s too: set both or neither (neither uses the SDK's credential chain)", prefix, id)
		}
	}
	pair("clouds.aws", "access_key_id", "secret_access_key", c.AWS.AccessKeyID != "", c.AWS.SecretAccessKey != "")
	pair("clouds.alicloud", "access_key_id", "access_key_secret", c.Alicloud.AccessKeyID != "", c.Alicloud.AccessKeySecret != "")
}

// checkDSN checks the shape of a PostgreSQL connection string without
// echoing it (it may hold a password): a postgres:// or postgresql:// URL,
// or key=value pairs. The driver checks the rest when it connects.
func checkDSN(dsn string) error {
	if strings.Contains(dsn, "://") {
		u, err := url.Parse(dsn)
		if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
			return errors.New("want a postgres:// URL or key=value pairs (the value is not shown: it may hold a password)")
		}
		return nil
	}
	if k, _, ok := strings.Cut(strings.TrimSpace(dsn), "="); !ok || k == "" || strings.ContainsAny(k, " \t") {
		return errors.New("want a postgres:// URL or key=value pairs (the value is not shown: it may hold a password)")
	}
	return nil
}

func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("want an http or https URL, got %q", s)
	}
	return nil
}

// Hash returns a short digest of the effective configuration, secrets
// included, so a change of token shows as a change of config.
func (c *Config) Hash() string {
	b, _ := yaml.Marshal(revealed(*c))
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// revealed copies c with the secrets as plain strings, for hashing only.
func revealed(c Config) map[string]any {
	out := map[string]any{}
	for _, k := range Keys() {
		v := lookup(reflect.ValueOf(c), k)
		if s, ok := v.(Secret); ok {
			v = s.Reveal()
		}
		out[k] = v
	}
	return out
}

// Redacted renders the configuration as YAML with secrets hidden.
func (c *Config) Redacted() string {
	b, err := yaml.Marshal(c)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// fileLayer builds viper's config layer from the keys the file sets.
func fileLayer(v reflect.Value, pos *strictyaml.Positions) map[string]any {
	out := map[string]any{}
	for _, key := range Keys() {
		if !pos.Has(key) {
			continue
		}
		parts := strings.Split(key, ".")
		m := out
		for _, p := range parts[:len(parts)-1] {
			next, ok := m[p].(map[string]any)
			if !ok {
				next = map[string]any{}
				m[p] = next
			}
			m = next
		}
		m[parts[len(parts)-1]] = lookup(v, key)
	}
	return out
}

// lookup returns the value at dotted key in a struct value.
func lookup(v reflect.Value, key string) any {
	for _, part := range strings.Split(key, ".") {
		t := v.Type()
		for i := range t.NumField() {
			name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
			if name == part {
				v = v.Field(i)
				break
			}
		}
	}
	return v.Interface()
}

// keyErrors rewrites paths as `key "x.y"`, the way config errors read.
func keyErrors(errs strictyaml.Errors) error {
	for _, e := range errs {
		if e.Path != "" && !strings.HasPrefix(e.Path, "key ") {
			e.Path = fmt.Sprintf("key %q", e.Path)
		}
	}
	if len(errs) == 0 {
		return errors.New("invalid configuration")
	}
	return errs
}
