package webui

import (
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The build stamp: the one implementation of the check that the committed
// dist/ was built from the committed sources. `make webui` runs
// `go test ./webui -run TestBuildStampMatchesSources -update` after Vite
// has built; every other run compares. See README.md.

var update = flag.Bool("update", false, "rewrite build.stamp from the sources and dist/ (make webui does, after building)")

// stampFile is the stamp's path, relative to this package.
const stampFile = "build.stamp"

// stampInputs are the files the build reads, besides everything under src/.
var stampInputs = []string{"index.html", "package.json", "package-lock.json", "tsconfig.json", "vite.config.ts"}

// filesUnder lists the regular files under dir, slash-separated and sorted.
func filesUnder(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			out = append(out, filepath.ToSlash(p))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("listing %s: %v (run make webui)", dir, err)
	}
	slices.Sort(out)
	return out
}

// digest hashes files in the order given: for each, its path, a NUL, the
// SHA-256 of its content and a newline. A renamed, added or removed file
// changes it as much as an edited one.
func digest(t *testing.T, files []string) string {
	t.Helper()
	outer := sha256.New()
	for _, name := range files {
		b, err := os.ReadFile(filepath.FromSlash(name))
		if err != nil {
			t.Fatalf("reading %s: %v (run make webui)", name, err)
		}
		sum := sha256.Sum256(b)
		fmt.Fprintf(outer, "%s\x00%s\n", name, hex.EncodeToString(sum[:]))
	}
	return hex.EncodeToString(outer.Sum(nil))
}

// stamp is what build.stamp must hold for the files now in the tree.
func stamp(t *testing.T) string {
	t.Helper()
	sources := append(slices.Clone(stampInputs), filesUnder(t, "src")...)
	slices.Sort(sources)
	return "# Written by `make webui`; checked by TestBuildStampMatchesSources. Do not edit.\n" +
		"sources sha256:" + digest(t, sources) + "\n" +
		"dist sha256:" + digest(t, filesUnder(t, "dist")) + "\n"
}

// TestBuildStampMatchesSources fails when the sources (src/, index.html,
// package.json, the lockfile, the configs) or the built dist/ changed
// since `make webui` last built and stamped them: the console embedded in
// the binary would not be the one in the sources.
func TestBuildStampMatchesSources(t *testing.T) {
	want := stamp(t)
	if *update {
		if err := os.WriteFile(stampFile, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", stampFile)
		return
	}
	got, err := os.ReadFile(stampFile)
	if err != nil {
		t.Fatalf("no build stamp (%v): run make webui, then commit webui/dist and webui/%s", err, stampFile)
	}
	if string(got) != want {
		var what []string
		gotLines, wantLines := strings.Split(string(got), "\n"), strings.Split(want, "\n")
		for i, l := range wantLines {
			if i >= len(gotLines) || gotLines[i] != l {
				what = append(what, strings.SplitN(l, " ", 2)[0])
			}
		}
		t.Fatalf("webui/%s does not match the %s now in the tree: the embedded console may not be built from these sources; "+
			"run make webui, then commit webui/dist and webui/%s", stampFile, strings.Join(what, " and "), stampFile)
	}
}
