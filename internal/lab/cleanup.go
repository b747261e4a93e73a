package lab

import (
	"bufio"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// unmountUnder detaches every mount below dir, deepest first. Nomad mounts
// a tmpfs for each task's secrets and private directories when it runs as
// root; they outlive the agent.
func unmountUnder(dir string) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return
	}
	defer f.Close()
	var points []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMount(fields[4])
		if strings.HasPrefix(mp, dir+"/") {
			points = append(points, mp)
		}
	}
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	for _, mp := range points {
		_ = unix.Unmount(mp, unix.MNT_DETACH)
	}
}

// unescapeMount decodes the octal escapes of /proc/self/mountinfo (\040 is a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v byte
			ok := true
			for _, c := range s[i+1 : i+4] {
				if c < '0' || c > '7' {
					ok = false
					break
				}
				v = v*8 + byte(c-'0')
			}
			if ok {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// removeAllocCgroups removes the (empty, once their tasks are dead) cgroups
// Nomad made for the lab's allocations. All lab clients share Nomad's
// cgroup parent, so only directories named after this lab's allocations go.
func removeAllocCgroups(labDir string) {
	allocDirs, _ := filepath.Glob(filepath.Join(labDir, "nomad", "*", "data", "alloc", "*"))
	if len(allocDirs) == 0 {
		return
	}
	ids := make([]string, 0, len(allocDirs))
	for _, d := range allocDirs {
		ids = append(ids, filepath.Base(d))
	}
	var victims []string
	root := "/sys/fs/cgroup"
	_ = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		if strings.Count(strings.TrimPrefix(path, root), "/") > 4 {
			return fs.SkipDir
		}
		for _, id := range ids {
			if strings.HasPrefix(d.Name(), id+".") {
				victims = append(victims, path)
				return fs.SkipDir
			}
		}
		return nil
	})
	for _, v := range victims {
		removeCgroup(v)
	}
}

// removeCgroup removes a cgroup directory and its child cgroups. Cgroup
// directories hold only kernel files, so rmdir works bottom-up.
func removeCgroup(path string) {
	entries, _ := os.ReadDir(path)
	for _, e := range entries {
		if e.IsDir() {
			removeCgroup(filepath.Join(path, e.Name()))
		}
	}
	_ = unix.Rmdir(path)
}
