package scalesim

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"path"
	"strings"
	"sync"

	ignition "github.com/coreos/ignition/v2/config/v3_5"
	nomad "github.com/hashicorp/nomad/api"
	"github.com/vincent-petithory/dataurl"

	"github.com/spillwayhq/spillway/providers/bootstrap"
	"github.com/spillwayhq/spillway/providers/cloudsim"
)

// nodeOfInstance is the Nomad node a booted instance registers: what the
// Nomad client config in its Ignition user data says (datacenter, node
// pool and class, meta), with the instance ID its metadata unit adds
// (bootstrap.MetaInstance), as the lab's hosts do; cpu and memory are its
// offering's.
//
// The config is parsed once per distinct user data (once per claim): an
// Ignition parse and validation is heavy, and a thousand hosts booting
// parsed it a thousand times (most of the simulation's allocations).
func (b *bootConfigs) nodeOfInstance(ev cloudsim.InstanceEvent, cpu, mem int64) (*nomad.Node, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.m == nil {
		b.m = map[string]nomadClient{}
	}
	client, ok := b.m[string(ev.UserData)]
	if !ok {
		var err error
		if client, err = parseNomadClient(ev); err != nil {
			return nil, err
		}
		b.m[string(ev.UserData)] = client
	}
	meta := maps.Clone(client.Client.Meta)
	meta[bootstrap.MetaInstance] = ev.InstanceID
	return &nomad.Node{ID: "node-" + ev.InstanceID, Name: ev.InstanceID, Datacenter: client.Datacenter, NodePool: client.Client.NodePool,
		NodeClass: client.Client.NodeClass, Meta: meta, HTTPAddr: ev.PrivateIP + ":4646",
		Attributes:    map[string]string{"unique.platform.aws.instance-id": ev.InstanceID},
		NodeResources: &nomad.NodeResources{Cpu: nomad.NodeCpuResources{CpuShares: cpu}, Memory: nomad.NodeMemoryResources{MemoryMB: mem}}}, nil
}

// bootConfigs holds the Nomad client config of each user data seen.
type bootConfigs struct {
	mu sync.Mutex
	m  map[string]nomadClient
}

// nomadClient is what the simulation reads of a Nomad client config.
type nomadClient struct {
	Datacenter string `json:"datacenter"`
	Client     struct {
		NodePool  string            `json:"node_pool"`
		NodeClass string            `json:"node_class"`
		Meta      map[string]string `json:"meta"`
	} `json:"client"`
}

// parseNomadClient reads the Nomad client config of ev's Ignition user
// data.
func parseNomadClient(ev cloudsim.InstanceEvent) (nomadClient, error) {
	var client nomadClient
	cfg, rep, err := ignition.ParseCompatibleVersion(ev.UserData)
	if err != nil {
		return client, fmt.Errorf("user data of %s is not an Ignition config: %w", ev.InstanceID, err)
	}
	if rep.IsFatal() {
		return client, fmt.Errorf("invalid Ignition config of %s: %s", ev.InstanceID, rep)
	}
	found := false
	for _, f := range cfg.Storage.Files {
		if f.Contents.Source == nil || !strings.HasSuffix(f.Path, ".json") || !strings.HasPrefix(path.Clean(f.Path), "/etc/nomad.d/") {
			continue
		}
		du, err := dataurl.DecodeString(*f.Contents.Source)
		if err != nil {
			return client, fmt.Errorf("%s of %s: %w", f.Path, ev.InstanceID, err)
		}
		data := du.Data
		if c := f.Contents.Compression; c != nil && *c == "gzip" {
			zr, err := gzip.NewReader(bytes.NewReader(data))
			if err != nil {
				return client, err
			}
			if data, err = io.ReadAll(zr); err != nil {
				return client, err
			}
		}
		if bytes.Contains(data, []byte(`"client"`)) && json.Unmarshal(data, &client) == nil && client.Client.Meta != nil {
			found = true
			break
		}
	}
	if !found {
		return client, fmt.Errorf("the Ignition config of %s has no Nomad client config", ev.InstanceID)
	}
	return client, nil
}
