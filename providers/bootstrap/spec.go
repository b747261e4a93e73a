// Package bootstrap owns rendering the host bootstrap config: the Ignition
// config a rented Flatcar Container Linux (AWS) or Fedora CoreOS (Alibaba
// Cloud) host boots with, so that it joins Nomad with nothing installed by
// hand. It holds the per-pool bootstrap settings (Spec, embedded in cloud
// pool definitions), their validation with located errors, the image
// catalog, rendering through Butane with the clouds' user-data size limits,
// and the per-host timeline phases of a boot.
//
// This package never imports controlplane.
package bootstrap

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/spillwayhq/spillway/internal/strictyaml"
)

// Variant is the container-only OS a pool's hosts boot.
type Variant string

// OS variants. Each is rendered with its Butane variant: flatcar 1.1.0
// (Ignition spec 3.4.0) and fcos 1.6.0 (Ignition spec 3.5.0).
const (
	Flatcar Variant = "flatcar"
	FCOS    Variant = "fcos"
)

// Nomad install methods.
const (
	// InstallSysext installs Nomad as a Flatcar system extension (a
	// sysext-bakery image), merged into /usr at boot. Flatcar only.
	InstallSysext = "sysext"
	// InstallDownload downloads the nomad binary from an internal artifact
	// mirror; Ignition checks it against the configured sha512.
	InstallDownload = "download"
)

// Provider names Render accepts, as in providers.Provider.Name.
const (
	ProviderAWS      = "aws"
	ProviderAlicloud = "alicloud"
)

// Node meta keys every rendered host carries. MetaInstance is only known
// at boot: a systemd unit reads it from the platform metadata.
const (
	MetaClaim    = "spillway.claim"
	MetaPool     = "spillway.pool"
	MetaProvider = "spillway.provider"
	MetaInstance = "spillway.instance"
	// MetaServes names the business unit whose services the host runs
	// (pools.MetaServes); it is rendered from ClaimInfo.Serves.
	MetaServes = "spillway.serves"
	// MetaPrePull is "pending" until the images to pre-pull are present,
	// then "done". Only hosts with pre-pull images carry it. The pre-pull
	// unit also keeps the node ineligible meanwhile, but the node
	// registers eligible for the seconds before the unit reaches its
	// agent: the controller treats a pending host as not ready, and jobs
	// that must never land early constrain on this meta.
	MetaPrePull = "spillway.prepull"
)

// Values of MetaPrePull.
const (
	PrePullPending = "pending"
	PrePullDone    = "done"
)

// Secret is a string that never prints: fmt (every verb, nested at any
// depth, even under a bad verb), JSON, YAML, text and slog all show
// "<secret>" or a pointer instead of the value. Reveal returns it for
// rendering. It decodes from a YAML string.
type Secret struct{ v *string }

const redacted = "<secret>"

// NewSecret wraps s.
func NewSecret(s string) Secret { return Secret{&s} }

// Reveal returns the secret's value.
func (s Secret) Reveal() string {
	if s.v == nil {
		return ""
	}
	return *s.v
}

// IsZero reports whether the secret is empty.
func (s Secret) IsZero() bool { return s.Reveal() == "" }

func (s Secret) String() string {
	if s.IsZero() {
		return ""
	}
	return redacted
}

// GoString keeps %#v from printing the value.
func (s Secret) GoString() string { return `bootstrap.Secret("` + s.String() + `")` }

// Format prints the redacted form for every verb.
func (s Secret) Format(f fmt.State, _ rune) { io.WriteString(f, s.String()) }

// LogValue implements slog.LogValuer.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalJSON implements json.Marshaler.
func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// MarshalYAML implements yaml.Marshaler.
func (s Secret) MarshalYAML() (any, error) { return s.String(), nil }

// MarshalText implements encoding.TextMarshaler, for encoders that use it.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalYAML decodes a YAML string (strictyaml and yaml.v3 both call it).
func (s *Secret) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode || (n.Tag != "!!str" && n.Tag != "!!int" && n.Tag != "!!float") {
		return errors.New("expected a string")
	}
	v := n.Value
	s.v = &v
	return nil
}

// Spec is a pool's host bootstrap settings. Pools embed it as their
// `bootstrap:` block; see testdata/*.yaml for complete examples.
type Spec struct {
	// OS is the container-only OS variant: flatcar or fcos.
	OS Variant `yaml:"os" json:"os,omitempty"`
	// Images is the pool's image catalog: one image per region.
	Images []Image `yaml:"images" json:"images,omitempty"`
	// Nomad is how the host joins Nomad.
	Nomad Nomad `yaml:"nomad" json:"nomad,omitempty"`
	// RegistryMirror is the data centre's container registry, reached over
	// the dedicated line, that image pulls go through.
	RegistryMirror *RegistryMirror `yaml:"registry_mirror" json:"registry_mirror,omitempty"`
	// Sysctls are kernel parameters written to /etc/sysctl.d.
	Sysctls map[string]string `yaml:"sysctls" json:"sysctls,omitempty"`
	// PrePull lists images pulled before the node counts as ready; until
	// then the node carries meta spillway.prepull=pending.
	PrePull []string `yaml:"pre_pull" json:"pre_pull,omitempty"`
	// Files are extra files written to the host.
	Files []File `yaml:"files" json:"files,omitempty"`
	// ConfigURL, when set, is an internal base URL serving full Ignition
	// configs. When a rendered config does not fit the cloud's user-data
	// limit even compressed, the user data becomes a small pointer config
	// that replaces itself with <config_url>/<pool>/<claim>.ign (pool.ign
	// for a per-pool config), checked by its sha512. The caller publishes
	// Rendered.Config there.
	ConfigURL string `yaml:"config_url" json:"config_url,omitempty"`
}

// Image is one entry of the image catalog.
type Image struct {
	// Region is the cloud region the image lives in.
	Region string `yaml:"region" json:"region,omitempty"`
	// ID is the AMI (ami-…) on AWS or the ECS image (m-…) on Alibaba Cloud.
	ID string `yaml:"id" json:"id,omitempty"`
	// Variant is the image's OS; it must equal the spec's os.
	Variant Variant `yaml:"variant" json:"variant,omitempty"`
	// Version is the OS release, e.g. 4230.2.3 (Flatcar) or 42.20250705.3.0 (FCOS).
	Version string `yaml:"version" json:"version,omitempty"`
}

// Nomad configures the Nomad client agent.
type Nomad struct {
	// Servers are server RPC addresses (host:port). Exactly one of servers
	// and retry_join is required.
	Servers []string `yaml:"servers" json:"servers,omitempty"`
	// RetryJoin are go-discover or address strings for server_join.
	RetryJoin []string `yaml:"retry_join" json:"retry_join,omitempty"`
	// Region is the Nomad region; empty means Nomad's default.
	Region     string `yaml:"region" json:"region,omitempty"`
	Datacenter string `yaml:"datacenter" json:"datacenter,omitempty"`
	NodePool   string `yaml:"node_pool" json:"node_pool,omitempty"`
	NodeClass  string `yaml:"node_class" json:"node_class,omitempty"`
	// Meta is extra node meta. Keys starting with "spillway." are reserved.
	Meta    map[string]string `yaml:"meta" json:"meta,omitempty"`
	Install Install           `yaml:"install" json:"install,omitempty"`
	// TLS is the client's mTLS material; nil means no TLS.
	TLS *TLS `yaml:"tls" json:"tls,omitempty"`
	// ACLToken, when set, enables ACLs on the client and is written to
	// /etc/spillway/nomad.env (mode 0600) for the host's own units.
	ACLToken Secret `yaml:"acl_token" json:"acl_token,omitempty"`
}

// Install says how the nomad binary gets onto the host.
type Install struct {
	// Method is sysext (Flatcar) or download.
	Method string `yaml:"method" json:"method,omitempty"`
	// Version is the Nomad version, e.g. 1.6.3.
	Version string `yaml:"version" json:"version,omitempty"`
	// URL is the sysext image or the nomad binary on the internal artifact
	// mirror.
	URL string `yaml:"url" json:"url,omitempty"`
	// SHA512 is the hex sha512 of what URL serves. Required for download.
	SHA512 string `yaml:"sha512" json:"sha512,omitempty"`
}

// TLS is Nomad mTLS material, in PEM.
type TLS struct {
	CA   string `yaml:"ca" json:"ca,omitempty"`
	Cert string `yaml:"cert" json:"cert,omitempty"`
	Key  Secret `yaml:"key" json:"key,omitempty"`
}

// RegistryMirror is a pull-through container registry mirror.
type RegistryMirror struct {
	// Endpoint is the mirror's URL, e.g. https://registry.dc1.example.com:5000.
	Endpoint string `yaml:"endpoint" json:"endpoint,omitempty"`
	// Registries are the upstream registries it mirrors. Default docker.io.
	Registries []string `yaml:"registries" json:"registries,omitempty"`
	// Insecure allows a plain-http endpoint.
	Insecure bool `yaml:"insecure" json:"insecure,omitempty"`
}

// File is an extra file.
type File struct {
	Path string `yaml:"path" json:"path,omitempty"`
	// Mode is octal, e.g. "0644" (the default).
	Mode     string `yaml:"mode" json:"mode,omitempty"`
	Contents string `yaml:"contents" json:"contents,omitempty"`
}

var (
	regionRe   = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-?[0-9]*$`)
	amiRe      = regexp.MustCompile(`^ami-[0-9a-f]{8}([0-9a-f]{9})?$`)
	ecsImageRe = regexp.MustCompile(`^m-[0-9a-z]{8,32}$`)
	versionRe  = regexp.MustCompile(`^[0-9]+(\.[0-9]+)+$`)
	nameRe     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)
	sysctlRe   = regexp.MustCompile(`^[a-z0-9_]+([./][a-z0-9_-]+)+$`)
	imageRefRe = regexp.MustCompile(`^[a-z0-9]+([._/:@-][A-Za-z0-9_.-]+)*$`)
)

// CloudOfImage returns the provider an image ID belongs to, from its
// shape: "aws" for ami-…, "alicloud" for m-…, "" otherwise.
func CloudOfImage(id string) string {
	switch {
	case amiRe.MatchString(id):
		return ProviderAWS
	case ecsImageRe.MatchString(id):
		return ProviderAlicloud
	}
	return ""
}

// Image returns the catalog entry for region.
func (s *Spec) Image(region string) (Image, error) {
	for _, im := range s.Images {
		if im.Region == region {
			return im, nil
		}
	}
	return Image{}, fmt.Errorf("no %s image for region %s in the pool's image catalog", s.OS, region)
}

// Validate reports every problem in s, each located through pos at its
// field. path is where the spec sits in its document ("" at the root,
// "bootstrap" when a pool embeds it), so paths read like
// "bootstrap.images[0].variant". pos may be nil. Secret values never appear
// in the errors.
func (s *Spec) Validate(pos *strictyaml.Positions, path string) strictyaml.Errors {
	v := validator{pos: pos, base: path}
	switch s.OS {
	case Flatcar, FCOS:
	case "":
		v.errf("os", "is required: flatcar or fcos")
	default:
		v.errf("os", "must be flatcar or fcos, not %q", s.OS)
	}
	s.validateImages(&v)
	s.validateNomad(&v)
	if m := s.RegistryMirror; m != nil {
		u, err := url.Parse(m.Endpoint)
		switch {
		case m.Endpoint == "":
			v.errf("registry_mirror.endpoint", "is required")
		case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
			v.errf("registry_mirror.endpoint", "must be an http(s) URL with a host, not %q", m.Endpoint)
		case u.Scheme == "http" && !m.Insecure:
			v.errf("registry_mirror.endpoint", "is plain http; set registry_mirror.insecure: true to allow it")
		case u.Path != "" && u.Path != "/":
			v.errf("registry_mirror.endpoint", "must not have a path (%q)", u.Path)
		}
		for i, r := range m.Registries {
			if r == "" || strings.ContainsAny(r, "/: ") && !strings.Contains(r, ".") {
				v.errf(fmt.Sprintf("registry_mirror.registries[%d]", i), "must be a registry host such as docker.io, not %q", r)
			}
		}
	}
	for _, k := range slices.Sorted(maps.Keys(s.Sysctls)) {
		if !sysctlRe.MatchString(k) {
			v.errf("sysctls."+k, "is not a sysctl name such as net.ipv4.ip_forward")
		}
		if strings.ContainsAny(s.Sysctls[k], "\n\r") {
			v.errf("sysctls."+k, "value must be on one line")
		}
	}
	for i, im := range s.PrePull {
		if !imageRefRe.MatchString(im) {
			v.errf(fmt.Sprintf("pre_pull[%d]", i), "is not an image reference such as docker.io/library/redis:7, not %q", im)
		}
	}
	seen := map[string]int{}
	for i, f := range s.Files {
		p := fmt.Sprintf("files[%d]", i)
		switch {
		case !strings.HasPrefix(f.Path, "/") || strings.Contains(f.Path, "/../") || strings.HasSuffix(f.Path, "/"):
			v.errf(p+".path", "must be an absolute file path, not %q", f.Path)
		case reservedPath(f.Path):
			v.errf(p+".path", "%s is written by Spillway itself", f.Path)
		}
		if j, dup := seen[f.Path]; dup {
			v.errf(p+".path", "duplicates files[%d]", j)
		}
		seen[f.Path] = i
		if f.Mode != "" {
			if _, err := parseMode(f.Mode); err != nil {
				v.errf(p+".mode", "%v", err)
			}
		}
	}
	if s.ConfigURL != "" {
		if u, err := url.Parse(s.ConfigURL); err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
			v.errf("config_url", "must be an http(s) URL with a host, not %q", s.ConfigURL)
		}
	}
	return v.errs
}

func (s *Spec) validateImages(v *validator) {
	if len(s.Images) == 0 {
		v.errf("images", "at least one image is required")
	}
	regions := map[string]int{}
	for i, im := range s.Images {
		p := fmt.Sprintf("images[%d]", i)
		if !regionRe.MatchString(im.Region) {
			v.errf(p+".region", "must be a region such as us-east-1 or cn-hangzhou, not %q", im.Region)
		} else if j, dup := regions[im.Region]; dup {
			v.errf(p+".region", "region %s already has images[%d]", im.Region, j)
		}
		regions[im.Region] = i
		switch {
		case im.ID == "":
			v.errf(p+".id", "is required")
		case CloudOfImage(im.ID) == "":
			v.errf(p+".id", "must be an AMI (ami-…) or an ECS image (m-…), not %q", im.ID)
		}
		switch {
		case im.Variant == "":
			v.errf(p+".variant", "is required")
		case im.Variant != Flatcar && im.Variant != FCOS:
			v.errf(p+".variant", "must be flatcar or fcos, not %q", im.Variant)
		case s.OS != "" && im.Variant != s.OS:
			v.errf(p+".variant", "is %s but the pool boots os %s", im.Variant, s.OS)
		}
		if !versionRe.MatchString(im.Version) {
			v.errf(p+".version", "must be an OS release such as 4230.2.3, not %q", im.Version)
		}
	}
	// All images of a pool live in one cloud.
	var cloud string
	for i, im := range s.Images {
		c := CloudOfImage(im.ID)
		if c == "" {
			continue
		}
		if cloud == "" {
			cloud = c
		} else if c != cloud {
			v.errf(fmt.Sprintf("images[%d].id", i), "is an image of %s but images[0] is one of %s; a pool lives in one cloud", c, cloud)
		}
	}
}

func (s *Spec) validateNomad(v *validator) {
	n := s.Nomad
	switch {
	case len(n.Servers) == 0 && len(n.RetryJoin) == 0:
		v.errf("nomad", "servers or retry_join is required")
	case len(n.Servers) > 0 && len(n.RetryJoin) > 0:
		v.errf("nomad.retry_join", "set servers or retry_join, not both")
	}
	for i, a := range n.Servers {
		host, port, ok := strings.Cut(a, ":")
		if _, err := strconv.Atoi(port); host == "" || !ok || err != nil || strings.ContainsAny(host, " /") {
			v.errf(fmt.Sprintf("nomad.servers[%d]", i), "must be host:port, not %q", a)
		}
	}
	for i, a := range n.RetryJoin {
		if strings.TrimSpace(a) == "" || strings.ContainsAny(a, "\n\"") {
			v.errf(fmt.Sprintf("nomad.retry_join[%d]", i), "must be a non-empty address or go-discover string")
		}
	}
	if n.Datacenter == "" {
		v.errf("nomad.datacenter", "is required")
	} else if !nameRe.MatchString(n.Datacenter) {
		v.errf("nomad.datacenter", "%q is not a valid datacenter name", n.Datacenter)
	}
	if n.Region != "" && !nameRe.MatchString(n.Region) {
		v.errf("nomad.region", "%q is not a valid region name", n.Region)
	}
	if n.NodePool != "" && !nameRe.MatchString(n.NodePool) {
		v.errf("nomad.node_pool", "%q is not a valid node pool name", n.NodePool)
	}
	if n.NodeClass != "" && !nameRe.MatchString(n.NodeClass) {
		v.errf("nomad.node_class", "%q is not a valid node class", n.NodeClass)
	}
	for _, k := range slices.Sorted(maps.Keys(n.Meta)) {
		if strings.HasPrefix(k, "spillway.") {
			v.errf("nomad.meta."+k, "keys starting with spillway. are set by Spillway")
		} else if !nameRe.MatchString(k) {
			v.errf("nomad.meta."+k, "is not a valid meta key")
		}
	}
	in := n.Install
	switch in.Method {
	case InstallSysext:
		if s.OS == FCOS {
			v.errf("nomad.install.method", "sysext installs a Flatcar system extension; os fcos needs method download")
		}
	case InstallDownload:
		if in.SHA512 == "" {
			v.errf("nomad.install.sha512", "is required with method download")
		}
	case "":
		v.errf("nomad.install.method", "is required: sysext (flatcar) or download")
	default:
		v.errf("nomad.install.method", "must be sysext or download, not %q", in.Method)
	}
	if !versionRe.MatchString(in.Version) {
		v.errf("nomad.install.version", "must be a Nomad version such as 1.6.3, not %q", in.Version)
	}
	if u, err := url.Parse(in.URL); in.URL == "" {
		v.errf("nomad.install.url", "is required")
	} else if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		v.errf("nomad.install.url", "must be an http(s) URL with a host, not %q", in.URL)
	} else if in.Method == InstallSysext && !strings.HasSuffix(u.Path, ".raw") {
		v.errf("nomad.install.url", "a sysext image ends in .raw")
	} else if in.Version != "" && !strings.Contains(in.URL, in.Version) {
		v.errf("nomad.install.url", "does not mention version %s; is it the right artifact?", in.Version)
	}
	if in.SHA512 != "" {
		if b, err := hex.DecodeString(in.SHA512); err != nil || len(b) != 64 {
			v.errf("nomad.install.sha512", "must be 128 hex digits")
		}
	}
	if t := n.TLS; t != nil {
		if !isPEM(t.CA, "CERTIFICATE") {
			v.errf("nomad.tls.ca", "must be a PEM certificate")
		}
		if !isPEM(t.Cert, "CERTIFICATE") {
			v.errf("nomad.tls.cert", "must be a PEM certificate")
		}
		if !isPEM(t.Key.Reveal(), "PRIVATE KEY") {
			v.errf("nomad.tls.key", "must be a PEM private key") // never echo the value
		}
	}
	if tok := n.ACLToken.Reveal(); tok != "" && (len(tok) < 8 || strings.ContainsAny(tok, " \n\"'\\$`")) {
		v.errf("nomad.acl_token", "is not a valid Nomad token")
	}
}

func isPEM(s, kind string) bool {
	s = strings.TrimSpace(s)
	return strings.HasPrefix(s, "-----BEGIN ") && strings.Contains(s[:min(len(s), 64)], kind) && strings.HasSuffix(s, "-----")
}

func parseMode(s string) (int, error) {
	m, err := strconv.ParseUint(strings.TrimPrefix(s, "0o"), 8, 32)
	if err != nil || m > 0o7777 {
		return 0, fmt.Errorf("must be an octal mode such as 0644, not %q", s)
	}
	return int(m), nil
}

// reservedPath reports whether Spillway renders path itself.
func reservedPath(p string) bool {
	return strings.HasPrefix(p, nomadConfigDir+"/") || strings.HasPrefix(p, spillwayDir+"/") ||
		strings.HasPrefix(p, "/etc/systemd/system/nomad.service") || p == nomadBinary || p == sysctlFile
}

type validator struct {
	pos  *strictyaml.Positions
	base string
	errs strictyaml.Errors
}

func (v *validator) errf(field, format string, args ...any) {
	path := field
	if v.base != "" {
		path = v.base + "." + field
	}
	v.errs = append(v.errs, v.pos.Errorf(path, format, args...))
}

// Load decodes a standalone spec document strictly and validates it.
func Load(name string, data []byte) (*Spec, error) {
	var s Spec
	pos, err := strictyaml.Decode(name, data, &s)
	errs := strictyaml.AsErrors(name, err)
	for _, e := range s.Validate(pos, "") {
		if !pos.Failed(e.Path) {
			errs = append(errs, e)
		}
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	return &s, nil
}

// registries returns the mirrored registries, defaulting to docker.io.
func (m *RegistryMirror) registries() []string {
	if len(m.Registries) == 0 {
		return []string{"docker.io"}
	}
	return slices.Clone(m.Registries)
}
