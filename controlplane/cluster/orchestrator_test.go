package cluster

import (
	"testing"

	nomad "github.com/hashicorp/nomad/api"
)

// TestCountOnly: only a version that changes task group counts and nothing
// else may be superseded while its deployment runs.
func TestCountOnly(t *testing.T) {
	count := &nomad.FieldDiff{Type: "Edited", Name: "Count", Old: "3", New: "12"}
	cases := []struct {
		name string
		diff *nomad.JobDiff
		want bool
	}{
		{"count", &nomad.JobDiff{Type: "Edited", TaskGroups: []*nomad.TaskGroupDiff{{Type: "Edited", Name: "web", Fields: []*nomad.FieldDiff{count}}}}, true},
		{"count and unchanged fields", &nomad.JobDiff{Type: "Edited", Fields: []*nomad.FieldDiff{{Type: "None", Name: "Priority"}},
			TaskGroups: []*nomad.TaskGroupDiff{{Type: "Edited", Name: "web", Fields: []*nomad.FieldDiff{count},
				Tasks: []*nomad.TaskDiff{{Type: "None", Name: "app"}}}, {Type: "None", Name: "db"}}}, true},
		{"image change", &nomad.JobDiff{Type: "Edited", TaskGroups: []*nomad.TaskGroupDiff{{Type: "Edited", Name: "web", Fields: []*nomad.FieldDiff{count},
			Tasks: []*nomad.TaskDiff{{Type: "Edited", Name: "app"}}}}}, false},
		{"job field", &nomad.JobDiff{Type: "Edited", Fields: []*nomad.FieldDiff{{Type: "Edited", Name: "Priority"}},
			TaskGroups: []*nomad.TaskGroupDiff{{Type: "Edited", Name: "web", Fields: []*nomad.FieldDiff{count}}}}, false},
		{"update block", &nomad.JobDiff{Type: "Edited", TaskGroups: []*nomad.TaskGroupDiff{{Type: "Edited", Name: "web", Fields: []*nomad.FieldDiff{count},
			Objects: []*nomad.ObjectDiff{{Type: "Edited", Name: "Update"}}}}}, false},
		{"no change", &nomad.JobDiff{Type: "None"}, false},
		{"nil", nil, false},
	}
	for _, c := range cases {
		if got := countOnly(c.diff); got != c.want {
			t.Errorf("%s: countOnly = %v, want %v", c.name, got, c.want)
		}
	}
}
