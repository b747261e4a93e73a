package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	nomad "github.com/hashicorp/nomad/api"

	"github.com/spillwayhq/spillway/internal/demo"
)

// fileSDGroup is one target group of Prometheus's file_sd format.
type fileSDGroup struct {
	Targets []string          `json:"targets"`
	Labels  map[string]string `json:"labels"`
}

// followService keeps Prometheus's file_sd targets for a Nomad native
// service in step with Nomad's catalogue. It returns when ctx ends.
func (l *Lab) followService(ctx context.Context, service string) {
	path := filepath.Join(l.Dir, "prometheus", "targets", service+".json")
	demo.FollowService(ctx, l.nomad, service, func(regs []*nomad.ServiceRegistration) {
		if err := writeTargets(path, service, regs); err != nil {
			l.progress("prometheus targets for %s: %v", service, err)
		}
	}, func(error) {})
}

func writeTargets(path, service string, regs []*nomad.ServiceRegistration) error {
	groups := make([]fileSDGroup, 0, len(regs))
	for _, r := range regs {
		groups = append(groups, fileSDGroup{
			Targets: []string{fmt.Sprintf("%s:%d", r.Address, r.Port)},
			Labels:  map[string]string{"service": service, "alloc": r.AllocID, "node": r.NodeID, "nomad_namespace": r.Namespace},
		})
	}
	sort.Slice(groups, func(i, j int) bool { return groups[i].Targets[0] < groups[j].Targets[0] })
	data, err := json.MarshalIndent(groups, "", "  ")
	if err != nil {
		return err
	}
	// Write and rename, so Prometheus never reads half a file.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
