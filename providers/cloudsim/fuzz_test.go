package cloudsim

import (
	"net/url"
	"sort"
	"testing"
	"time"
)

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte("seed: 1\naws:\n  offerings:\n  - {instanceType: m5.large, zone: a, capacityType: spot, capacity: 2}\n"))
	f.Add([]byte("latency: {boot: 3s}\nerrorRate: 2\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := ParseConfig(data)
		if err == nil {
			if _, err := New(cfg); err != nil {
				t.Fatalf("parsed config rejected by New: %v", err)
			}
		}
	})
}

// FuzzActions feeds arbitrary parameters to every cloud action, past
// authentication: no input may panic the simulator.
func FuzzActions(f *testing.F) {
	f.Add("RunInstances", "MinCount=1&MaxCount=2&InstanceType=m5.large&TagSpecification.1.Tag.1.Key=a")
	f.Add("CreateFleet", "Type=instant&TargetCapacitySpecification.TotalTargetCapacity=3&TargetCapacitySpecification.DefaultTargetCapacityType=spot&LaunchTemplateConfigs.1.LaunchTemplateSpecification.LaunchTemplateId=lt-1&LaunchTemplateConfigs.1.Overrides.1.InstanceType=m5.large")
	f.Add("DescribeInstances", "Filter.1.Name=tag:a&Filter.1.Value.1=b&MaxResults=5&NextToken=Y2xvdWRzaW06MQ")
	f.Add("DescribeInstances", "InstanceIds=[\"i-1\"]&Tag.1.Key=a&MaxResults=2")
	f.Add("DeleteInstances", "InstanceId.1=i-1&Force=true")
	f.Fuzz(func(t *testing.T, action, query string) {
		params, err := url.ParseQuery(query)
		if err != nil {
			return
		}
		zero := 0.0
		s, err := New(Config{ErrorRate: &zero,
			AWS: CloudConfig{Offerings: []OfferingConfig{{InstanceType: "m5.large", Zone: "us-east-1a", CapacityType: Spot}},
				LaunchTemplates: []LaunchTemplate{{ID: "lt-1"}}},
			Alicloud: CloudConfig{Offerings: []OfferingConfig{{InstanceType: "ecs.g7.large", Zone: "cn-hangzhou-i", CapacityType: OnDemand}}},
		}, WithClock(NewFakeClock(time.Unix(0, 0))))
		if err != nil {
			t.Fatal(err)
		}
		if h, ok := ec2Actions[action]; ok {
			h(s, &apiRequest{cloud: CloudAWS, action: action, params: params, account: Account{ID: "1"}, region: "us-east-1"})
		}
		if h, ok := ecsActions[action]; ok {
			h(s, &apiRequest{cloud: CloudAlicloud, action: action, params: params, account: Account{ID: "1"}, region: "cn-hangzhou"})
		}
		s.Step()
	})
}

func TestListIndexesOrdersNumerically(t *testing.T) {
	p := url.Values{"Tag.10.Key": {"x"}, "Tag.2.Key": {"y"}, "Tag.1": {"z"}, "Tags.3": {"no"}}
	got := listIndexes(p, "Tag")
	if !sort.SliceIsSorted(got, func(i, j int) bool { return len(got[i]) < len(got[j]) || len(got[i]) == len(got[j]) && got[i] < got[j] }) ||
		len(got) != 3 || got[0] != "1" || got[2] != "10" {
		t.Fatalf("listIndexes = %v", got)
	}
}
