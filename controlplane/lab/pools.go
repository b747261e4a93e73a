package lab

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// writePools describes the lab's own topology as pool files, so the
// control plane can borrow from the lab's shared pool: one BusinessUnit
// per business unit (its node pool, class internal, lending half of what
// it owns, borrowing up to the whole shared pool) and the SharedPool.
func (l *Lab) writePools() (string, error) {
	dir := filepath.Join(l.Dir, "pools")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString("# Written by the Spillway lab from its own topology.\n")
	for _, bu := range l.opts.BusinessUnits {
		fmt.Fprintf(&b, `---
apiVersion: spillway/v1
kind: BusinessUnit
name: %s
selector: {node_pool: %s, node_class: %s}
lending: {share: 50%%}
borrowing: {quota: %d}
`, bu.Name, bu.Name, InternalClass, l.opts.SharedHosts)
	}
	if l.opts.SharedHosts > 0 {
		fmt.Fprintf(&b, `---
apiVersion: spillway/v1
kind: SharedPool
name: %s
selector:
  node_pool: %s
  meta: {%s: %s}
lease: 1h
reclaim_notice: 2m
drain_deadline: 30s
time_to_ready: 10s
`, SharedPool, SharedPool, MetaTier, TierShared)
	}
	path := filepath.Join(dir, "lab.yaml")
	return dir, os.WriteFile(path, []byte(b.String()), 0o644)
}
