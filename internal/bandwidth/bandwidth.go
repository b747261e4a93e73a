// Package bandwidth is a rate of data in bits per second, as the pool
// files write a dedicated line's ("1Gbps", "100 Mbit/s") and the policies
// a service's traffic per allocation ("20Mbps"). Units are decimal: 1Mbps
// is 1,000,000 bits per second.
package bandwidth

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Bandwidth is bits per second.
type Bandwidth float64

// Common rates.
const (
	BitPerSecond  Bandwidth = 1
	KbitPerSecond           = 1e3 * BitPerSecond
	MbitPerSecond           = 1e6 * BitPerSecond
	GbitPerSecond           = 1e9 * BitPerSecond
	TbitPerSecond           = 1e12 * BitPerSecond
)

// units maps a lower-cased unit to its rate.
var units = map[string]Bandwidth{
	"bps": BitPerSecond, "bit/s": BitPerSecond,
	"kbps": KbitPerSecond, "kbit/s": KbitPerSecond,
	"mbps": MbitPerSecond, "mbit/s": MbitPerSecond,
	"gbps": GbitPerSecond, "gbit/s": GbitPerSecond,
	"tbps": TbitPerSecond, "tbit/s": TbitPerSecond,
}

// Parse reads a bandwidth such as "1Gbps", "100 Mbit/s" or "2.5Gbps".
// The unit is required (bps, kbps, Mbps, Gbps, Tbps or the same as
// bit/s, kbit/s …, any case); the number must not be negative.
func Parse(s string) (Bandwidth, error) {
	t := strings.TrimSpace(s)
	i := strings.IndexFunc(t, func(r rune) bool { return (r < '0' || r > '9') && r != '.' && r != '-' && r != '+' })
	if i <= 0 {
		return 0, fmt.Errorf("expected a bandwidth such as 1Gbps or 100Mbps, got %q", s)
	}
	num, unit := t[:i], strings.ToLower(strings.TrimSpace(t[i:]))
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("expected a bandwidth such as 1Gbps or 100Mbps, got %q", s)
	}
	mul, ok := units[unit]
	if !ok {
		return 0, fmt.Errorf("unknown unit %q in %q; use bps, kbps, Mbps, Gbps or Tbps", strings.TrimSpace(t[i:]), s)
	}
	if f < 0 {
		return 0, fmt.Errorf("must not be negative, got %q", s)
	}
	return Bandwidth(f) * mul, nil
}

// BitsPerSecond is b as a number.
func (b Bandwidth) BitsPerSecond() float64 { return float64(b) }

// String writes b in the largest unit that keeps it at least 1, as
// "1Gbps", "100Mbps" or "2.5Gbps".
func (b Bandwidth) String() string {
	for _, u := range []struct {
		name string
		rate Bandwidth
	}{{"Tbps", TbitPerSecond}, {"Gbps", GbitPerSecond}, {"Mbps", MbitPerSecond}, {"kbps", KbitPerSecond}} {
		if math.Abs(float64(b)) >= float64(u.rate) {
			return strconv.FormatFloat(math.Round(float64(b/u.rate)*1000)/1000, 'f', -1, 64) + u.name
		}
	}
	return strconv.FormatFloat(math.Round(float64(b)*1000)/1000, 'f', -1, 64) + "bps"
}

// UnmarshalYAML implements yaml.Unmarshaler (and strictyaml's
// NodeUnmarshaler).
func (b *Bandwidth) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("expected a bandwidth such as 1Gbps or 100Mbps")
	}
	v, err := Parse(n.Value)
	if err != nil {
		return err
	}
	*b = v
	return nil
}

// MarshalYAML writes b as String does.
func (b Bandwidth) MarshalYAML() (any, error) { return b.String(), nil }

// MarshalJSON writes b as a string such as "1Gbps".
func (b Bandwidth) MarshalJSON() ([]byte, error) { return json.Marshal(b.String()) }

// UnmarshalJSON reads a string such as "1Gbps".
func (b *Bandwidth) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return fmt.Errorf("expected a bandwidth such as \"1Gbps\"")
	}
	v, err := Parse(s)
	if err != nil {
		return err
	}
	*b = v
	return nil
}
