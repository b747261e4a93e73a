package cloudsim

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"go.yaml.in/yaml/v3"
)

// Cloud names, as they appear in hooks, faults and the test API.
const (
	CloudAWS      = "aws"
	CloudAlicloud = "alicloud"
)

// Capacity types of an offering.
const (
	Spot     = "spot"
	OnDemand = "on-demand"
)

// Config describes the simulated clouds. It is loaded strictly from YAML
// (unknown keys are errors); see examples/cloudsim.yaml.
type Config struct {
	// Seed makes IDs, lifecycle durations and random faults reproducible.
	Seed int64 `yaml:"seed"`
	// TimeScale multiplies every simulated latency when the simulator runs
	// on the wall clock: 0.1 makes the lab ten times faster. Default 1.
	TimeScale float64 `yaml:"timeScale"`
	// ErrorRate is the probability of a random 5xx answer to a cloud API
	// request. Nil means the default, 1%; tests set it to 0 explicitly.
	ErrorRate *float64    `yaml:"errorRate"`
	Latency   Latency     `yaml:"latency"`
	AWS       CloudConfig `yaml:"aws"`
	Alicloud  CloudConfig `yaml:"alicloud"`
}

// Latency holds the simulated durations. The defaults come from published
// measurements of EC2 launches.
type Latency struct {
	// API is how long a launch request (RunInstances, CreateFleet) takes to
	// answer. Applied on the wall clock only. Default 1.5s.
	API time.Duration `yaml:"api"`
	// PendingMin and PendingMax bound the uniformly drawn pending→running
	// time. Default 5s–17s.
	PendingMin time.Duration `yaml:"pendingMin"`
	PendingMax time.Duration `yaml:"pendingMax"`
	// Boot is how long the OS takes to boot after running; the boot hook
	// fires then. Default 20s.
	Boot time.Duration `yaml:"boot"`
	// ShuttingDown is how long an EC2 instance stays shutting-down. Default 5s.
	ShuttingDown time.Duration `yaml:"shuttingDown"`
	// TerminatedRetention is how long terminated EC2 instances stay visible
	// to DescribeInstances. Default 1h.
	TerminatedRetention time.Duration `yaml:"terminatedRetention"`
	// DescribeLag is the eventual consistency of both clouds' APIs: for this
	// long after its launch, an instance is invisible to DescribeInstances
	// (by ID, EC2 answers InvalidInstanceID.NotFound) and to a terminate or
	// delete by ID, which answers not found too, although the instance
	// runs. Default 0 (off; negative is off too); the lab turns it on.
	DescribeLag time.Duration `yaml:"describeLag"`
	// SpotNotice is how long a spot instance runs on after its
	// interruption notice (InterruptSpot) before the cloud reclaims it.
	// Default 2m, EC2's notice.
	SpotNotice time.Duration `yaml:"spotNotice"`
}

// CloudConfig describes one simulated cloud.
type CloudConfig struct {
	// Region is the one region simulated. Default us-east-1 (aws) or
	// cn-hangzhou (alicloud).
	Region string `yaml:"region"`
	// Accounts are the credentials the simulator accepts.
	Accounts []Account `yaml:"accounts"`
	// Subnets maps subnet (aws) or vSwitch (alicloud) IDs to zones.
	Subnets map[string]string `yaml:"subnets"`
	// Offerings are the instance type × zone × capacity type combinations
	// the cloud sells.
	Offerings []OfferingConfig `yaml:"offerings"`
	// LaunchTemplates CreateFleet can launch from (aws only).
	LaunchTemplates []LaunchTemplate `yaml:"launchTemplates"`
	Quota           Quota            `yaml:"quota"`
	Throttle        Throttle         `yaml:"throttle"`
}

// Account is one set of credentials.
type Account struct {
	// ID is the account (owner) ID. Default "123456789012".
	ID              string `yaml:"id"`
	AccessKeyID     string `yaml:"accessKeyId"`
	SecretAccessKey string `yaml:"secretAccessKey"`
}

// OfferingConfig is one offering and its capacity.
type OfferingConfig struct {
	InstanceType string `yaml:"instanceType"`
	Zone         string `yaml:"zone"`
	// CapacityType is "spot" or "on-demand".
	CapacityType string `yaml:"capacityType"`
	// Capacity is how many more instances can launch; omitted is unlimited.
	Capacity *int `yaml:"capacity"`
	// Price is the hourly price (spot price for spot offerings).
	Price float64 `yaml:"price"`
}

// LaunchTemplate is an EC2 launch template.
type LaunchTemplate struct {
	ID           string `yaml:"id"`
	Name         string `yaml:"name"`
	ImageID      string `yaml:"imageId"`
	InstanceType string `yaml:"instanceType"`
	// UserData is the template's user data, as plain text (not base64).
	UserData string `yaml:"userData"`
}

// Quota limits an account. Zero means unlimited.
type Quota struct {
	// Instances caps live (not terminated) instances per account.
	Instances int `yaml:"instances"`
}

// Throttle configures token-bucket API rate limiting, per account.
type Throttle struct {
	Disabled bool `yaml:"disabled"`
	// Describe limits read requests. Default burst 100, 20/s.
	Describe Bucket `yaml:"describe"`
	// Mutate limits other writes (terminate, tags). Default burst 50, 5/s.
	Mutate Bucket `yaml:"mutate"`
	// Launch limits launch requests. Default burst 5, 2/s.
	Launch Bucket `yaml:"launch"`
	// Instances limits instances launched (EC2's RunInstances resource
	// bucket). Default burst 1000, refilling 2 instances/s.
	Instances Bucket `yaml:"instances"`
}

// Bucket is a token bucket: Burst tokens, refilled at Rate per second.
type Bucket struct {
	Burst float64 `yaml:"burst"`
	Rate  float64 `yaml:"rate"`
}

// LoadConfig reads a YAML config file strictly and applies defaults.
func LoadConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("reading cloudsim config: %w", err)
	}
	cfg, err := ParseConfig(data)
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

// ParseConfig decodes a YAML config strictly and applies defaults.
func ParseConfig(data []byte) (Config, error) {
	var cfg Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
		return Config{}, fmt.Errorf("decoding cloudsim config: %w", err)
	}
	cfg.applyDefaults()
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

func (c *Config) applyDefaults() {
	if c.TimeScale == 0 {
		c.TimeScale = 1
	}
	if c.ErrorRate == nil {
		r := 0.01
		c.ErrorRate = &r
	}
	l := &c.Latency
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&l.API, 1500*time.Millisecond)
	def(&l.PendingMin, 5*time.Second)
	def(&l.PendingMax, 17*time.Second)
	def(&l.Boot, 20*time.Second)
	def(&l.ShuttingDown, 5*time.Second)
	def(&l.TerminatedRetention, time.Hour)
	def(&l.SpotNotice, 2*time.Minute)
	c.AWS.applyDefaults("us-east-1")
	c.Alicloud.applyDefaults("cn-hangzhou")
}

func (c *CloudConfig) applyDefaults(region string) {
	if c.Region == "" {
		c.Region = region
	}
	for i := range c.Accounts {
		if c.Accounts[i].ID == "" {
			c.Accounts[i].ID = "123456789012"
		}
	}
	t := &c.Throttle
	defBucket := func(b *Bucket, burst, rate float64) {
		if b.Burst == 0 {
			b.Burst = burst
		}
		if b.Rate == 0 {
			b.Rate = rate
		}
	}
	defBucket(&t.Describe, 100, 20)
	defBucket(&t.Mutate, 50, 5)
	defBucket(&t.Launch, 5, 2)
	defBucket(&t.Instances, 1000, 2)
}

// Validate reports every problem in the config.
func (c Config) Validate() error {
	var errs []error
	if c.TimeScale < 0 {
		errs = append(errs, fmt.Errorf("timeScale must not be negative"))
	}
	if c.ErrorRate != nil && (*c.ErrorRate < 0 || *c.ErrorRate > 1) {
		errs = append(errs, fmt.Errorf("errorRate must be between 0 and 1"))
	}
	if c.Latency.SpotNotice < 0 {
		errs = append(errs, fmt.Errorf("latency.spotNotice must not be negative"))
	}
	if c.Latency.PendingMax < c.Latency.PendingMin {
		errs = append(errs, fmt.Errorf("latency.pendingMax is below latency.pendingMin"))
	}
	for name, cc := range map[string]CloudConfig{CloudAWS: c.AWS, CloudAlicloud: c.Alicloud} {
		for i, a := range cc.Accounts {
			if a.AccessKeyID == "" || a.SecretAccessKey == "" {
				errs = append(errs, fmt.Errorf("%s.accounts[%d]: accessKeyId and secretAccessKey are required", name, i))
			}
		}
		seen := map[string]bool{}
		for i, o := range cc.Offerings {
			if o.InstanceType == "" || o.Zone == "" {
				errs = append(errs, fmt.Errorf("%s.offerings[%d]: instanceType and zone are required", name, i))
			}
			if o.CapacityType != Spot && o.CapacityType != OnDemand {
				errs = append(errs, fmt.Errorf("%s.offerings[%d]: capacityType must be %q or %q, not %q", name, i, Spot, OnDemand, o.CapacityType))
			}
			if o.Capacity != nil && *o.Capacity < 0 {
				errs = append(errs, fmt.Errorf("%s.offerings[%d]: capacity must not be negative", name, i))
			}
			key := offeringKey(name, o.Zone, o.InstanceType, o.CapacityType)
			if seen[key] {
				errs = append(errs, fmt.Errorf("%s.offerings[%d]: duplicate offering %s", name, i, key))
			}
			seen[key] = true
		}
		for i, lt := range cc.LaunchTemplates {
			if lt.ID == "" && lt.Name == "" {
				errs = append(errs, fmt.Errorf("%s.launchTemplates[%d]: id or name is required", name, i))
			}
		}
	}
	return errors.Join(errs...)
}

func offeringKey(cloud, zone, instanceType, capacityType string) string {
	return cloud + "/" + instanceType + "/" + zone + "/" + capacityType
}
