package terraform_test

// This file is a small, read-only model of Terraform's evaluation, enough
// for the contract tests: it parses a module's *.tf files with hcl/v2,
// converts input variables to their type constraints (optional attributes
// and defaults included), evaluates locals in dependency order, expands
// for_each and count on a resource, evaluates a module's outputs, and
// renders templates the way templatefile does. References to resources and
// data sources evaluate to fixture values where the test gives them and to
// unknown values otherwise, as in a plan. Functions the tests do not
// implement evaluate to unknown too, except in templates, which may only use
// the functions in templateFuncs.

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/ext/tryfunc"
	"github.com/hashicorp/hcl/v2/ext/typeexpr"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"
)

// module is a parsed Terraform module directory.
type module struct {
	dir       string
	variables map[string]*hclsyntax.Block
	locals    map[string]*hclsyntax.Attribute
	outputs   map[string]*hclsyntax.Block
	resources map[string]*hclsyntax.Block // "type.name"
	data      map[string]*hclsyntax.Block // "type.name"
	modules   map[string]*hclsyntax.Block
	bodies    []*hclsyntax.Body
}

// loadModule parses every *.tf file in dir.
func loadModule(t *testing.T, dir string) *module {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.tf"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no *.tf files in %s (%v)", dir, err)
	}
	m := &module{
		dir:       dir,
		variables: map[string]*hclsyntax.Block{},
		locals:    map[string]*hclsyntax.Attribute{},
		outputs:   map[string]*hclsyntax.Block{},
		resources: map[string]*hclsyntax.Block{},
		data:      map[string]*hclsyntax.Block{},
		modules:   map[string]*hclsyntax.Block{},
	}
	parser := hclparse.NewParser()
	for _, name := range files {
		f, diags := parser.ParseHCLFile(name)
		if diags.HasErrors() {
			t.Fatalf("parsing %s: %s", name, diags.Error())
		}
		body := f.Body.(*hclsyntax.Body)
		m.bodies = append(m.bodies, body)
		for _, b := range body.Blocks {
			switch b.Type {
			case "variable":
				m.variables[b.Labels[0]] = b
			case "output":
				m.outputs[b.Labels[0]] = b
			case "module":
				m.modules[b.Labels[0]] = b
			case "resource":
				m.resources[b.Labels[0]+"."+b.Labels[1]] = b
			case "data":
				m.data[b.Labels[0]+"."+b.Labels[1]] = b
			case "locals":
				for name, a := range b.Body.Attributes {
					if _, dup := m.locals[name]; dup {
						t.Fatalf("%s: local.%s is defined twice", dir, name)
					}
					m.locals[name] = a
				}
			}
		}
	}
	return m
}

// loadTFVars reads a .tfvars file as literal values.
func loadTFVars(t *testing.T, path string) map[string]cty.Value {
	t.Helper()
	f, diags := hclparse.NewParser().ParseHCLFile(path)
	if diags.HasErrors() {
		t.Fatalf("parsing %s: %s", path, diags.Error())
	}
	attrs, diags := f.Body.JustAttributes()
	if diags.HasErrors() {
		t.Fatalf("reading %s: %s", path, diags.Error())
	}
	out := map[string]cty.Value{}
	for name, a := range attrs {
		v, diags := a.Expr.Value(nil)
		if diags.HasErrors() {
			t.Fatalf("%s: %s: %s", path, name, diags.Error())
		}
		out[name] = v
	}
	return out
}

// attr returns a top-level attribute of a block, or nil.
func attr(b *hclsyntax.Block, name string) *hclsyntax.Attribute {
	if b == nil {
		return nil
	}
	return b.Body.Attributes[name]
}

func exprText(e hclsyntax.Expression) string {
	r := e.Range()
	src, err := os.ReadFile(r.Filename)
	if err != nil {
		return r.String()
	}
	return string(r.SliceBytes(src))
}

// fixtures are known values for references the test does not want unknown:
// resources by type then name ("aws_security_group" -> "hosts" -> object),
// data sources under "data" the same way.
type fixtures map[string]map[string]cty.Value

// evaluator evaluates a module's expressions with given input variables.
type evaluator struct {
	t      *testing.T
	m      *module
	ctx    *hcl.EvalContext
	locals map[string]cty.Value
}

// newEvaluator converts inputs to the module's variable types (applying
// defaults), evaluates every local it can, and stubs every other reference
// with fixtures or unknowns. A variable without a default or an input fails
// the test.
func newEvaluator(t *testing.T, m *module, inputs map[string]cty.Value, fx fixtures) *evaluator {
	t.Helper()
	e := &evaluator{t: t, m: m, locals: map[string]cty.Value{}}
	vars := map[string]cty.Value{}
	for name, b := range m.variables {
		vars[name] = e.variable(name, b, inputs)
	}
	for name := range inputs {
		if _, ok := m.variables[name]; !ok {
			t.Fatalf("%s: input %q is not a variable of the module", m.dir, name)
		}
	}
	abs, _ := filepath.Abs(m.dir)
	e.ctx = &hcl.EvalContext{
		Variables: map[string]cty.Value{
			"var":  cty.ObjectVal(vars),
			"path": cty.ObjectVal(map[string]cty.Value{"module": cty.StringVal(abs), "root": cty.StringVal(abs), "cwd": cty.StringVal(abs)}),
		},
		Functions: moduleFuncs(m),
	}
	e.stubReferences(fx)
	e.evalLocals()
	return e
}

func (e *evaluator) variable(name string, b *hclsyntax.Block, inputs map[string]cty.Value) cty.Value {
	t := e.t
	ty, defaults := cty.DynamicPseudoType, (*typeexpr.Defaults)(nil)
	if a := attr(b, "type"); a != nil {
		var diags hcl.Diagnostics
		ty, defaults, diags = typeexpr.TypeConstraintWithDefaults(a.Expr)
		if diags.HasErrors() {
			t.Fatalf("%s: variable %s: type: %s", e.m.dir, name, diags.Error())
		}
	}
	v, given := inputs[name]
	if !given {
		a := attr(b, "default")
		if a == nil {
			t.Fatalf("%s: variable %s has no default and the test gives no value", e.m.dir, name)
		}
		var diags hcl.Diagnostics
		if v, diags = a.Expr.Value(nil); diags.HasErrors() {
			t.Fatalf("%s: variable %s: default: %s", e.m.dir, name, diags.Error())
		}
	}
	if v.IsNull() {
		return cty.NullVal(ty)
	}
	if defaults != nil {
		v = defaults.Apply(v)
	}
	cv, err := convert.Convert(v, ty)
	if err != nil {
		t.Fatalf("%s: variable %s: %v", e.m.dir, name, err)
	}
	return cv
}

// walk calls fn for every expression of the module.
func (m *module) walk(fn func(hclsyntax.Node)) {
	for _, body := range m.bodies {
		_ = hclsyntax.VisitAll(body, func(n hclsyntax.Node) hcl.Diagnostics {
			fn(n)
			return nil
		})
	}
}

// stubReferences puts every referenced resource and data source into the
// context, from fx or as unknown.
func (e *evaluator) stubReferences(fx fixtures) {
	skip := map[string]bool{"var": true, "local": true, "path": true, "each": true, "count": true, "self": true, "terraform": true}
	// Dynamic blocks introduce iterator names (e.g. tunnel_options_specification).
	e.m.walk(func(n hclsyntax.Node) {
		if b, ok := n.(*hclsyntax.Block); ok && b.Type == "dynamic" {
			skip[b.Labels[0]] = true
		}
	})
	roots := map[string]map[string]bool{}
	dataRefs := map[string]map[string]bool{}
	e.m.walk(func(n hclsyntax.Node) {
		sv, ok := n.(*hclsyntax.ScopeTraversalExpr)
		if !ok {
			return
		}
		tr := sv.Traversal
		root := tr.RootName()
		if skip[root] || len(tr) < 2 {
			return
		}
		step, ok := tr[1].(hcl.TraverseAttr)
		if !ok {
			return
		}
		if root == "data" {
			if len(tr) < 3 {
				return
			}
			name, ok := tr[2].(hcl.TraverseAttr)
			if !ok {
				return
			}
			if dataRefs[step.Name] == nil {
				dataRefs[step.Name] = map[string]bool{}
			}
			dataRefs[step.Name][name.Name] = true
			return
		}
		if roots[root] == nil {
			roots[root] = map[string]bool{}
		}
		roots[root][step.Name] = true
	})
	object := func(names map[string]bool, known map[string]cty.Value) cty.Value {
		attrs := map[string]cty.Value{}
		for n := range names {
			attrs[n] = cty.DynamicVal
		}
		for n, v := range known {
			attrs[n] = v
		}
		return cty.ObjectVal(attrs)
	}
	for root, names := range roots {
		e.ctx.Variables[root] = object(names, fx[root])
	}
	data := map[string]cty.Value{}
	for typ, names := range dataRefs {
		data[typ] = object(names, fx["data."+typ])
	}
	if len(data) > 0 {
		e.ctx.Variables["data"] = cty.ObjectVal(data)
	}
}

// evalLocals evaluates locals in dependency order until none is left that
// can be evaluated.
func (e *evaluator) evalLocals() {
	pending := map[string]*hclsyntax.Attribute{}
	for n, a := range e.m.locals {
		pending[n] = a
	}
	for len(pending) > 0 {
		progress := false
		names := make([]string, 0, len(pending))
		for n := range pending {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, name := range names {
			a := pending[name]
			ready := true
			for _, tr := range a.Expr.Variables() {
				if tr.RootName() != "local" {
					continue
				}
				if step, ok := tr[1].(hcl.TraverseAttr); ok {
					if _, done := e.locals[step.Name]; !done {
						ready = false
					}
				}
			}
			if !ready {
				continue
			}
			v, diags := a.Expr.Value(e.ctx)
			if diags.HasErrors() {
				e.t.Fatalf("%s: local.%s: %s", e.m.dir, name, diags.Error())
			}
			e.locals[name] = v
			e.ctx.Variables["local"] = cty.ObjectVal(e.locals)
			delete(pending, name)
			progress = true
		}
		if !progress {
			e.t.Fatalf("%s: locals depend on each other in a cycle or on undefined locals: %v", e.m.dir, names)
		}
	}
}

// local returns a local's value.
func (e *evaluator) local(name string) cty.Value {
	v, ok := e.locals[name]
	if !ok {
		e.t.Fatalf("%s: no local.%s", e.m.dir, name)
	}
	return v
}

// eval evaluates an expression in ctx (or the module's context).
func (e *evaluator) eval(expr hcl.Expression, ctx *hcl.EvalContext) cty.Value {
	e.t.Helper()
	if ctx == nil {
		ctx = e.ctx
	}
	v, diags := expr.Value(ctx)
	if diags.HasErrors() {
		e.t.Fatalf("%s: %s", e.m.dir, diags.Error())
	}
	return v
}

// instances expands a resource's for_each or count and evaluates its
// top-level attributes for every instance. An unknown for_each or count
// gives one instance with unknown each.key, each.value or count.index.
func (e *evaluator) instances(addr string) map[string]map[string]cty.Value {
	e.t.Helper()
	b, ok := e.m.resources[addr]
	if !ok {
		e.t.Fatalf("%s: no resource %s", e.m.dir, addr)
	}
	result := map[string]map[string]cty.Value{}
	for key, ctx := range e.instanceContexts(b) {
		out := map[string]cty.Value{}
		for name, a := range b.Body.Attributes {
			if name == "for_each" || name == "count" || name == "depends_on" {
				continue
			}
			out[name] = e.eval(a.Expr, ctx)
		}
		result[key] = out
	}
	return result
}

// instanceContexts returns the evaluation context of each instance of a
// resource or data block, by instance key.
func (e *evaluator) instanceContexts(b *hclsyntax.Block) map[string]*hcl.EvalContext {
	e.t.Helper()
	out := map[string]*hcl.EvalContext{}
	child := func(name string, v cty.Value) *hcl.EvalContext {
		ctx := e.ctx.NewChild()
		ctx.Variables = map[string]cty.Value{name: v}
		return ctx
	}
	switch {
	case attr(b, "for_each") != nil:
		coll := e.eval(attr(b, "for_each").Expr, nil)
		if !coll.IsWhollyKnown() {
			out["<unknown>"] = child("each", cty.ObjectVal(map[string]cty.Value{"key": cty.UnknownVal(cty.String), "value": cty.DynamicVal}))
			return out
		}
		for it := coll.ElementIterator(); it.Next(); {
			k, v := it.Element()
			if coll.Type().IsSetType() {
				k = v
			}
			out[k.AsString()] = child("each", cty.ObjectVal(map[string]cty.Value{"key": k, "value": v}))
		}
	case attr(b, "count") != nil:
		n := e.eval(attr(b, "count").Expr, nil)
		if !n.IsKnown() {
			out["<unknown>"] = child("count", cty.ObjectVal(map[string]cty.Value{"index": cty.UnknownVal(cty.Number)}))
			return out
		}
		var count int
		if err := gocty(n, &count); err != nil {
			e.t.Fatalf("%s: count: %v", e.m.dir, err)
		}
		for i := 0; i < count; i++ {
			out[fmt.Sprint(i)] = child("count", cty.ObjectVal(map[string]cty.Value{"index": cty.NumberIntVal(int64(i))}))
		}
	default:
		out[""] = e.ctx
	}
	return out
}

// output evaluates one output's value.
func (e *evaluator) output(name string) cty.Value {
	e.t.Helper()
	b, ok := e.m.outputs[name]
	if !ok {
		e.t.Fatalf("%s has no output %q", e.m.dir, name)
	}
	return e.eval(attr(b, "value").Expr, nil)
}

func gocty(v cty.Value, n *int) error {
	if !v.IsKnown() || v.IsNull() || v.Type() != cty.Number {
		return fmt.Errorf("%#v is not a known number", v)
	}
	i, _ := v.AsBigFloat().Int64()
	*n = int(i)
	return nil
}

// templateFuncs are the functions pools templates may use, with Terraform's
// semantics.
func templateFuncs() map[string]function.Function {
	return map[string]function.Function{
		"jsonencode": stdlib.JSONEncodeFunc,
		"join":       stdlib.JoinFunc,
		"keys":       stdlib.KeysFunc,
		"format":     stdlib.FormatFunc,
		"upper":      stdlib.UpperFunc,
		"lower":      stdlib.LowerFunc,
	}
}

// moduleFuncs are the functions module expressions may use. Functions
// the model does not implement are stubbed to return unknown values.
func moduleFuncs(m *module) map[string]function.Function {
	fns := templateFuncs()
	for name, fn := range map[string]function.Function{
		"concat":   stdlib.ConcatFunc,
		"contains": stdlib.ContainsFunc,
		"distinct": stdlib.DistinctFunc,
		"flatten":  stdlib.FlattenFunc,
		"length":   lengthFunc,
		"lookup":   stdlib.LookupFunc,
		"merge":    stdlib.MergeFunc,
		"min":      stdlib.MinFunc,
		"max":      stdlib.MaxFunc,
		"coalesce": stdlib.CoalesceFunc,
		"regex":    stdlib.RegexFunc,
		"slice":    stdlib.SliceFunc,
		"sort":     stdlib.SortFunc,
		"split":    stdlib.SplitFunc,
		"values":   stdlib.ValuesFunc,
		"toset":    stdlib.MakeToFunc(cty.Set(cty.DynamicPseudoType)),
		"tolist":   stdlib.MakeToFunc(cty.List(cty.DynamicPseudoType)),
		"tostring": stdlib.MakeToFunc(cty.String),
		"tonumber": stdlib.MakeToFunc(cty.Number),
		"try":      tryfunc.TryFunc,
		"can":      tryfunc.CanFunc,
		"one":      oneFunc,
		"alltrue":  allTrueFunc,
	} {
		fns[name] = fn
	}
	m.walk(func(n hclsyntax.Node) {
		if call, ok := n.(*hclsyntax.FunctionCallExpr); ok {
			if _, known := fns[call.Name]; !known {
				fns[call.Name] = unknownFunc
			}
		}
	})
	return fns
}

var unknownFunc = function.New(&function.Spec{
	VarParam: &function.Parameter{Name: "args", Type: cty.DynamicPseudoType, AllowNull: true, AllowUnknown: true, AllowDynamicType: true},
	Type:     function.StaticReturnType(cty.DynamicPseudoType),
	Impl: func([]cty.Value, cty.Type) (cty.Value, error) {
		return cty.DynamicVal, nil
	},
})

// lengthFunc is Terraform's length(): of a collection, or of a string in
// characters.
var lengthFunc = function.New(&function.Spec{
	Params: []function.Parameter{{Name: "value", Type: cty.DynamicPseudoType, AllowUnknown: true, AllowDynamicType: true}},
	Type:   function.StaticReturnType(cty.Number),
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		if args[0].Type() == cty.String {
			return stdlib.Strlen(args[0])
		}
		return stdlib.Length(args[0])
	},
})

// allTrueFunc is Terraform's alltrue(): whether every element is true.
var allTrueFunc = function.New(&function.Spec{
	Params: []function.Parameter{{Name: "list", Type: cty.DynamicPseudoType, AllowUnknown: true}},
	Type:   function.StaticReturnType(cty.Bool),
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		v := args[0]
		if !v.IsWhollyKnown() {
			return cty.UnknownVal(cty.Bool), nil
		}
		for it := v.ElementIterator(); it.Next(); {
			_, el := it.Element()
			b, err := convert.Convert(el, cty.Bool)
			if err != nil {
				return cty.NilVal, err
			}
			if b.IsNull() || b.False() {
				return cty.False, nil
			}
		}
		return cty.True, nil
	},
})

// oneFunc is Terraform's one(): the only element of a list, tuple or set,
// or null when it is empty.
var oneFunc = function.New(&function.Spec{
	Params: []function.Parameter{{Name: "list", Type: cty.DynamicPseudoType, AllowUnknown: true, AllowDynamicType: true}},
	Type:   function.StaticReturnType(cty.DynamicPseudoType),
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		v := args[0]
		if !v.IsKnown() {
			return cty.DynamicVal, nil
		}
		switch n := v.LengthInt(); n {
		case 0:
			return cty.NullVal(cty.DynamicPseudoType), nil
		case 1:
			it := v.ElementIterator()
			it.Next()
			_, el := it.Element()
			return el, nil
		default:
			return cty.NilVal, fmt.Errorf("must be a list, set, or tuple value with either zero or one elements, not %d", n)
		}
	},
})

// renderTemplate implements templatefile(path, vars): the template may use
// only vars and templateFuncs, and must render to a string.
func renderTemplate(path string, vars cty.Value) (string, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	tmpl, diags := hclsyntax.ParseTemplate(src, path, hcl.Pos{Line: 1, Column: 1, Byte: 0})
	if diags.HasErrors() {
		return "", diags
	}
	if !vars.Type().IsObjectType() && !vars.Type().IsMapType() {
		return "", fmt.Errorf("templatefile vars must be an object or map, not %s", vars.Type().FriendlyName())
	}
	ctx := &hcl.EvalContext{Variables: vars.AsValueMap(), Functions: templateFuncs()}
	for _, tr := range tmpl.Variables() {
		if _, ok := ctx.Variables[tr.RootName()]; !ok {
			return "", fmt.Errorf("%s: the template uses %q, which templatefile's vars do not define", tr.SourceRange(), tr.RootName())
		}
	}
	v, diags := tmpl.Value(ctx)
	if diags.HasErrors() {
		return "", diags
	}
	if !v.IsWhollyKnown() || v.IsNull() {
		return "", fmt.Errorf("template rendered to an unknown or null value")
	}
	s, err := convert.Convert(v, cty.String)
	if err != nil {
		return "", err
	}
	return s.AsString(), nil
}

// templateCall finds a templatefile(...) call in expr.
func templateCall(expr hclsyntax.Expression) *hclsyntax.FunctionCallExpr {
	var found *hclsyntax.FunctionCallExpr
	_ = hclsyntax.VisitAll(expr, func(n hclsyntax.Node) hcl.Diagnostics {
		if call, ok := n.(*hclsyntax.FunctionCallExpr); ok && call.Name == "templatefile" && found == nil {
			found = call
		}
		return nil
	})
	return found
}

// moduleOutputRefs lists the module.NAME.OUTPUT references in expr.
func moduleOutputRefs(expr hcl.Expression) [][2]string {
	var refs [][2]string
	seen := map[[2]string]bool{}
	for _, tr := range expr.Variables() {
		if tr.RootName() != "module" || len(tr) < 3 {
			continue
		}
		name, ok1 := tr[1].(hcl.TraverseAttr)
		out, ok2 := tr[2].(hcl.TraverseAttr)
		if !ok1 || !ok2 {
			continue
		}
		ref := [2]string{name.Name, out.Name}
		if !seen[ref] {
			seen[ref] = true
			refs = append(refs, ref)
		}
	}
	sort.Slice(refs, func(i, j int) bool { return refs[i][0]+"."+refs[i][1] < refs[j][0]+"."+refs[j][1] })
	return refs
}

// stringsOf returns a known string or list/set/tuple of strings as a slice.
func stringsOf(t *testing.T, what string, v cty.Value) []string {
	t.Helper()
	if !v.IsWhollyKnown() || v.IsNull() {
		t.Fatalf("%s is unknown or null", what)
	}
	if v.Type() == cty.String {
		return []string{v.AsString()}
	}
	if !v.CanIterateElements() {
		t.Fatalf("%s is %s, not a string or a list of strings", what, v.Type().FriendlyName())
	}
	var out []string
	for it := v.ElementIterator(); it.Next(); {
		_, el := it.Element()
		s, err := convert.Convert(el, cty.String)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		out = append(out, s.AsString())
	}
	return out
}

func str(v cty.Value) string {
	if !v.IsKnown() || v.IsNull() {
		return "<unknown>"
	}
	s, err := convert.Convert(v, cty.String)
	if err != nil {
		return fmt.Sprintf("%#v", v)
	}
	return strings.TrimSpace(s.AsString())
}
