package policies

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// UnmarshalYAML decodes the mapping form strictly (only action and count)
// and the scalar shorthand ("hold", as in nomad-autoscaler's
// on_check_error = "...").
func (o *OnCheckError) UnmarshalYAML(n *yaml.Node) error {
	*o = OnCheckError{set: true}
	switch n.Kind {
	case yaml.ScalarNode:
		o.Action = OnErrorAction(n.Value)
		if o.Action == OnErrorFixed {
			return errors.New(`"fixed" needs a count: use {action: fixed, count: N}`)
		}
		return nil
	case yaml.MappingNode:
	default:
		return fmt.Errorf(`expected "hold" or a mapping such as {action: fixed, count: 6}`)
	}
	var errs []string
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if seen[k.Value] {
			errs = append(errs, fmt.Sprintf("line %d: %s: duplicate key", k.Line, k.Value))
			continue
		}
		seen[k.Value] = true
		switch k.Value {
		case "action":
			if v.Kind != yaml.ScalarNode {
				errs = append(errs, fmt.Sprintf("line %d: action: expected %q or %q", v.Line, OnErrorHold, OnErrorFixed))
				continue
			}
			o.Action = OnErrorAction(v.Value)
		case "count":
			c, err := strconv.Atoi(v.Value)
			if v.Kind != yaml.ScalarNode || v.Tag != "!!int" || err != nil {
				errs = append(errs, fmt.Sprintf("line %d: count: expected an integer, got %s", v.Line, strconv.Quote(v.Value)))
				continue
			}
			o.Count, o.hasCount = c, true
		default:
			errs = append(errs, fmt.Sprintf("line %d: %s: unknown key; use action and count", k.Line, k.Value))
		}
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}
