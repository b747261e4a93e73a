package cloudsim_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"

	"github.com/spillwayhq/spillway/providers/cloudsim"
)

const (
	awsKey    = "AKIDCLOUDSIM"
	awsSecret = "cloudsim-secret"
	aliKey    = "LTAIcloudsim"
	aliSecret = "cloudsim-ali-secret"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func testConfig() cloudsim.Config {
	zero := 0.0
	return cloudsim.Config{
		Seed:      1,
		ErrorRate: &zero,
		Latency:   cloudsim.Latency{PendingMin: 5 * time.Second, PendingMax: 17 * time.Second, Boot: 20 * time.Second},
		AWS: cloudsim.CloudConfig{
			Accounts: []cloudsim.Account{{AccessKeyID: awsKey, SecretAccessKey: awsSecret}},
			Offerings: []cloudsim.OfferingConfig{
				{InstanceType: "m5.large", Zone: "us-east-1a", CapacityType: cloudsim.OnDemand, Price: 0.096},
				{InstanceType: "m5.large", Zone: "us-east-1a", CapacityType: cloudsim.Spot, Price: 0.04},
			},
		},
		Alicloud: cloudsim.CloudConfig{
			Accounts: []cloudsim.Account{{AccessKeyID: aliKey, SecretAccessKey: aliSecret}},
			Offerings: []cloudsim.OfferingConfig{
				{InstanceType: "ecs.g7.large", Zone: "cn-hangzhou-i", CapacityType: cloudsim.OnDemand, Price: 0.11},
			},
		},
	}
}

type hookLog struct {
	mu    sync.Mutex
	boots []cloudsim.InstanceEvent
	terms []cloudsim.InstanceEvent
}

func (h *hookLog) boot(_ context.Context, ev cloudsim.InstanceEvent) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.boots = append(h.boots, ev)
}

func (h *hookLog) term(_ context.Context, ev cloudsim.InstanceEvent) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.terms = append(h.terms, ev)
}

func (h *hookLog) counts() (int, int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.boots), len(h.terms)
}

func start(t *testing.T, cfg cloudsim.Config, opts ...cloudsim.Option) *cloudsim.Simulator {
	t.Helper()
	sim, err := cloudsim.New(cfg, append([]cloudsim.Option{cloudsim.WithClock(cloudsim.NewFakeClock(t0))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	return sim
}

// stockEC2 is an unmodified aws-sdk-go-v2 EC2 client pointed at sim.
func stockEC2(sim *cloudsim.Simulator, key, secret string, maxAttempts int) *ec2.Client {
	return ec2.New(ec2.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(sim.URL()),
		Credentials:  credentials.NewStaticCredentialsProvider(key, secret, ""),
		HTTPClient:   awshttp.NewBuildableClient(),
		Retryer: retry.NewStandard(func(o *retry.StandardOptions) {
			o.MaxAttempts = maxAttempts
			o.Backoff = retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) { return time.Millisecond, nil })
		}),
	})
}

func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

func TestEC2LifecycleAndHooksOnFakeClock(t *testing.T) {
	hooks := &hookLog{}
	sim := start(t, testConfig(), cloudsim.WithBootHook(hooks.boot), cloudsim.WithTerminateHook(hooks.term))
	client := stockEC2(sim, awsKey, awsSecret, 1)
	ctx := context.Background()
	out, err := client.RunInstances(ctx, &ec2.RunInstancesInput{
		ImageId: aws.String("ami-1"), InstanceType: types.InstanceTypeM5Large,
		MinCount: aws.Int32(2), MaxCount: aws.Int32(2),
		UserData: aws.String(base64.StdEncoding.EncodeToString([]byte("#!ignition payload"))),
		TagSpecifications: []types.TagSpecification{{ResourceType: types.ResourceTypeInstance,
			Tags: []types.Tag{{Key: aws.String("spillway:pool"), Value: aws.String("p1")}}}},
	})
	if err != nil {
		t.Fatalf("RunInstances: %v", err)
	}
	if len(out.Instances) != 2 || out.Instances[0].State.Name != types.InstanceStateNamePending {
		t.Fatalf("RunInstances returned %+v", out.Instances)
	}
	id := aws.ToString(out.Instances[0].InstanceId)
	state := func() types.InstanceStateName {
		t.Helper()
		d, err := client.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{id}})
		if err != nil {
			t.Fatalf("DescribeInstances: %v", err)
		}
		return d.Reservations[0].Instances[0].State.Name
	}
	sim.Advance(17 * time.Second)
	if got := state(); got != types.InstanceStateNameRunning {
		t.Fatalf("after 17s state = %s, want running", got)
	}
	if b, _ := hooks.counts(); b != 0 {
		t.Fatalf("boot hook ran before the OS booted")
	}
	sim.Advance(20 * time.Second)
	if b, _ := hooks.counts(); b != 2 {
		t.Fatalf("boot hook ran %d times, want 2", b)
	}
	ev := hooks.boots[0]
	if ev.Provider != "aws" || string(ev.UserData) != "#!ignition payload" || ev.Tags["spillway:pool"] != "p1" || ev.InstanceID == "" {
		t.Fatalf("boot event = %+v", ev)
	}
	if _, err := client.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{id}}); err != nil {
		t.Fatalf("TerminateInstances: %v", err)
	}
	if got := state(); got != types.InstanceStateNameShuttingDown {
		t.Fatalf("after terminate state = %s", got)
	}
	if _, n := hooks.counts(); n != 1 || !hooks.terms[0].Booted {
		t.Fatalf("terminate hook: %+v", hooks.terms)
	}
	sim.Advance(time.Minute)
	if got := state(); got != types.InstanceStateNameTerminated {
		t.Fatalf("after shutdown state = %s", got)
	}
	sim.Advance(2 * time.Hour)
	_, err = client.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{id}})
	if apiCode(err) != "InvalidInstanceID.NotFound" {
		t.Fatalf("describe after retention: %v", err)
	}
}

func TestEC2RejectsBadCredentials(t *testing.T) {
	sim := start(t, testConfig())
	_, err := stockEC2(sim, awsKey, "wrong", 3).DescribeInstances(context.Background(), &ec2.DescribeInstancesInput{})
	if apiCode(err) != "SignatureDoesNotMatch" {
		t.Fatalf("wrong secret: %v", err)
	}
	_, err = stockEC2(sim, "AKIDUNKNOWN", awsSecret, 3).DescribeInstances(context.Background(), &ec2.DescribeInstancesInput{})
	if apiCode(err) != "AuthFailure" {
		t.Fatalf("unknown key: %v", err)
	}
	if n := sim.Requests(cloudsim.CloudAWS, "DescribeInstances"); n != 0 {
		t.Fatalf("unauthenticated requests reached the API: %d", n)
	}
}

func TestEC2InstanceBucketRefillsTwoPerSecond(t *testing.T) {
	cfg := testConfig()
	cfg.AWS.Throttle.Instances = cloudsim.Bucket{Burst: 4} // rate defaults to 2/s
	sim := start(t, cfg)
	client := stockEC2(sim, awsKey, awsSecret, 1)
	run := func(n int32) error {
		_, err := client.RunInstances(context.Background(), &ec2.RunInstancesInput{
			ImageId: aws.String("ami-1"), InstanceType: types.InstanceTypeM5Large, MinCount: aws.Int32(n), MaxCount: aws.Int32(n)})
		return err
	}
	if err := run(4); err != nil {
		t.Fatal(err)
	}
	if err := run(1); apiCode(err) != "RequestLimitExceeded" {
		t.Fatalf("5th instance: err = %v, want RequestLimitExceeded", err)
	}
	sim.Advance(500 * time.Millisecond)
	if err := run(1); err != nil {
		t.Fatalf("after 0.5s one instance should be allowed: %v", err)
	}
	if err := run(1); apiCode(err) != "RequestLimitExceeded" {
		t.Fatalf("bucket refilled too fast: %v", err)
	}
}

func TestEC2InsufficientCapacityAndQuota(t *testing.T) {
	cfg := testConfig()
	cfg.AWS.Quota.Instances = 5
	sim := start(t, cfg)
	sim.SetCapacity(cloudsim.CloudAWS, "us-east-1a", "m5.large", cloudsim.OnDemand, 3)
	client := stockEC2(sim, awsKey, awsSecret, 1)
	run := func(minN, maxN int32) (*ec2.RunInstancesOutput, error) {
		return client.RunInstances(context.Background(), &ec2.RunInstancesInput{
			ImageId: aws.String("ami-1"), InstanceType: types.InstanceTypeM5Large, MinCount: aws.Int32(minN), MaxCount: aws.Int32(maxN)})
	}
	if _, err := run(4, 4); apiCode(err) != "InsufficientInstanceCapacity" {
		t.Fatalf("min 4 of capacity 3: %v", err)
	}
	out, err := run(1, 5)
	if err != nil || len(out.Instances) != 3 {
		t.Fatalf("min 1 max 5 of capacity 3: %v", err)
	}
	sim.SetCapacity(cloudsim.CloudAWS, "us-east-1a", "m5.large", cloudsim.OnDemand, -1)
	if _, err := run(3, 3); apiCode(err) != "InstanceLimitExceeded" {
		t.Fatalf("over quota: %v", err)
	}
}

func TestRandomServerErrors(t *testing.T) {
	cfg := testConfig()
	one := 1.0
	cfg.ErrorRate = &one
	sim := start(t, cfg)
	_, err := stockEC2(sim, awsKey, awsSecret, 2).DescribeInstances(context.Background(), &ec2.DescribeInstancesInput{})
	var re *awshttp.ResponseError
	if !errors.As(err, &re) || re.HTTPStatusCode() < 500 {
		t.Fatalf("error rate 1: err = %v, want a 5xx", err)
	}
	if n := sim.Requests(cloudsim.CloudAWS, "DescribeInstances"); n != 2 {
		t.Fatalf("SDK retried %d times, want 2 attempts", n)
	}
}

func TestDeterministicUnderSeed(t *testing.T) {
	ids := func() []string {
		sim := start(t, testConfig())
		out, err := stockEC2(sim, awsKey, awsSecret, 1).RunInstances(context.Background(), &ec2.RunInstancesInput{
			ImageId: aws.String("ami-1"), InstanceType: types.InstanceTypeM5Large, MinCount: aws.Int32(3), MaxCount: aws.Int32(3)})
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, in := range out.Instances {
			ids = append(ids, aws.ToString(in.InstanceId)+"@"+in.LaunchTime.String())
		}
		sim.Advance(10 * time.Second)
		for _, in := range sim.Instances(cloudsim.CloudAWS) {
			ids = append(ids, in.State)
		}
		return ids
	}
	a, b := ids(), ids()
	if strings.Join(a, ",") != strings.Join(b, ",") {
		t.Fatalf("same seed, different runs:\n%v\n%v", a, b)
	}
}

func TestSpotInterruption(t *testing.T) {
	hooks := &hookLog{}
	sim := start(t, testConfig(), cloudsim.WithTerminateHook(hooks.term))
	ctx := context.Background()
	client := stockEC2(sim, awsKey, awsSecret, 1)
	out, err := client.RunInstances(ctx, &ec2.RunInstancesInput{
		ImageId: aws.String("ami-1"), InstanceType: types.InstanceTypeM5Large, MinCount: aws.Int32(1), MaxCount: aws.Int32(1),
		InstanceMarketOptions: &types.InstanceMarketOptionsRequest{MarketType: types.MarketTypeSpot}})
	if err != nil {
		t.Fatal(err)
	}
	id := aws.ToString(out.Instances[0].InstanceId)
	sir := aws.ToString(out.Instances[0].SpotInstanceRequestId)
	if sir == "" {
		t.Fatal("a spot instance has no spot instance request")
	}
	sim.Advance(time.Minute)
	request := func() types.SpotInstanceRequest {
		t.Helper()
		r, err := client.DescribeSpotInstanceRequests(ctx, &ec2.DescribeSpotInstanceRequestsInput{
			Filters: []types.Filter{{Name: aws.String("instance-id"), Values: []string{id}}}})
		if err != nil {
			t.Fatal(err)
		}
		if len(r.SpotInstanceRequests) != 1 || aws.ToString(r.SpotInstanceRequests[0].SpotInstanceRequestId) != sir {
			t.Fatalf("spot requests of %s = %+v", id, r.SpotInstanceRequests)
		}
		return r.SpotInstanceRequests[0]
	}
	if r := request(); aws.ToString(r.Status.Code) != "fulfilled" || r.State != types.SpotInstanceStateActive {
		t.Fatalf("spot request before the notice: %s %s", r.State, aws.ToString(r.Status.Code))
	}
	if err := sim.InterruptSpot(id); err != nil {
		t.Fatal(err)
	}
	noticed := sim.Now()
	r := request()
	if aws.ToString(r.Status.Code) != "marked-for-termination" || !aws.ToTime(r.Status.UpdateTime).Equal(noticed.Truncate(time.Millisecond)) {
		t.Fatalf("spot request after the notice: %s at %v, want marked-for-termination at %v", aws.ToString(r.Status.Code), r.Status.UpdateTime, noticed)
	}
	state := func() *types.Instance {
		t.Helper()
		d, err := client.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{id}})
		if err != nil {
			t.Fatal(err)
		}
		return &d.Reservations[0].Instances[0]
	}
	// The notice is a notice: the instance runs on for its two minutes.
	sim.Advance(119 * time.Second)
	if in := state(); in.State.Name != types.InstanceStateNameRunning {
		t.Fatalf("instance %s is %s before its notice ran out", id, in.State.Name)
	}
	sim.Advance(time.Second)
	in := state()
	if in.State.Name != types.InstanceStateNameShuttingDown || aws.ToString(in.StateReason.Code) != "Server.SpotInstanceTermination" ||
		in.InstanceLifecycle != types.InstanceLifecycleTypeSpot {
		t.Fatalf("interrupted instance = %+v %+v", in.State, in.StateReason)
	}
	if r := request(); r.State != types.SpotInstanceStateClosed || aws.ToString(r.Status.Code) != "instance-terminated-no-capacity" {
		t.Fatalf("spot request after the reclaim: %s %s", r.State, aws.ToString(r.Status.Code))
	}
	if _, n := hooks.counts(); n != 1 {
		t.Fatalf("terminate hook ran %d times", n)
	}
}

func TestAdminAPI(t *testing.T) {
	sim := start(t, testConfig())
	post := func(path, body string) int {
		t.Helper()
		resp, err := http.Post(sim.URL()+path, "application/json", bytes.NewBufferString(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if c := post("/_cloudsim/v1/capacity", `{"cloud":"aws","zone":"us-east-1a","instanceType":"m5.large","capacityType":"on-demand","capacity":1}`); c != 200 {
		t.Fatalf("set capacity: %d", c)
	}
	if got := sim.Capacity(cloudsim.CloudAWS, "us-east-1a", "m5.large", cloudsim.OnDemand); got != 1 {
		t.Fatalf("capacity = %d", got)
	}
	if c := post("/_cloudsim/v1/faults", `{"cloud":"aws","action":"DescribeInstances","kind":"throttle","count":1}`); c != 200 {
		t.Fatalf("inject fault: %d", c)
	}
	client := stockEC2(sim, awsKey, awsSecret, 1)
	if _, err := client.DescribeInstances(context.Background(), &ec2.DescribeInstancesInput{}); apiCode(err) != "RequestLimitExceeded" {
		t.Fatalf("injected throttle: %v", err)
	}
	if _, err := client.RunInstances(context.Background(), &ec2.RunInstancesInput{ImageId: aws.String("ami-1"),
		InstanceType: types.InstanceTypeM5Large, MinCount: aws.Int32(1), MaxCount: aws.Int32(1)}); err != nil {
		t.Fatal(err)
	}
	if c := post("/_cloudsim/v1/clock/advance", `{"duration":"1m"}`); c != 200 {
		t.Fatalf("advance: %d", c)
	}
	resp, err := http.Get(sim.URL() + "/_cloudsim/v1/instances?cloud=aws")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list []cloudsim.Instance
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].State != "running" {
		t.Fatalf("instances = %+v", list)
	}
	if c := post("/_cloudsim/v1/instances/"+list[0].ID+"/terminate", ``); c != 200 {
		t.Fatalf("terminate: %d", c)
	}
	if c := post("/_cloudsim/v1/faults", `{"kind":"nonsense"}`); c != 400 {
		t.Fatalf("bad fault accepted: %d", c)
	}
}

func TestConfigIsStrictAndExampleLoads(t *testing.T) {
	if _, err := cloudsim.ParseConfig([]byte("aws:\n  regoin: us-east-1\n")); err == nil || !strings.Contains(err.Error(), "regoin") {
		t.Fatalf("unknown key: err = %v", err)
	}
	if _, err := cloudsim.ParseConfig([]byte("aws:\n  offerings:\n  - {instanceType: m5.large, zone: a, capacityType: reserved}\n")); err == nil {
		t.Fatal("bad capacity type accepted")
	}
	cfg, err := cloudsim.ParseConfig(nil)
	if err != nil || *cfg.ErrorRate != 0.01 || cfg.Latency.Boot != 20*time.Second || cfg.AWS.Throttle.Instances.Rate != 2 {
		t.Fatalf("defaults: %+v, %v", cfg, err)
	}
	if _, err := os.Stat("../../examples/cloudsim.yaml"); err == nil {
		if _, err := cloudsim.LoadConfig("../../examples/cloudsim.yaml"); err != nil {
			t.Fatalf("example config: %v", err)
		}
	}
}

func TestHookMayCallBackIntoSimulator(t *testing.T) {
	var sim *cloudsim.Simulator
	seen := 0
	sim = start(t, testConfig(), cloudsim.WithBootHook(func(_ context.Context, ev cloudsim.InstanceEvent) {
		seen += len(sim.Instances(ev.Provider)) // re-enters Step
		sim.Advance(time.Second)
	}))
	if _, err := stockEC2(sim, awsKey, awsSecret, 1).RunInstances(context.Background(), &ec2.RunInstancesInput{
		ImageId: aws.String("ami-1"), InstanceType: types.InstanceTypeM5Large, MinCount: aws.Int32(3), MaxCount: aws.Int32(3)}); err != nil {
		t.Fatal(err)
	}
	sim.Advance(time.Minute)
	if seen != 9 {
		t.Fatalf("hooks saw %d instances, want 3 hooks × 3", seen)
	}
}

// TestNextEventIsTheNextLifecycleStep: stepping to NextEvent, and only
// there, moves an instance from pending to running and then boots it, so
// a simulation that owns the clock sees each at its moment.
func TestNextEventIsTheNextLifecycleStep(t *testing.T) {
	hooks := &hookLog{}
	sim := start(t, testConfig(), cloudsim.WithBootHook(hooks.boot))
	if _, ok := sim.NextEvent(); ok {
		t.Fatal("an empty cloud has a next event")
	}
	client := stockEC2(sim, awsKey, awsSecret, 1)
	ctx := context.Background()
	out, err := client.RunInstances(ctx, &ec2.RunInstancesInput{ImageId: aws.String("ami-1"), InstanceType: types.InstanceTypeM5Large,
		MinCount: aws.Int32(1), MaxCount: aws.Int32(1)})
	if err != nil {
		t.Fatalf("RunInstances: %v", err)
	}
	id := aws.ToString(out.Instances[0].InstanceId)
	stateAt := func(at time.Time) string {
		t.Helper()
		sim.Advance(at.Sub(sim.Now()))
		for _, in := range sim.Instances(cloudsim.CloudAWS) {
			if in.ID == id {
				return in.State
			}
		}
		t.Fatalf("%s is gone", id)
		return ""
	}
	running, ok := sim.NextEvent()
	if !ok || !running.After(sim.Now()) {
		t.Fatalf("next event %v, %v at %v", running, ok, sim.Now())
	}
	if got := stateAt(running.Add(-time.Nanosecond)); got != "pending" {
		t.Fatalf("just before the next event: %s", got)
	}
	if got := stateAt(running); got != "running" {
		t.Fatalf("at the next event: %s", got)
	}
	boot, ok := sim.NextEvent()
	if !ok || !boot.After(running) {
		t.Fatalf("next event after running: %v, %v", boot, ok)
	}
	stateAt(boot.Add(-time.Nanosecond))
	if b, _ := hooks.counts(); b != 0 {
		t.Fatal("booted before its next event")
	}
	stateAt(boot)
	if b, _ := hooks.counts(); b != 1 {
		t.Fatalf("boot hook ran %d times at the next event, want 1", b)
	}
	if _, ok := sim.NextEvent(); ok {
		t.Fatal("a booted, running instance has a next event")
	}
}
