package policies

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// ActionKind is the form of an [Action].
type ActionKind int

// The action forms.
const (
	ActionNone    ActionKind = iota
	ActionDelta              // "+3", "-1"
	ActionPercent            // "+50%", "-10%"
	ActionTo                 // "to 12"
	ActionToMax              // "to max"
	ActionToMin              // "to min"
)

// Action changes a count: "+N", "-N", "+N%", "-N%", "to N", "to max" or
// "to min".
type Action struct {
	Kind ActionKind
	N    int
}

// ParseAction parses the action syntax.
func ParseAction(s string) (Action, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return Action{}, errors.New(`empty action; use "+N", "-N", "+N%", "-N%", "to N", "to max" or "to min"`)
	}
	if rest, ok := strings.CutPrefix(t, "to "); ok {
		rest = strings.TrimSpace(rest)
		switch rest {
		case "max":
			return Action{Kind: ActionToMax}, nil
		case "min":
			return Action{Kind: ActionToMin}, nil
		}
		n, err := strconv.Atoi(rest)
		if err != nil || n < 0 {
			return Action{}, fmt.Errorf(`invalid action %q: "to" takes a non-negative count, "max" or "min"`, s)
		}
		return Action{Kind: ActionTo, N: n}, nil
	}
	if t[0] != '+' && t[0] != '-' {
		return Action{}, fmt.Errorf(`invalid action %q; use "+N", "-N", "+N%%", "-N%%", "to N", "to max" or "to min"`, s)
	}
	sign := 1
	if t[0] == '-' {
		sign = -1
	}
	num, pct := strings.CutSuffix(t[1:], "%")
	n, err := strconv.Atoi(num)
	if err != nil || n <= 0 || num[0] == '+' || num[0] == '-' {
		return Action{}, fmt.Errorf("invalid action %q: expected a positive whole number after the sign", s)
	}
	if pct {
		if sign < 0 && n >= 100 {
			return Action{}, fmt.Errorf("invalid action %q: a decrease must be less than 100%%", s)
		}
		if n > 10000 {
			return Action{}, fmt.Errorf("invalid action %q: increase above 10000%%", s)
		}
		return Action{Kind: ActionPercent, N: sign * n}, nil
	}
	return Action{Kind: ActionDelta, N: sign * n}, nil
}

// UnmarshalYAML decodes the action syntax from a scalar.
func (a *Action) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return errors.New(`expected an action such as "+2", "+50%", "to 10" or "to max"`)
	}
	parsed, err := ParseAction(n.Value)
	if err != nil {
		return err
	}
	*a = parsed
	return nil
}

// MarshalJSON writes the action syntax.
func (a Action) MarshalJSON() ([]byte, error) { return json.Marshal(a.String()) }

func (a Action) String() string {
	switch a.Kind {
	case ActionDelta:
		return fmt.Sprintf("%+d", a.N)
	case ActionPercent:
		return fmt.Sprintf("%+d%%", a.N)
	case ActionTo:
		return fmt.Sprintf("to %d", a.N)
	case ActionToMax:
		return "to max"
	case ActionToMin:
		return "to min"
	}
	return ""
}

// Apply returns the count the action asks for, starting from current.
// Percentages move by at least one instance and round away from current:
// +50% of 3 is 5, -10% of 5 is 4. The result is not clamped to min and max
// except for "to max" and "to min", and is never negative.
func (a Action) Apply(current, minCount, maxCount int) int {
	var out int
	switch a.Kind {
	case ActionDelta:
		out = current + a.N
	case ActionPercent:
		step := int(math.Ceil(math.Abs(float64(current) * float64(a.N) / 100)))
		step = max(step, 1)
		if a.N < 0 {
			step = -step
		}
		out = current + step
	case ActionTo:
		out = a.N
	case ActionToMax:
		out = maxCount
	case ActionToMin:
		out = minCount
	default:
		out = current
	}
	return max(out, 0)
}
