package app

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/spillwayhq/spillway/controlplane/config"
	"github.com/spillwayhq/spillway/pools"
	"github.com/spillwayhq/spillway/providers"
	"github.com/spillwayhq/spillway/providers/alicloud"
	"github.com/spillwayhq/spillway/providers/aws"
)

// cloudProviders returns the provider of every cloud pool of pc, by pool
// name. Pools of the same cloud and region share one provider (one SDK
// client, one connection pool, one retry budget), instrumented once into
// reg: the decorator's metrics and logs carry the pool of each call, so
// sharing loses nothing. Building a provider does not call the cloud,
// except that Alibaba Cloud's SDK resolves its credential chain at once,
// so missing Alibaba credentials fail here rather than on the first call.
func cloudProviders(ctx context.Context, c config.Clouds, pc *pools.Config, o providerOptions) (map[string]providers.Provider, error) {
	out := map[string]providers.Provider{}
	if pc == nil {
		return out, nil
	}
	log := o.log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	shared := map[string]providers.Provider{} // "cloud/region" → provider
	for _, p := range pc.CloudPools {
		key := p.Provider + "/" + p.Region
		if prov, ok := shared[key]; ok {
			out[p.Name] = prov
			continue
		}
		var (
			prov  providers.Provider
			err   error
			guard func(context.Context) error
		)
		if o.guard != nil {
			guard = o.guard(p.Provider)
		}
		switch p.Provider {
		case pools.ProviderAWS:
			prov, err = awsProvider(ctx, c, p.Region, o.appID, guard, o.clock)
		case pools.ProviderAlicloud:
			prov, err = alicloudProvider(c, p.Region, o.appID, guard, o.clock)
		default:
			return nil, fmt.Errorf("cloud pool %s: unknown provider %q; want %q or %q", p.Name, p.Provider, pools.ProviderAWS, pools.ProviderAlicloud)
		}
		if err != nil {
			return nil, fmt.Errorf("cloud pool %s: creating the %s provider for region %s: %w", p.Name, p.Provider, p.Region, err)
		}
		prov = providers.Instrument(prov, o.reg, log.With("region", p.Region))
		// The guard runs before each method, and again before each of its
		// HTTP requests (retries included): a replica paused inside a
		// method sends nothing more once its term is over.
		prov = providers.Guard(prov, guard)
		shared[key] = prov
		out[p.Name] = prov
	}
	return out, nil
}

// providerOptions is what every cloud provider of serve shares.
type providerOptions struct {
	reg prometheus.Registerer
	log *slog.Logger
	// guard, when not nil, gives the check every call of a cloud ("aws",
	// "alicloud") runs first, outside the instrumentation, and that each
	// HTTP request of the call runs again: a refused call never reaches the
	// cloud.
	guard func(cloud string) func(context.Context) error
	// appID names this replica in each request's User-Agent.
	appID string
	// clock is the providers' (nil: the real clock).
	clock clockwork.Clock
}

// awsProvider is the EC2 provider of region; a static key from the config
// replaces the SDK's standard credential chain.
func awsProvider(ctx context.Context, c config.Clouds, region, appID string, guard func(context.Context) error, clock clockwork.Clock) (providers.Provider, error) {
	opts := aws.Options{Cluster: c.Cluster, Region: region, Endpoint: c.AWS.Endpoint, AppID: appID, RequestGuard: guard, Clock: clock}
	if c.AWS.AccessKeyID != "" {
		opts.Credentials = credentials.NewStaticCredentialsProvider(c.AWS.AccessKeyID, c.AWS.SecretAccessKey.Reveal(), "")
	}
	return aws.New(ctx, opts)
}

// alicloudProvider is the ECS provider of region; the endpoint URL is split
// into the SDK's domain and scheme.
func alicloudProvider(c config.Clouds, region, appID string, guard func(context.Context) error, clock clockwork.Clock) (providers.Provider, error) {
	host, scheme := c.Alicloud.Domain()
	return alicloud.New(alicloud.Options{
		Cluster: c.Cluster, Region: region, Endpoint: host, Scheme: scheme,
		AccessKeyID: c.Alicloud.AccessKeyID, AccessKeySecret: c.Alicloud.AccessKeySecret.Reveal(), AppID: appID,
		RequestGuard: guard, Clock: clock,
	})
}
