package strictyaml

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Files lists the YAML files (*.yaml, *.yml) directly in dir, in name
// order, skipping hidden files. what names the files in errors, e.g.
// "policy" gives "reading policy directory: …".
func Files(dir, what string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, Errors{{File: dir, Msg: fmt.Sprintf("reading %s directory: %s", what, PathErrorCause(err))}}
	}
	var files []string
	for _, e := range entries {
		if e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		if ext := filepath.Ext(e.Name()); ext == ".yaml" || ext == ".yml" {
			files = append(files, filepath.Join(dir, e.Name()))
		}
	}
	return files, nil
}

// ExpandArgs turns command-line arguments into files: a directory stands
// for the YAML files directly in it; anything else is kept as given, so the
// loader reports an unreadable file in its own words.
func ExpandArgs(args []string, what string) ([]string, error) {
	var files []string
	for _, arg := range args {
		fi, err := os.Stat(arg)
		if err != nil || !fi.IsDir() {
			files = append(files, arg)
			continue
		}
		fs, err := Files(arg, what)
		if err != nil {
			return nil, err
		}
		files = append(files, fs...)
	}
	return files, nil
}

// PathErrorCause strips the operation and path from an *fs.PathError,
// whose path the caller already names.
func PathErrorCause(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
