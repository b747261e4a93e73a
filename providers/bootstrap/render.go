package bootstrap

import (
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"path"
	"slices"
	"strings"

	"github.com/coreos/butane/config/common"
	fcos1_6 "github.com/coreos/butane/config/fcos/v1_6"
	flatcar1_1 "github.com/coreos/butane/config/flatcar/v1_1"
	"github.com/coreos/vcontext/report"
)

// User-data size limits, on the raw (not base64) user data.
const (
	// EC2 accepts at most 16 KB of user data.
	MaxUserDataAWS = 16 << 10
	// ECS accepts at most 32 KB of user data.
	MaxUserDataAlicloud = 32 << 10
)

// UserDataLimit returns the user-data size limit of a provider.
func UserDataLimit(provider string) (int, error) {
	switch provider {
	case ProviderAWS:
		return MaxUserDataAWS, nil
	case ProviderAlicloud:
		return MaxUserDataAlicloud, nil
	}
	return 0, fmt.Errorf("unknown provider %q: want aws or alicloud", provider)
}

// Ignition spec versions of the rendered configs.
const (
	FlatcarIgnitionVersion = "3.4.0"
	FCOSIgnitionVersion    = "3.5.0"
)

// Paths on the host. The lab reads the same names.
const (
	nomadConfigDir = "/etc/nomad.d"
	spillwayDir    = "/opt/spillway"
	spillwayEtc    = "/etc/spillway"
	sysctlFile     = "/etc/sysctl.d/90-spillway.conf"
	nomadBinary    = "/opt/bin/nomad"
	sysextBinary   = "/usr/bin/nomad"
	nomadDataDir   = "/var/lib/nomad"

	// NomadUnit is the systemd unit that runs the Nomad client agent.
	NomadUnit = "nomad.service"
	// InstanceUnit writes the instance ID into InstanceConfigFile before
	// NomadUnit starts.
	InstanceUnit = "spillway-instance.service"
	// PrePullUnit pulls the pre-pull images, then sets MetaPrePull to done.
	PrePullUnit = "spillway-prepull.service"

	// NomadConfigFile is the main Nomad client config (JSON).
	NomadConfigFile = nomadConfigDir + "/00-spillway.json"
	// NomadTLSConfigFile enables mTLS, when the spec has TLS material.
	NomadTLSConfigFile = nomadConfigDir + "/20-tls.json"
	// NomadACLConfigFile enables ACLs, when the spec has an ACL token.
	NomadACLConfigFile = nomadConfigDir + "/30-acl.json"
	// InstanceConfigFile is written at boot with the node name and
	// MetaInstance, from the platform metadata.
	InstanceConfigFile = nomadConfigDir + "/50-instance.json"
	// NomadEnvFile holds NOMAD_ADDR, NOMAD_TOKEN and the TLS paths for the
	// host's own units (mode 0600).
	NomadEnvFile = spillwayEtc + "/nomad.env"
	// RootEnv is the variable the rendered scripts prefix every absolute
	// path with. It is empty on a real host; the lab sets it to the
	// instance's root directory.
	RootEnv = "SPILLWAY_ROOT"
)

// ClaimInfo is what Render needs to know about the claim a config is for.
// The instance ID is not known until the host boots.
type ClaimInfo struct {
	// Provider is "aws" or "alicloud".
	Provider string
	Pool     string
	// Claim is the claim ID, written to node meta spillway.claim. Empty
	// renders a per-pool config for an EC2 launch template (CreateFleet
	// takes the user data from the template, not per claim): the node then
	// carries no claim meta, and its claim is found through
	// spillway.instance and the instance's spillway:claim tag.
	Claim string
	// Serves, when set, is the business unit the host is rented for,
	// written to node meta spillway.serves so the unit's bursting services
	// can be placed on the host as soon as it registers. A per-pool config
	// (no claim) leaves it out; the controller then sets it on the node.
	Serves string
}

// Rendered is a rendered bootstrap config.
type Rendered struct {
	// UserData is what the cloud gets: the full Ignition config, or a
	// pointer config when the full one does not fit.
	UserData []byte
	// Config is the full Ignition config (JSON).
	Config []byte
	// ConfigURL is set when UserData is a pointer config: the caller must
	// serve Config there before the host boots.
	ConfigURL string
	// IgnitionVersion is the Ignition spec version of the config.
	IgnitionVersion string
}

// Pointer reports whether UserData is a pointer to Config.
func (r *Rendered) Pointer() bool { return r.ConfigURL != "" }

// ErrTooLarge is wrapped by Render's error when the config does not fit
// the provider's user-data limit even compressed, and the spec has no
// config_url to serve it from.
var ErrTooLarge = errors.New("bootstrap config too large for user data")

// Render renders the Ignition config for one claim of a pool: the Nomad
// client config with the claim's meta, TLS material and ACL token when
// configured, the Nomad binary (sysext or mirror download), systemd units,
// the registry mirror, sysctls, the pre-pull step and extra files. Inline
// files are gzip-compressed where that is smaller. When the result exceeds
// the provider's user-data limit, the user data becomes a pointer config
// (if the spec has config_url), or Render fails with ErrTooLarge.
//
// Errors never contain secret values.
func Render(spec *Spec, claim ClaimInfo) (*Rendered, error) {
	limit, err := UserDataLimit(claim.Provider)
	if err != nil {
		return nil, fmt.Errorf("rendering bootstrap config for pool %s: %w", claim.Pool, err)
	}
	if claim.Pool == "" {
		return nil, errors.New("rendering bootstrap config: the pool name is required")
	}
	if errs := spec.Validate(nil, "bootstrap"); len(errs) > 0 {
		msgs := make([]string, len(errs))
		for i, e := range errs {
			msgs[i] = e.Path + ": " + e.Msg
		}
		return nil, fmt.Errorf("rendering bootstrap config for pool %s: invalid spec: %s", claim.Pool, strings.Join(msgs, "; "))
	}
	doc, err := butaneDoc(spec, claim)
	if err != nil {
		return nil, fmt.Errorf("rendering bootstrap config for pool %s: %w", claim.Pool, err)
	}
	// Plain first, so that the user data stays readable in the cloud's
	// console; gzip-compressed inline files when that is too large.
	cfg, version, err := translate(spec.OS, doc, false)
	if err == nil && len(cfg) > limit {
		cfg, version, err = translate(spec.OS, doc, true)
	}
	if err != nil {
		return nil, fmt.Errorf("rendering bootstrap config for pool %s: %w", claim.Pool, err)
	}
	r := &Rendered{UserData: cfg, Config: cfg, IgnitionVersion: version}
	if len(cfg) <= limit {
		return r, nil
	}
	if spec.ConfigURL == "" {
		return nil, fmt.Errorf("rendering bootstrap config for pool %s: the Ignition config is %d bytes after compression, over the %s user-data limit of %d bytes; shrink bootstrap.files or set bootstrap.config_url to serve it from an internal URL: %w",
			claim.Pool, len(cfg), claim.Provider, limit, ErrTooLarge)
	}
	name := claim.Claim
	if name == "" {
		name = "pool"
	}
	u, err := url.JoinPath(spec.ConfigURL, url.PathEscape(claim.Pool), url.PathEscape(name)+".ign")
	if err != nil {
		return nil, fmt.Errorf("rendering bootstrap config for pool %s: config_url: %w", claim.Pool, err)
	}
	sum := sha512.Sum512(cfg)
	pointer := butane{Variant: string(spec.OS), Version: butaneVersion(spec.OS)}
	pointer.Ignition = &bIgnition{Config: &bIgnitionConfig{Replace: &bResource{
		Source:       u,
		Verification: &bVerification{Hash: "sha512-" + hex.EncodeToString(sum[:])},
	}}}
	ud, _, err := translate(spec.OS, pointer, false)
	if err != nil {
		return nil, fmt.Errorf("rendering pointer config for pool %s: %w", claim.Pool, err)
	}
	if len(ud) > limit {
		return nil, fmt.Errorf("rendering bootstrap config for pool %s: even the pointer config is %d bytes, over the %s limit of %d: %w",
			claim.Pool, len(ud), claim.Provider, limit, ErrTooLarge)
	}
	r.UserData, r.ConfigURL = ud, u
	return r, nil
}

func butaneVersion(v Variant) string {
	if v == Flatcar {
		return "1.1.0"
	}
	return "1.6.0"
}

// translate runs Butane on doc and returns compact Ignition JSON. With
// compress, Butane gzips inline file contents where that is smaller.
func translate(v Variant, doc butane, compress bool) ([]byte, string, error) {
	in, err := json.Marshal(doc) // Butane reads YAML, and JSON is YAML
	if err != nil {
		return nil, "", err
	}
	opts := common.TranslateBytesOptions{}
	opts.NoResourceAutoCompression = !compress
	var (
		out     []byte
		version string
		rep     report.Report
	)
	switch v {
	case Flatcar:
		out, rep, err = flatcar1_1.ToIgn3_4Bytes(in, opts)
		version = FlatcarIgnitionVersion
	case FCOS:
		out, rep, err = fcos1_6.ToIgn3_5Bytes(in, opts)
		version = FCOSIgnitionVersion
	default:
		return nil, "", fmt.Errorf("unknown os %q", v)
	}
	if err != nil {
		// Butane's report names fields and lines of the generated
		// document, never file contents.
		return nil, "", fmt.Errorf("translating butane config: %w: %s", err, strings.TrimSpace(rep.String()))
	}
	return out, version, nil
}

// Butane document types: only the fields Spillway renders, with Butane's
// YAML keys.
type butane struct {
	Variant  string     `json:"variant"`
	Version  string     `json:"version"`
	Ignition *bIgnition `json:"ignition,omitempty"`
	Storage  *bStorage  `json:"storage,omitempty"`
	Systemd  *bSystemd  `json:"systemd,omitempty"`
}

type bIgnition struct {
	Config *bIgnitionConfig `json:"config,omitempty"`
}

type bIgnitionConfig struct {
	Replace *bResource `json:"replace,omitempty"`
}

type bStorage struct {
	Directories []bDirectory `json:"directories,omitempty"`
	Files       []bFile      `json:"files,omitempty"`
	Links       []bLink      `json:"links,omitempty"`
}

type bDirectory struct {
	Path string `json:"path"`
	Mode int    `json:"mode"`
}

type bFile struct {
	Path      string    `json:"path"`
	Mode      int       `json:"mode"`
	Overwrite bool      `json:"overwrite"`
	Contents  bResource `json:"contents"`
}

type bResource struct {
	Inline       *string        `json:"inline,omitempty"`
	Source       string         `json:"source,omitempty"`
	Verification *bVerification `json:"verification,omitempty"`
}

type bVerification struct {
	Hash string `json:"hash"`
}

type bLink struct {
	Path      string `json:"path"`
	Target    string `json:"target"`
	Hard      bool   `json:"hard"`
	Overwrite bool   `json:"overwrite"`
}

type bSystemd struct {
	Units []bUnit `json:"units"`
}

type bUnit struct {
	Name     string `json:"name"`
	Enabled  *bool  `json:"enabled,omitempty"`
	Contents string `json:"contents"`
}

func inline(path string, mode int, contents string) bFile {
	return bFile{Path: path, Mode: mode, Overwrite: true, Contents: bResource{Inline: &contents}}
}

// butaneDoc builds the Butane config of spec for claim.
func butaneDoc(spec *Spec, claim ClaimInfo) (butane, error) {
	n := spec.Nomad
	doc := butane{Variant: string(spec.OS), Version: butaneVersion(spec.OS), Storage: &bStorage{}, Systemd: &bSystemd{}}
	st := doc.Storage
	st.Directories = append(st.Directories,
		bDirectory{Path: nomadConfigDir, Mode: 0o755},
		bDirectory{Path: spillwayEtc, Mode: 0o700},
		bDirectory{Path: nomadDataDir, Mode: 0o700})

	nomadCfg, err := nomadConfig(spec, claim)
	if err != nil {
		return butane{}, err
	}
	st.Files = append(st.Files, inline(NomadConfigFile, 0o644, nomadCfg))

	env := []string{"NOMAD_ADDR=http://127.0.0.1:4646"}
	if t := n.TLS; t != nil {
		dir := nomadConfigDir + "/tls"
		st.Directories = append(st.Directories, bDirectory{Path: dir, Mode: 0o700})
		st.Files = append(st.Files,
			inline(dir+"/ca.pem", 0o644, pemText(t.CA)),
			inline(dir+"/client.pem", 0o644, pemText(t.Cert)),
			inline(dir+"/client-key.pem", 0o600, pemText(t.Key.Reveal())))
		tls := map[string]any{"tls": map[string]any{
			"http": true, "rpc": true,
			"ca_file": dir + "/ca.pem", "cert_file": dir + "/client.pem", "key_file": dir + "/client-key.pem",
			"verify_server_hostname": true, "verify_https_client": false,
		}}
		st.Files = append(st.Files, inline(NomadTLSConfigFile, 0o644, jsonText(tls)))
		env = []string{"NOMAD_ADDR=https://127.0.0.1:4646", "NOMAD_CACERT=" + dir + "/ca.pem",
			"NOMAD_CLIENT_CERT=" + dir + "/client.pem", "NOMAD_CLIENT_KEY=" + dir + "/client-key.pem"}
	}
	if tok := n.ACLToken.Reveal(); tok != "" {
		st.Files = append(st.Files, inline(NomadACLConfigFile, 0o644, jsonText(map[string]any{"acl": map[string]any{"enabled": true}})))
		env = append(env, "NOMAD_TOKEN="+tok)
	}
	st.Files = append(st.Files, inline(NomadEnvFile, 0o600, strings.Join(env, "\n")+"\n"))

	// The Nomad binary.
	bin := nomadBinary
	switch n.Install.Method {
	case InstallSysext:
		bin = sysextBinary
		name := path.Base(mustURLPath(n.Install.URL))
		target := "/opt/extensions/nomad/" + name
		f := bFile{Path: target, Mode: 0o644, Overwrite: true, Contents: bResource{Source: n.Install.URL}}
		if n.Install.SHA512 != "" {
			f.Contents.Verification = &bVerification{Hash: "sha512-" + strings.ToLower(n.Install.SHA512)}
		}
		st.Files = append(st.Files, f)
		st.Links = append(st.Links, bLink{Path: "/etc/extensions/nomad.raw", Target: target, Overwrite: true})
	case InstallDownload:
		st.Files = append(st.Files, bFile{Path: nomadBinary, Mode: 0o755, Overwrite: true, Contents: bResource{
			Source:       n.Install.URL,
			Verification: &bVerification{Hash: "sha512-" + strings.ToLower(n.Install.SHA512)},
		}})
	}

	// The instance ID, from the platform metadata.
	metaFile, metaVar, metaUnit := platformMetadata(spec.OS, claim.Provider)
	st.Files = append(st.Files, inline(spillwayDir+"/bin/instance-meta", 0o755, instanceScript(metaFile, metaVar)))

	if len(spec.PrePull) > 0 {
		st.Files = append(st.Files, inline(spillwayDir+"/bin/prepull", 0o755, prePullScript(spec.PrePull)))
	}
	if len(spec.Sysctls) > 0 {
		var b strings.Builder
		b.WriteString("# Rendered by Spillway.\n")
		for _, k := range slices.Sorted(maps.Keys(spec.Sysctls)) {
			fmt.Fprintf(&b, "%s = %s\n", k, spec.Sysctls[k])
		}
		st.Files = append(st.Files, inline(sysctlFile, 0o644, b.String()))
	}
	if m := spec.RegistryMirror; m != nil {
		st.Files = append(st.Files, mirrorFiles(spec.OS, m)...)
	}
	// Burst hosts live for hours: an OS update must not reboot one
	// mid-burst. Replacement hosts boot the catalog's newer image.
	if spec.OS == Flatcar {
		st.Files = append(st.Files, inline("/etc/flatcar/update.conf", 0o644, "REBOOT_STRATEGY=off\n"))
	} else {
		st.Files = append(st.Files, inline("/etc/zincati/config.d/90-spillway.toml", 0o644, "[updates]\nenabled = false\n"))
	}
	for _, f := range spec.Files {
		mode := 0o644
		if f.Mode != "" {
			mode, _ = parseMode(f.Mode) // validated
		}
		st.Files = append(st.Files, inline(f.Path, mode, f.Contents))
	}

	yes := true
	doc.Systemd.Units = append(doc.Systemd.Units,
		bUnit{Name: InstanceUnit, Enabled: &yes, Contents: instanceUnit(metaUnit, metaFile)},
		bUnit{Name: NomadUnit, Enabled: &yes, Contents: nomadUnit(spec, bin)})
	if len(spec.PrePull) > 0 {
		doc.Systemd.Units = append(doc.Systemd.Units, bUnit{Name: PrePullUnit, Enabled: &yes, Contents: prePullUnit(bin)})
	}
	return doc, nil
}

func mustURLPath(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return s
	}
	return u.Path
}

func pemText(s string) string { return strings.TrimSpace(s) + "\n" }

func jsonText(v any) string {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		panic(err) // maps of strings and bools always marshal
	}
	return string(b) + "\n"
}

// nomadConfig renders the main Nomad client config. It is JSON, which
// Nomad reads like HCL, so the lab can rewrite it structurally.
func nomadConfig(spec *Spec, claim ClaimInfo) (string, error) {
	n := spec.Nomad
	meta := map[string]string{}
	for k, v := range n.Meta {
		meta[k] = v
	}
	if claim.Claim != "" {
		meta[MetaClaim] = claim.Claim
	}
	if claim.Serves != "" {
		meta[MetaServes] = claim.Serves
	}
	meta[MetaPool] = claim.Pool
	meta[MetaProvider] = claim.Provider
	if len(spec.PrePull) > 0 {
		meta[MetaPrePull] = PrePullPending
	}
	client := map[string]any{
		"enabled": true,
		"meta":    meta,
	}
	if n.NodePool != "" {
		client["node_pool"] = n.NodePool
	}
	if n.NodeClass != "" {
		client["node_class"] = n.NodeClass
	}
	if len(n.Servers) > 0 {
		client["servers"] = n.Servers
	} else {
		client["server_join"] = map[string]any{"retry_join": n.RetryJoin, "retry_interval": "15s"}
	}
	cfg := map[string]any{
		"datacenter":           n.Datacenter,
		"data_dir":             nomadDataDir,
		"bind_addr":            "0.0.0.0",
		"disable_update_check": true,
		"client":               client,
	}
	if n.Region != "" {
		cfg["region"] = n.Region
	}
	return jsonText(cfg), nil
}

// platformMetadata returns the metadata file the OS's afterburn writes,
// the variable holding the instance ID, and the unit that writes it.
// Flatcar keeps the legacy coreos-metadata names (COREOS_ prefix, EC2 for
// AWS); Fedora CoreOS uses afterburn's.
func platformMetadata(v Variant, provider string) (file, variable, unit string) {
	cloud := map[string]string{ProviderAWS: "AWS", ProviderAlicloud: "ALIYUN"}[provider]
	if v == Flatcar {
		if cloud == "AWS" {
			cloud = "EC2"
		}
		return "/run/metadata/flatcar", "COREOS_" + cloud + "_INSTANCE_ID", "coreos-metadata.service"
	}
	return "/run/metadata/afterburn", "AFTERBURN_" + cloud + "_INSTANCE_ID", "afterburn.service"
}

// PlatformMetadata returns what the OS's metadata agent (afterburn) writes
// on a host of variant v on provider: the file and the instance-ID
// variable. The lab uses it to emulate the metadata.
func PlatformMetadata(v Variant, provider string) (file, instanceIDVar string) {
	file, instanceIDVar, _ = platformMetadata(v, provider)
	return file, instanceIDVar
}

func instanceScript(metaFile, metaVar string) string {
	return `#!/bin/sh
# Rendered by Spillway. Writes this host's cloud instance ID, which only
# the platform metadata knows, into Nomad's config before nomad starts.
set -eu
root="${` + RootEnv + `:-}"
. "$root` + metaFile + `"
id="${` + metaVar + `:-}"
case "$id" in
  "" | *[!A-Za-z0-9-]*)
    echo "spillway: no valid ` + metaVar + ` in ` + metaFile + `" >&2
    exit 1 ;;
esac
umask 022
out="$root` + InstanceConfigFile + `"
printf '{"name": "%s", "client": {"meta": {"` + MetaInstance + `": "%s"}}}\n' "$id" "$id" > "$out.tmp"
mv "$out.tmp" "$out"
`
}

func instanceUnit(metaUnit, metaFile string) string {
	return `[Unit]
Description=Spillway: write the instance ID into Nomad's config
Requires=` + metaUnit + `
After=` + metaUnit + `
Before=` + NomadUnit + `
ConditionPathExists=!` + InstanceConfigFile + `

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=` + spillwayDir + `/bin/instance-meta

[Install]
WantedBy=multi-user.target
`
}

func nomadUnit(spec *Spec, bin string) string {
	after := "network-online.target " + InstanceUnit + " docker.service"
	if spec.Nomad.Install.Method == InstallSysext {
		after += " systemd-sysext.service"
	}
	return `[Unit]
Description=Nomad client agent (Spillway)
Documentation=https://developer.hashicorp.com/nomad/docs
Wants=network-online.target docker.service
Requires=` + InstanceUnit + `
After=` + after + `

[Service]
ExecStart=` + bin + ` agent -config=` + nomadConfigDir + `
ExecReload=/bin/kill -HUP $MAINPID
KillMode=process
KillSignal=SIGINT
Restart=on-failure
RestartSec=2
LimitNOFILE=65536
LimitNPROC=infinity
TasksMax=infinity
OOMScoreAdjust=-1000

[Install]
WantedBy=multi-user.target
`
}

func prePullScript(images []string) string {
	var b strings.Builder
	b.WriteString(`#!/bin/sh
# Rendered by Spillway. Keeps the node ineligible while it pulls the pool's
# images through the registry mirror, then marks it pre-pulled (meta
# ` + MetaPrePull + `=` + PrePullDone + `) and eligible.
set -eu
nomad="${NOMAD_BIN:-nomad}"
docker="${DOCKER:-docker}"
until "$nomad" node eligibility -self -disable; do
  sleep 1
done
for image in`)
	for _, im := range images {
		b.WriteString(" '" + im + "'")
	}
	b.WriteString(`; do
  until "$docker" pull "$image"; do
    echo "spillway: pulling $image failed; retrying" >&2
    sleep 5
  done
done
until "$nomad" node meta apply ` + MetaPrePull + `=` + PrePullDone + `; do
  sleep 2
done
until "$nomad" node eligibility -self -enable; do
  sleep 2
done
`)
	return b.String()
}

func prePullUnit(nomadBin string) string {
	return `[Unit]
Description=Spillway: pre-pull images, then mark the node eligible
Wants=docker.service
After=docker.service ` + NomadUnit + `
Requires=` + NomadUnit + `

[Service]
Type=oneshot
RemainAfterExit=yes
EnvironmentFile=` + NomadEnvFile + `
Environment=NOMAD_BIN=` + nomadBin + `
ExecStart=` + spillwayDir + `/bin/prepull

[Install]
WantedBy=multi-user.target
`
}

// mirrorFiles points the container engines at the registry mirror: the
// Docker daemon (which Nomad's docker driver pulls through) on both OSes,
// and containers-registries.conf for podman on Fedora CoreOS.
func mirrorFiles(v Variant, m *RegistryMirror) []bFile {
	u, _ := url.Parse(m.Endpoint) // validated
	daemon := map[string]any{}
	for _, r := range m.registries() {
		if r == "docker.io" {
			daemon["registry-mirrors"] = []string{strings.TrimSuffix(m.Endpoint, "/")}
		}
	}
	if m.Insecure {
		daemon["insecure-registries"] = []string{u.Host}
	}
	files := []bFile{inline("/etc/docker/daemon.json", 0o644, jsonText(daemon))}
	if v == FCOS {
		var b strings.Builder
		b.WriteString("# Rendered by Spillway: pull through the data centre's registry mirror.\n")
		for _, r := range m.registries() {
			fmt.Fprintf(&b, "\n[[registry]]\nprefix = %q\nlocation = %q\n\n[[registry.mirror]]\nlocation = %q\ninsecure = %t\n",
				r, r, u.Host, m.Insecure)
		}
		files = append(files, inline("/etc/containers/registries.conf.d/50-spillway-mirror.conf", 0o644, b.String()))
	}
	return files
}
