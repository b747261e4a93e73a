package lab

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"time"

	nomad "github.com/hashicorp/nomad/api"
)

// The demo service's Nomad identity.
const (
	DemoJob     = "demo"
	DemoGroup   = "web"
	DemoTask    = "app"
	DemoService = "demo"
)

// DemoJobSpec is the demo service as a Nomad job: raw_exec instances of
// `spillway demo-app` on the hosts that serve the business unit (see
// pools.MetaServes), registered as a Nomad native service with an HTTP
// check.
func DemoJobSpec(spillway string, o DemoOptions) *nomad.Job {
	job := nomad.NewServiceJob(DemoJob, DemoJob, "global", 50)
	job.Datacenters = []string{Datacenter}
	// Node pool "all" and the serves constraint: the business unit's own
	// hosts, and the hosts Spillway borrows or rents for it.
	job.NodePool = ptr("all")
	job.Constrain(nomad.NewConstraint("${meta."+MetaServes+"}", "=", o.BusinessUnit))
	job.Meta = map[string]string{"spillway.business_unit": o.BusinessUnit}
	tg := nomad.NewTaskGroup(DemoGroup, o.Count)
	tg.Networks = []*nomad.NetworkResource{{DynamicPorts: []nomad.Port{{Label: "http"}}}}
	tg.Services = []*nomad.Service{{
		Name:      DemoService,
		PortLabel: "http",
		Provider:  "nomad",
		Checks: []nomad.ServiceCheck{{
			Name: "http", Type: "http", Path: "/healthz",
			Interval: 2 * time.Second, Timeout: time.Second,
		}},
	}}
	tg.EphemeralDisk = &nomad.EphemeralDisk{SizeMB: ptr(50)}
	tg.Update = &nomad.UpdateStrategy{
		MinHealthyTime:   ptr(time.Second),
		HealthyDeadline:  ptr(60 * time.Second),
		ProgressDeadline: ptr(2 * time.Minute),
	}
	capacity := o.Capacity
	if capacity <= 0 {
		capacity = 100
	}
	task := nomad.NewTask(DemoTask, "raw_exec").
		SetConfig("command", spillway).
		SetConfig("args", []string{"demo-app", "--listen", "${NOMAD_ADDR_http}", "--capacity", strconv.FormatFloat(capacity, 'f', -1, 64)})
	task.Resources = &nomad.Resources{CPU: ptr(250), MemoryMB: ptr(64)}
	task.KillTimeout = ptr(2 * time.Second)
	task.LogConfig = &nomad.LogConfig{MaxFiles: ptr(2), MaxFileSizeMB: ptr(5)}
	tg.AddTask(task)
	job.AddTaskGroup(tg)
	return job
}

func ptr[T any](v T) *T { return &v }

// RunDemo registers the demo job and waits until its instances are healthy.
func (l *Lab) RunDemo(ctx context.Context, o DemoOptions) error {
	if o.BusinessUnit == "" {
		return errors.New("demo: a business unit is required")
	}
	l.progress("demo service: running %d instances on %s's hosts", o.Count, o.BusinessUnit)
	if _, _, err := l.nomad.Jobs().Register(DemoJobSpec(l.opts.Spillway, o), nil); err != nil {
		return fmt.Errorf("registering the demo job: %w", err)
	}
	if err := l.WaitHealthy(ctx, DemoJob, o.Count, 2*time.Minute); err != nil {
		return err
	}
	// Nomad refuses to scale a job while its deployment runs: wait until
	// it is over, so the lab starts ready to scale.
	return l.WaitDeployment(ctx, DemoJob, time.Minute)
}

// WaitDeployment waits until the deployment of job's current version has
// ended. Nomad refuses to change the count of a job while one runs, and a
// count change itself starts one (the demo has an update block).
func (l *Lab) WaitDeployment(ctx context.Context, job string, timeout time.Duration) error {
	return l.waitFor(ctx, "job "+job+" deployment", timeout, nil, func(context.Context) error {
		j, _, err := l.nomad.Jobs().Info(job, nil)
		if err != nil {
			return err
		}
		d, _, err := l.nomad.Jobs().LatestDeployment(job, nil)
		if err != nil {
			return err
		}
		switch {
		case d == nil || j.Version == nil || d.JobVersion < *j.Version:
			return fmt.Errorf("no deployment of version %d yet", *j.Version)
		case d.Status == nomad.DeploymentStatusRunning:
			return fmt.Errorf("deployment %s is %s", d.ID[:8], d.Status)
		}
		return nil
	})
}

// WaitHealthy waits until job has want running allocations whose
// deployment health is good.
func (l *Lab) WaitHealthy(ctx context.Context, job string, want int, timeout time.Duration) error {
	return l.waitFor(ctx, "job "+job, timeout, nil, func(context.Context) error {
		allocs, _, err := l.nomad.Jobs().Allocations(job, false, nil)
		if err != nil {
			return err
		}
		healthy := 0
		for _, a := range allocs {
			if a.ClientStatus == nomad.AllocClientStatusRunning && a.DeploymentStatus != nil &&
				a.DeploymentStatus.Healthy != nil && *a.DeploymentStatus.Healthy {
				healthy++
			}
		}
		if healthy < want {
			return fmt.Errorf("%d of %d allocations healthy", healthy, want)
		}
		return nil
	})
}

// StartLoad runs the load generator against the demo service. It stops
// with the lab, or by itself when the trace ends (unless it loops).
func (l *Lab) StartLoad(o LoadOptions) (*process, error) {
	if o.Speed == 0 {
		o.Speed = 1
	}
	if o.Scale == 0 {
		o.Scale = 1
	}
	trace, err := filepath.Abs(o.Trace)
	if err != nil {
		return nil, err
	}
	o.Trace = trace
	args := []string{"demo-load", "--trace", o.Trace, "--nomad-address", l.NomadAddr, "--service", DemoService,
		"--speed", strconv.FormatFloat(o.Speed, 'f', -1, 64), "--scale", strconv.FormatFloat(o.Scale, 'f', -1, 64)}
	if o.Loop {
		args = append(args, "--loop")
	}
	l.progress("load generator: playing %s at %gx speed", o.Trace, o.Speed)
	return l.startProcess("demo-load", l.opts.Spillway, args, nil, nil)
}
