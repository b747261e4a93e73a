package cloudsim_test

import (
	"encoding/base64"
	"errors"
	"testing"
	"time"

	"github.com/aliyun/alibaba-cloud-sdk-go/sdk"
	"github.com/aliyun/alibaba-cloud-sdk-go/sdk/auth/credentials"
	sdkerrors "github.com/aliyun/alibaba-cloud-sdk-go/sdk/errors"
	"github.com/aliyun/alibaba-cloud-sdk-go/sdk/requests"
	"github.com/aliyun/alibaba-cloud-sdk-go/services/ecs"

	"github.com/spillwayhq/spillway/providers/cloudsim"
)

func stockECS(t *testing.T, secret string) *ecs.Client {
	t.Helper()
	cfg := sdk.NewConfig()
	cfg.AutoRetry = false
	client, err := ecs.NewClientWithOptions("cn-hangzhou", cfg, credentials.NewAccessKeyCredential(aliKey, secret))
	if err != nil {
		t.Fatal(err)
	}
	return client
}

func ecsCode(err error) string {
	var se *sdkerrors.ServerError
	if errors.As(err, &se) {
		return se.ErrorCode()
	}
	return ""
}

func TestECSLifecycleAndHooksOnFakeClock(t *testing.T) {
	hooks := &hookLog{}
	sim := start(t, testConfig(), cloudsim.WithBootHook(hooks.boot), cloudsim.WithTerminateHook(hooks.term))
	client := stockECS(t, aliSecret)
	run := ecs.CreateRunInstancesRequest()
	run.Domain, run.Scheme = sim.Addr(), "HTTP"
	run.InstanceType, run.ZoneId, run.ImageId = "ecs.g7.large", "cn-hangzhou-i", "fcos"
	run.Amount, run.MinAmount = requests.NewInteger(2), requests.NewInteger(1)
	run.UserData = base64.StdEncoding.EncodeToString([]byte("ignition!"))
	run.Tag = &[]ecs.RunInstancesTag{{Key: "spillway:pool", Value: "hz"}}
	out, err := client.RunInstances(run)
	if err != nil {
		t.Fatalf("RunInstances: %v", err)
	}
	ids := out.InstanceIdSets.InstanceIdSet
	if len(ids) != 2 {
		t.Fatalf("launched %v", ids)
	}
	status := func() string {
		t.Helper()
		d := ecs.CreateDescribeInstancesRequest()
		d.Domain, d.Scheme = sim.Addr(), "HTTP"
		d.InstanceIds = `["` + ids[0] + `"]`
		resp, err := client.DescribeInstances(d)
		if err != nil {
			t.Fatalf("DescribeInstances: %v", err)
		}
		if len(resp.Instances.Instance) == 0 {
			return "gone"
		}
		in := resp.Instances.Instance[0]
		if in.Tags.Tag[0].TagKey != "spillway:pool" || in.ZoneId != "cn-hangzhou-i" || len(in.VpcAttributes.PrivateIpAddress.IpAddress) != 1 {
			t.Fatalf("described instance = %+v", in)
		}
		return in.Status
	}
	if s := status(); s != "Pending" {
		t.Fatalf("status %s, want Pending", s)
	}
	sim.Advance(17 * time.Second)
	if s := status(); s != "Running" {
		t.Fatalf("status %s, want Running", s)
	}
	sim.Advance(20 * time.Second)
	if b, _ := hooks.counts(); b != 2 || hooks.boots[0].Provider != "alicloud" || string(hooks.boots[0].UserData) != "ignition!" {
		t.Fatalf("boot hooks = %+v", hooks.boots)
	}
	del := ecs.CreateDeleteInstancesRequest()
	del.Domain, del.Scheme = sim.Addr(), "HTTP"
	del.InstanceId = &[]string{ids[0]}
	if _, err := client.DeleteInstances(del); ecsCode(err) != "IncorrectInstanceStatus" {
		t.Fatalf("delete running without force: %v", err)
	}
	del.Force = requests.NewBoolean(true)
	if _, err := client.DeleteInstances(del); err != nil {
		t.Fatalf("delete with force: %v", err)
	}
	if s := status(); s != "gone" {
		t.Fatalf("deleted instance is %s", s)
	}
	if _, n := hooks.counts(); n != 1 {
		t.Fatalf("terminate hooks = %d", n)
	}
	if _, err := client.DeleteInstances(del); ecsCode(err) != "InvalidInstanceId.NotFound" {
		t.Fatalf("delete of deleted instance: %v", err)
	}
}

func TestECSNoStockAndBadSignature(t *testing.T) {
	sim := start(t, testConfig())
	sim.SetCapacity(cloudsim.CloudAlicloud, "cn-hangzhou-i", "ecs.g7.large", cloudsim.OnDemand, 1)
	run := ecs.CreateRunInstancesRequest()
	run.Domain, run.Scheme = sim.Addr(), "HTTP"
	run.InstanceType, run.ZoneId = "ecs.g7.large", "cn-hangzhou-i"
	run.Amount, run.MinAmount = requests.NewInteger(3), requests.NewInteger(2)
	if _, err := stockECS(t, aliSecret).RunInstances(run); ecsCode(err) != "OperationDenied.NoStock" {
		t.Fatalf("min 2 of stock 1: %v", err)
	}
	if _, err := stockECS(t, "wrong").RunInstances(run); ecsCode(err) != "SignatureDoesNotMatch" {
		t.Fatalf("wrong secret: %v", err)
	}
}
