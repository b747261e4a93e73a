package policies

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"slices"
	"sort"

	"go.yaml.in/yaml/v3"

	"github.com/spillwayhq/spillway/internal/strictyaml"
)

// Set is an immutable, fully validated collection of policies. It is safe
// for concurrent use; none of its policies may be modified.
type Set struct {
	policies []*Policy
	byName   map[string]*Policy
	byTarget map[Target][]*Policy
	// byAlert indexes the alert rules by the alertname they match, so an
	// alert that no rule names costs one map lookup.
	byAlert map[string][]RuleRef
	files   []string
	hash    string
}

// RuleRef is one alert rule of a policy in a Set.
type RuleRef struct {
	Policy *Policy
	Rule   *AlertRule
}

// Policies returns the policies in file and document order. The slice is a
// copy; the policies are shared and read-only.
func (s *Set) Policies() []*Policy {
	if s == nil {
		return nil
	}
	return append([]*Policy(nil), s.policies...)
}

// Get returns the policy with the given name.
func (s *Set) Get(name string) (*Policy, bool) {
	if s == nil {
		return nil, false
	}
	p, ok := s.byName[name]
	return p, ok
}

// Len is the number of policies.
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	return len(s.policies)
}

// ForTarget returns the policies that scale the task group t, in file and
// document order.
func (s *Set) ForTarget(t Target) []*Policy {
	if s == nil {
		return nil
	}
	return append([]*Policy(nil), s.byTarget[t]...)
}

// AlertRules returns the alert rules that name the alert called name, one
// per policy (a policy's first rule for that name), in policy order.
func (s *Set) AlertRules(name string) []RuleRef {
	if s == nil {
		return nil
	}
	return s.byAlert[name]
}

// Matching returns the alert rules that a firing alert with this name and
// labels triggers: at most one per policy, its first matching rule.
func (s *Set) Matching(name string, labels map[string]string) []RuleRef {
	var out []RuleRef
	var last *Policy
	for _, r := range s.AlertRules(name) {
		if r.Policy == last || !r.Rule.Matches(name, labels) {
			continue
		}
		out = append(out, r)
		last = r.Policy
	}
	return out
}

// AlertNames returns the alertnames the alert rules of ps name, sorted and
// without repeats.
func AlertNames(ps []*Policy) []string {
	var out []string
	for _, p := range ps {
		for _, r := range p.Alerts {
			out = append(out, r.Alert)
		}
	}
	sort.Strings(out)
	return slices.Compact(out)
}

// Files are the files the set was loaded from.
func (s *Set) Files() []string {
	if s == nil {
		return nil
	}
	return append([]string(nil), s.files...)
}

// Hash is a SHA-256 over the names and contents of the loaded files, for
// a "config hash" metric and to skip no-op reloads.
func (s *Set) Hash() string {
	if s == nil {
		return ""
	}
	return s.hash
}

// LoadDir loads every *.yaml and *.yml file directly in dir (not in
// subdirectories), in name order. An empty directory gives an empty set.
// See [LoadFiles] for the error contract.
func LoadDir(dir string) (*Set, error) {
	files, err := Files(dir)
	if err != nil {
		return nil, err
	}
	return LoadFiles(files...)
}

// Files lists the policy files LoadDir would load from dir.
func Files(dir string) ([]string, error) { return strictyaml.Files(dir, "policy") }

// LoadFiles reads, decodes and validates the files, each holding one or
// more ScalingPolicy documents. It returns the complete set, or a
// [strictyaml.Errors] holding every problem in every file, each formatted
// "file:line:column: field.path: message" and sorted by file and line. It
// never returns a partial set: on error the caller keeps what it had.
func LoadFiles(paths ...string) (*Set, error) {
	var errs strictyaml.Errors
	h := sha256.New()
	set := &Set{}
	for _, path := range paths {
		data, err := os.ReadFile(path)
		if err != nil {
			errs = append(errs, &strictyaml.Error{File: path, Msg: fmt.Sprintf("reading policy file: %s", strictyaml.PathErrorCause(err))})
			continue
		}
		fmt.Fprintf(h, "%s\x00%d\x00", path, len(data))
		h.Write(data)
		ps, err := Parse(path, data)
		errs = append(errs, strictyaml.AsErrors(path, err)...)
		set.policies = append(set.policies, ps...)
		set.files = append(set.files, path)
	}
	errs = append(errs, validateSet(set.policies)...)
	if err := errs.Err(); err != nil {
		return nil, err
	}
	set.index()
	set.hash = hex.EncodeToString(h.Sum(nil))
	return set, nil
}

// index builds the lookups by name, target and alertname.
func (s *Set) index() {
	s.byName = map[string]*Policy{}
	s.byTarget = map[Target][]*Policy{}
	s.byAlert = map[string][]RuleRef{}
	for _, p := range s.policies {
		s.byName[p.Name] = p
		s.byTarget[p.Target] = append(s.byTarget[p.Target], p)
		for i := range p.Alerts {
			r := &p.Alerts[i]
			s.byAlert[r.Alert] = append(s.byAlert[r.Alert], RuleRef{Policy: p, Rule: r})
		}
	}
}

// Parse decodes and validates the policy documents in data, name being the
// file name used in errors. It checks each policy on its own; checks across
// policies (unique names and targets) happen in [LoadFiles]. On error it
// returns the policies that decoded along with every error.
func Parse(name string, data []byte) ([]*Policy, error) {
	var (
		out  []*Policy
		errs strictyaml.Errors
	)
	err := strictyaml.DecodeAll(name, data, func(root *yaml.Node) (any, error) {
		if root.Kind != yaml.MappingNode {
			return nil, &strictyaml.Error{File: name, Line: root.Line, Column: root.Column, Msg: "expected a ScalingPolicy mapping"}
		}
		return &Policy{}, nil
	}, func(v any, pos *strictyaml.Positions) {
		p := v.(*Policy)
		p.pos = pos
		errs = append(errs, p.validate()...)
		out = append(out, p)
	})
	errs = append(errs, strictyaml.AsErrors(name, err)...)
	if len(out) == 0 && len(errs) == 0 {
		errs = append(errs, &strictyaml.Error{File: name, Msg: "no ScalingPolicy documents in file"})
	}
	return out, errs.Err()
}

// validateSet checks rules across policies: unique names. Several
// policies may target the same task group (for example a diurnal policy and
// a gala schedule kept in separate files); their decisions combine with
// [CombineDecisions], the same safest-wins rule as checks.
func validateSet(ps []*Policy) strictyaml.Errors {
	var errs strictyaml.Errors
	names := map[string]*Policy{}
	sorted := append([]*Policy(nil), ps...)
	sort.SliceStable(sorted, func(i, j int) bool {
		if sorted[i].File() != sorted[j].File() {
			return sorted[i].File() < sorted[j].File()
		}
		return sorted[i].Line() < sorted[j].Line()
	})
	for _, p := range sorted {
		if p.Name == "" {
			continue
		}
		if first, ok := names[p.Name]; ok {
			errs = append(errs, p.pos.Errorf("name", "duplicate policy name %q, first defined at %s:%d", p.Name, first.File(), first.pos.Of("name").Line))
			continue
		}
		names[p.Name] = p
	}
	return errs
}
