package pools

import (
	"fmt"
	"os"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/spillwayhq/spillway/internal/strictyaml"
)

// Files lists the pool files LoadDir would load from dir: the *.yaml and
// *.yml files directly in it, in name order.
func Files(dir string) ([]string, error) { return strictyaml.Files(dir, "pool") }

// LoadDir loads every pool file directly in dir. See [LoadFiles].
func LoadDir(dir string) (*Config, error) {
	files, err := Files(dir)
	if err != nil {
		return nil, err
	}
	return LoadFiles(files...)
}

// LoadFiles reads, decodes and validates the files, each holding one or
// more BusinessUnit, SharedPool, CloudPool or Link documents. The files are
// checked together: names are unique per kind across them, and there is at
// most one SharedPool. It returns the whole configuration or a
// [strictyaml.Errors] holding every problem in every file, each formatted
// "file:line:column: field.path: message", sorted by file and line; never a
// partial configuration.
func LoadFiles(paths ...string) (*Config, error) {
	var errs strictyaml.Errors
	var docs []document
	cfg := &Config{}
	for _, path := range paths {
		data, err := os.ReadFile(path)
		if err != nil {
			errs = append(errs, &strictyaml.Error{File: path, Msg: fmt.Sprintf("reading pool file: %s", strictyaml.PathErrorCause(err))})
			continue
		}
		ds, err := parse(path, data)
		errs = append(errs, strictyaml.AsErrors(path, err)...)
		docs = append(docs, ds...)
		cfg.files = append(cfg.files, path)
	}
	errs = append(errs, validateSet(cfg, docs)...)
	if err := errs.Err(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// Parse decodes and validates the pool documents in data on their own, name
// being the file name used in errors. Checks across documents (unique
// names, one shared pool) happen in [LoadFiles]; Parse builds a Config of
// just this data with those checks too.
func Parse(name string, data []byte) (*Config, error) {
	docs, err := parse(name, data)
	errs := strictyaml.AsErrors(name, err)
	cfg := &Config{files: []string{name}}
	errs = append(errs, validateSet(cfg, docs)...)
	if err := errs.Err(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// document is one decoded pool document of any kind.
type document interface {
	hdr() *Header
	validate() strictyaml.Errors
}

func (h *Header) hdr() *Header { return h }

func parse(name string, data []byte) ([]document, error) {
	var (
		out  []document
		errs strictyaml.Errors
	)
	err := strictyaml.DecodeAll(name, data, func(root *yaml.Node) (any, error) {
		if root.Kind != yaml.MappingNode {
			return nil, &strictyaml.Error{File: name, Line: root.Line, Column: root.Column,
				Msg: fmt.Sprintf("expected a pool document (kind %s)", strings.Join(Kinds, ", "))}
		}
		var kind *yaml.Node
		for i := 0; i+1 < len(root.Content); i += 2 {
			if root.Content[i].Value == "kind" {
				kind = root.Content[i+1]
			}
		}
		if kind == nil {
			return nil, &strictyaml.Error{File: name, Line: root.Line, Column: root.Column, Path: "kind",
				Msg: fmt.Sprintf("is required; use one of %s", strings.Join(Kinds, ", "))}
		}
		switch kind.Value {
		case KindBusinessUnit:
			return &BusinessUnit{}, nil
		case KindSharedPool:
			return &SharedPool{}, nil
		case KindCloudPool:
			return &CloudPool{}, nil
		case KindLink:
			return &Link{}, nil
		}
		return nil, &strictyaml.Error{File: name, Line: kind.Line, Column: kind.Column, Path: "kind",
			Msg: fmt.Sprintf("unknown kind %q; use one of %s", kind.Value, strings.Join(Kinds, ", "))}
	}, func(v any, pos *strictyaml.Positions) {
		d := v.(document)
		d.hdr().pos = pos
		errs = append(errs, d.validate()...)
		out = append(out, d)
	})
	errs = append(errs, strictyaml.AsErrors(name, err)...)
	if len(out) == 0 && len(errs) == 0 {
		errs = append(errs, &strictyaml.Error{File: name, Msg: "no pool documents in file"})
	}
	return out, errs.Err()
}

// validateSet checks rules across documents and fills cfg.
func validateSet(cfg *Config, docs []document) strictyaml.Errors {
	var errs strictyaml.Errors
	sort.SliceStable(docs, func(i, j int) bool {
		a, b := docs[i].hdr(), docs[j].hdr()
		if a.File() != b.File() {
			return a.File() < b.File()
		}
		return a.Line() < b.Line()
	})
	seen := map[string]*Header{}
	for _, d := range docs {
		h := d.hdr()
		if h.Name != "" {
			key := h.Kind + "\x00" + h.Name
			if first, ok := seen[key]; ok {
				errs = append(errs, h.pos.Errorf("name", "duplicate %s name %q, first defined at %s:%d",
					h.Kind, h.Name, first.File(), first.pos.Of("name").Line))
				continue
			}
			seen[key] = h
		}
		switch d := d.(type) {
		case *BusinessUnit:
			cfg.BusinessUnits = append(cfg.BusinessUnits, d)
		case *SharedPool:
			if cfg.Shared != nil {
				errs = append(errs, d.pos.Errorf("kind", "only one SharedPool is allowed, first defined at %s:%d",
					cfg.Shared.File(), cfg.Shared.Line()))
				continue
			}
			cfg.Shared = d
		case *CloudPool:
			cfg.CloudPools = append(cfg.CloudPools, d)
		case *Link:
			cfg.Links = append(cfg.Links, d)
		}
	}
	// A cloud pool names a link defined in the files.
	for _, p := range cfg.CloudPools {
		if p.Link == "" {
			continue
		}
		if _, ok := cfg.Link(p.Link); !ok {
			var names []string
			for _, l := range cfg.Links {
				names = append(names, l.Name)
			}
			known := "no Link is defined"
			if len(names) > 0 {
				known = "defined: " + strings.Join(names, ", ")
			}
			errs = append(errs, p.pos.Errorf("link", "no Link named %q (%s)", p.Link, known))
		}
	}
	// A business unit's own hosts must not also be shared-pool hosts.
	if cfg.Shared != nil {
		for _, b := range cfg.BusinessUnits {
			if b.Selector.NodePool != "" && b.Selector.NodePool == cfg.Shared.Selector.NodePool {
				errs = append(errs, b.pos.Errorf("selector.node_pool", "node pool %q is the shared pool's (%s:%d); a business unit's own hosts need their own",
					b.Selector.NodePool, cfg.Shared.File(), cfg.Shared.pos.Of("selector.node_pool").Line))
			}
		}
	}
	return errs
}
