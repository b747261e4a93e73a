package policies

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

type matchOp string

const (
	matchEqual    matchOp = "="
	matchNotEqual matchOp = "!="
	matchRegexp   matchOp = "=~"
	matchNotRegex matchOp = "!~"
)

// matcher is one Alertmanager label matcher.
type matcher struct {
	Name  string
	Op    matchOp
	Value string
	re    *regexp.Regexp
}

var labelNameRe = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

// parseMatcher parses name="value", name!="value", name=~"re" or
// name!~"re". The value may be unquoted. Regexes are anchored, as in
// Alertmanager.
func parseMatcher(s string) (matcher, error) {
	s = strings.TrimSpace(s)
	i := strings.IndexAny(s, "=!")
	if i <= 0 {
		return matcher{}, fmt.Errorf(`invalid matcher %q: expected name="value", name!="value", name=~"regex" or name!~"regex"`, s)
	}
	m := matcher{Name: strings.TrimSpace(s[:i])}
	rest := s[i:]
	switch {
	case strings.HasPrefix(rest, "=~"):
		m.Op = matchRegexp
	case strings.HasPrefix(rest, "!~"):
		m.Op = matchNotRegex
	case strings.HasPrefix(rest, "!="):
		m.Op = matchNotEqual
	case strings.HasPrefix(rest, "="):
		m.Op = matchEqual
	default:
		return matcher{}, fmt.Errorf("invalid matcher %q: unknown operator", s)
	}
	if !labelNameRe.MatchString(m.Name) {
		return matcher{}, fmt.Errorf("invalid matcher %q: %q is not a valid label name", s, m.Name)
	}
	val := strings.TrimSpace(rest[len(m.Op):])
	if strings.HasPrefix(val, `"`) {
		uq, err := strconv.Unquote(val)
		if err != nil {
			return matcher{}, fmt.Errorf("invalid matcher %q: bad quoted value", s)
		}
		val = uq
	} else if strings.ContainsAny(val, "\"=~!,{}") {
		return matcher{}, fmt.Errorf(`invalid matcher %q: quote the value, e.g. name="value"`, s)
	}
	m.Value = val
	if m.Op == matchRegexp || m.Op == matchNotRegex {
		re, err := regexp.Compile("^(?:" + val + ")$")
		if err != nil {
			return matcher{}, fmt.Errorf("invalid matcher %q: %w", s, err)
		}
		m.re = re
	}
	return m, nil
}

func (m matcher) matches(labels map[string]string) bool {
	v := labels[m.Name]
	switch m.Op {
	case matchEqual:
		return v == m.Value
	case matchNotEqual:
		return v != m.Value
	case matchRegexp:
		return m.re.MatchString(v)
	case matchNotRegex:
		return !m.re.MatchString(v)
	}
	return false
}

func (m matcher) String() string { return m.Name + string(m.Op) + strconv.Quote(m.Value) }

// Matches reports whether a firing alert with this name and labels triggers
// the rule.
func (r *AlertRule) Matches(name string, labels map[string]string) bool {
	if name != r.Alert {
		return false
	}
	for _, m := range r.matchers {
		if !m.matches(labels) {
			return false
		}
	}
	return true
}
