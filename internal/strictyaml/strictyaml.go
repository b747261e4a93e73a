// Package strictyaml decodes YAML documents into Go structs strictly: an
// unknown key, a duplicate key or a value of the wrong type is an error, and
// every error names the file, line, column and dotted field path. Decoding
// does not stop at the first problem; it collects them all, so an operator
// fixes a file in one pass.
//
// Field names come from `yaml:"name"` tags. A type with an
// UnmarshalYAML(*yaml.Node) error method decodes itself. Positions of every
// decoded path are kept in a [Positions] index, so validation that runs after
// decoding can still point at the line an error is about.
package strictyaml

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Error is one problem in a YAML file.
type Error struct {
	File   string
	Line   int
	Column int
	Path   string // dotted field path, e.g. "checks[0].query"; empty for the document
	Msg    string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d:%d", e.Line, e.Column)
	}
	b.WriteString(": ")
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in one or more files, in file and line order.
type Errors []*Error

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Err returns es as an error, or nil when it is empty.
func (es Errors) Err() error {
	if len(es) == 0 {
		return nil
	}
	es.Sort()
	return es
}

// Sort orders the errors by file, line and column.
func (es Errors) Sort() {
	sort.SliceStable(es, func(i, j int) bool {
		a, b := es[i], es[j]
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Column < b.Column
	})
}

// AsErrors unwraps err into Errors. An error that is not a strictyaml error
// becomes one Error for file without a position.
func AsErrors(file string, err error) Errors {
	if err == nil {
		return nil
	}
	var es Errors
	if errors.As(err, &es) {
		return es
	}
	var e *Error
	if errors.As(err, &e) {
		return Errors{e}
	}
	return Errors{{File: file, Msg: err.Error()}}
}

// Position is a line and column in a file, both counted from 1.
type Position struct {
	Line, Column int
}

// Positions maps the dotted field paths of one decoded document to where
// they appear, so later validation can report a line.
type Positions struct {
	File string
	// Doc is where the document starts.
	Doc    Position
	paths  map[string]Position
	failed map[string]bool
}

// Of returns the position of path, or of its nearest ancestor that has one,
// or of the document.
func (p *Positions) Of(path string) Position {
	if p == nil {
		return Position{}
	}
	for {
		if pos, ok := p.paths[path]; ok {
			return pos
		}
		cut := strings.LastIndexAny(path, ".[")
		if cut <= 0 {
			if pos, ok := p.paths[path]; ok {
				return pos
			}
			return p.Doc
		}
		path = path[:cut]
	}
}

// Has reports whether path was set in the document.
func (p *Positions) Has(path string) bool {
	if p == nil {
		return false
	}
	_, ok := p.paths[path]
	return ok
}

// Failed reports whether decoding reported an error at path or at one of
// its ancestors, so validation can skip a value that never decoded instead
// of reporting it twice.
func (p *Positions) Failed(path string) bool {
	if p == nil || len(p.failed) == 0 {
		return false
	}
	for {
		if p.failed[path] {
			return true
		}
		cut := strings.LastIndexAny(path, ".[")
		if cut <= 0 {
			return false
		}
		path = path[:cut]
	}
}

// Paths returns every decoded path, sorted.
func (p *Positions) Paths() []string {
	out := make([]string, 0, len(p.paths))
	for k := range p.paths {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Errorf builds an Error located at path.
func (p *Positions) Errorf(path, format string, args ...any) *Error {
	pos := p.Of(path)
	file := ""
	if p != nil {
		file = p.File
	}
	return &Error{File: file, Line: pos.Line, Column: pos.Column, Path: path, Msg: fmt.Sprintf(format, args...)}
}

// ReadFile decodes the single YAML document in file into out.
func ReadFile(file string, out any) (*Positions, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, Errors{{File: file, Msg: err.Error()}}
	}
	return Decode(file, data, out)
}

// Decode decodes the single YAML document in data into out. name is the file
// name used in errors. An empty document leaves out untouched.
func Decode(name string, data []byte, out any) (*Positions, error) {
	var pos *Positions
	n := 0
	err := DecodeAll(name, data, func(node *yaml.Node) (any, error) {
		n++
		if n > 1 {
			return nil, &Error{File: name, Line: node.Line, Column: node.Column, Msg: "expected one YAML document, found more"}
		}
		return out, nil
	}, func(_ any, p *Positions) { pos = p })
	if pos == nil {
		pos = &Positions{File: name, paths: map[string]Position{}}
	}
	return pos, err
}

// DecodeAll decodes every document in a multi-document YAML stream. For each
// non-empty document it calls target to get the value to decode into (target
// may inspect the raw node, e.g. to pick a type by "kind") and then done with
// the decoded value and its positions. Errors from all documents are
// collected.
func DecodeAll(name string, data []byte, target func(*yaml.Node) (any, error), done func(any, *Positions)) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var errs Errors
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			errs = append(errs, syntaxError(name, err))
			break
		}
		if len(doc.Content) == 0 || (doc.Content[0].Kind == yaml.ScalarNode && doc.Content[0].Tag == "!!null") {
			continue
		}
		root := doc.Content[0]
		out, err := target(root)
		if err != nil {
			errs = append(errs, AsErrors(name, err)...)
			continue
		}
		if out == nil {
			continue
		}
		d := &decoder{pos: &Positions{File: name, Doc: Position{root.Line, root.Column}, paths: map[string]Position{}}}
		rv := reflect.ValueOf(out)
		if rv.Kind() != reflect.Pointer || rv.IsNil() {
			return fmt.Errorf("strictyaml: decode target must be a non-nil pointer, got %T", out)
		}
		d.decode(root, rv.Elem(), "")
		errs = append(errs, d.errs...)
		if done != nil {
			done(out, d.pos)
		}
	}
	return errs.Err()
}

var lineRe = "line "

// syntaxError turns a yaml.v3 parse error ("yaml: line 3: mapping values are
// not allowed in this context") into an Error with a line.
func syntaxError(name string, err error) *Error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	e := &Error{File: name, Msg: msg}
	if strings.HasPrefix(msg, lineRe) {
		rest := msg[len(lineRe):]
		if i := strings.Index(rest, ": "); i > 0 {
			if n, convErr := strconv.Atoi(rest[:i]); convErr == nil {
				e.Line, e.Column, e.Msg = n, 1, rest[i+2:]
			}
		}
	}
	return e
}

// NodeUnmarshaler is implemented by types that decode themselves from a node.
// It is the same method yaml.v3 uses, so such types work with both.
type NodeUnmarshaler interface {
	UnmarshalYAML(*yaml.Node) error
}

// maxNodes bounds the nodes one document may expand to, aliases included,
// so a small file of nested aliases ("billion laughs") cannot make decoding
// take forever.
const maxNodes = 1 << 17

type decoder struct {
	pos   *Positions
	errs  Errors
	nodes int
}

func (d *decoder) errorf(n *yaml.Node, path, format string, args ...any) {
	if d.pos.failed == nil {
		d.pos.failed = map[string]bool{}
	}
	d.pos.failed[path] = true
	d.errs = append(d.errs, &Error{File: d.pos.File, Line: n.Line, Column: n.Column, Path: path, Msg: fmt.Sprintf(format, args...)})
}

var (
	durationType  = reflect.TypeFor[time.Duration]()
	unmarshalType = reflect.TypeFor[NodeUnmarshaler]()
)

func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	for n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	d.nodes++
	if d.nodes > maxNodes {
		if d.nodes == maxNodes+1 {
			d.errorf(n, path, "document expands to more than %d values; too many aliases?", maxNodes)
		}
		return
	}
	if _, seen := d.pos.paths[path]; !seen && path != "" {
		d.pos.paths[path] = Position{n.Line, n.Column}
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // explicit null leaves the default in place
	}
	if v.CanAddr() && v.Addr().Type().Implements(unmarshalType) {
		if err := v.Addr().Interface().(NodeUnmarshaler).UnmarshalYAML(n); err != nil {
			d.errorf(n, path, "%s", err)
		}
		return
	}
	if v.Type() == durationType {
		d.decodeDuration(n, v, path)
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.decode(n, v.Elem(), path)
	case reflect.Struct:
		d.decodeStruct(n, v, path)
	case reflect.Map:
		d.decodeMap(n, v, path)
	case reflect.Slice:
		d.decodeSlice(n, v, path)
	case reflect.Interface:
		var x any
		if err := n.Decode(&x); err != nil {
			d.errorf(n, path, "%s", err)
			return
		}
		if x != nil {
			v.Set(reflect.ValueOf(x))
		}
	default:
		d.decodeScalar(n, v, path)
	}
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("%q", n.Value)
	}
	return "something else"
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.errorf(n, path, "expected a mapping, got %s", kindName(n))
		return
	}
	fields := structFields(v.Type())
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		key := k.Value
		child := joinPath(path, key)
		if seen[key] {
			d.errorf(k, child, "duplicate key")
			continue
		}
		seen[key] = true
		f, ok := fields[key]
		if !ok {
			if why, ok := removedKey(v, key); ok {
				d.errorf(k, child, "removed: %s", why)
				continue
			}
			msg := "unknown key"
			if s := suggest(key, fields); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			d.errorf(k, child, "%s", msg)
			continue
		}
		d.pos.paths[child] = Position{k.Line, k.Column}
		d.decode(val, v.FieldByIndex(f), child)
	}
}

func (d *decoder) decodeMap(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.errorf(n, path, "expected a mapping, got %s", kindName(n))
		return
	}
	if v.IsNil() {
		v.Set(reflect.MakeMap(v.Type()))
	}
	kt := v.Type().Key()
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		child := joinPath(path, k.Value)
		if seen[k.Value] {
			d.errorf(k, child, "duplicate key")
			continue
		}
		seen[k.Value] = true
		d.pos.paths[child] = Position{k.Line, k.Column}
		kv := reflect.New(kt).Elem()
		d.decode(k, kv, child)
		ev := reflect.New(v.Type().Elem()).Elem()
		if old := v.MapIndex(kv); old.IsValid() {
			ev.Set(old)
		}
		d.decode(val, ev, child)
		v.SetMapIndex(kv, ev)
	}
}

func (d *decoder) decodeSlice(n *yaml.Node, v reflect.Value, path string) {
	if v.Type().Elem().Kind() == reflect.Uint8 && n.Kind == yaml.ScalarNode {
		v.SetBytes([]byte(n.Value))
		return
	}
	if n.Kind != yaml.SequenceNode {
		d.errorf(n, path, "expected a list, got %s", kindName(n))
		return
	}
	out := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, item := range n.Content {
		d.decode(item, out.Index(i), fmt.Sprintf("%s[%d]", path, i))
	}
	v.Set(out)
}

func (d *decoder) decodeDuration(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.ScalarNode {
		d.errorf(n, path, "expected a duration such as 30s or 5m, got %s", kindName(n))
		return
	}
	dur, err := time.ParseDuration(n.Value)
	if err != nil {
		if n.Value == "0" {
			v.SetInt(0)
			return
		}
		d.errorf(n, path, "expected a duration such as 30s or 5m, got %q", n.Value)
		return
	}
	v.SetInt(int64(dur))
}

func (d *decoder) decodeScalar(n *yaml.Node, v reflect.Value, path string) {
	want := scalarName(v.Kind())
	if n.Kind != yaml.ScalarNode {
		d.errorf(n, path, "expected %s, got %s", want, kindName(n))
		return
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(n.Value)
		return
	case reflect.Bool:
		var b bool
		if n.Tag == "!!bool" && n.Decode(&b) == nil {
			v.SetBool(b)
			return
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if n.Tag == "!!int" {
			i, err := strconv.ParseInt(strings.ReplaceAll(n.Value, "_", ""), 0, v.Type().Bits())
			if err == nil {
				v.SetInt(i)
				return
			}
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if n.Tag == "!!int" {
			i, err := strconv.ParseUint(strings.ReplaceAll(n.Value, "_", ""), 0, v.Type().Bits())
			if err == nil {
				v.SetUint(i)
				return
			}
			if strings.HasPrefix(n.Value, "-") {
				want = "a non-negative integer"
			}
		}
	case reflect.Float32, reflect.Float64:
		if n.Tag == "!!int" || n.Tag == "!!float" {
			var f float64
			if err := n.Decode(&f); err == nil {
				v.SetFloat(f)
				return
			}
		}
	default:
		d.errorf(n, path, "unsupported field type %s", v.Type())
		return
	}
	d.errorf(n, path, "expected %s, got %q", want, n.Value)
}

func scalarName(k reflect.Kind) string {
	switch k {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a non-negative integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	}
	return k.String()
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// structFields maps YAML keys to field indexes, following `yaml` tags and
// ",inline" embedding. Fields tagged "-" and unexported fields are skipped.
func structFields(t reflect.Type) map[string][]int {
	out := map[string][]int{}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if strings.Contains(opts, "inline") || (f.Anonymous && tag == "") {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				for k, idx := range structFields(ft) {
					out[k] = append([]int{i}, idx...)
				}
				continue
			}
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = []int{i}
	}
	return out
}

// Keys returns every dotted key path a struct type accepts, descending into
// nested structs (not into maps or slices). Config loaders use it to tell
// known keys from unknown ones.
func Keys(t reflect.Type) []string {
	var out []string
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		fields := structFields(t)
		for name, idx := range fields {
			ft := t.FieldByIndex(idx).Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			key := joinPath(prefix, name)
			if ft.Kind() == reflect.Struct && ft != durationType && !reflect.PointerTo(ft).Implements(unmarshalType) {
				walk(ft, key)
				continue
			}
			out = append(out, key)
		}
	}
	walk(t, "")
	sort.Strings(out)
	return out
}

// Retired is implemented by a struct type some of whose keys were removed:
// RemovedKeys maps each such key to what to do instead, and the decoder
// says that instead of "unknown key".
type Retired interface {
	RemovedKeys() map[string]string
}

var retiredType = reflect.TypeFor[Retired]()

func removedKey(v reflect.Value, key string) (string, bool) {
	if !v.Type().Implements(retiredType) && !reflect.PointerTo(v.Type()).Implements(retiredType) {
		return "", false
	}
	r, ok := reflect.New(v.Type()).Interface().(Retired)
	if !ok {
		r, _ = reflect.Zero(v.Type()).Interface().(Retired)
	}
	if r == nil {
		return "", false
	}
	why, ok := r.RemovedKeys()[key]
	return why, ok
}

// suggest returns the known key closest to key, if it is close enough to be a
// likely typo.
func suggest(key string, fields map[string][]int) string {
	best, bestDist := "", 3
	for k := range fields {
		if dist := editDistance(strings.ToLower(key), strings.ToLower(k)); dist < bestDist || (dist == bestDist && best != "" && k < best) {
			best, bestDist = k, dist
		}
	}
	return best
}

// editDistance is the optimal string alignment distance: insertions,
// deletions, substitutions and transpositions of neighbours each cost 1.
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

// Validator collects located errors while a loader checks one decoded
// document. An error about a value that already failed to decode is
// dropped: the decoder reported it.
type Validator struct {
	Pos  *Positions
	Errs Errors
}

// Errorf records an error located at path.
func (v *Validator) Errorf(path, format string, args ...any) {
	if v.Pos.Failed(path) {
		return
	}
	v.Errs = append(v.Errs, v.Pos.Errorf(path, format, args...))
}

// Required records "is required" at path unless set, and returns set.
func (v *Validator) Required(path string, set bool) bool {
	if !set {
		v.Errorf(path, "is required")
	}
	return set
}
