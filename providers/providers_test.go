package providers_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/spillwayhq/spillway/providers"
	"github.com/spillwayhq/spillway/providers/fake"
)

func TestTypedErrors(t *testing.T) {
	a := providers.Offering{InstanceType: "m5.large", Zone: "us-east-1a", CapacityType: providers.CapacitySpot}
	base := errors.New("boom")
	tests := []struct {
		err    error
		is     func(error) bool
		ignore func(error) error
		kind   string
	}{
		{providers.NewInsufficientCapacityError(base, a), providers.IsInsufficientCapacity, providers.IgnoreInsufficientCapacity, "insufficient_capacity"},
		{providers.NewQuotaError(base), providers.IsQuota, providers.IgnoreQuota, "quota"},
		{providers.NewThrottledError(base, 0), providers.IsThrottled, providers.IgnoreThrottled, "throttled"},
		{providers.NewNotFoundError("i-1", base), providers.IsNotFound, providers.IgnoreNotFound, "not_found"},
		{providers.NewUnavailableError(base), providers.IsUnavailable, providers.IgnoreUnavailable, "unavailable"},
	}
	for _, tc := range tests {
		wrapped := fmt.Errorf("creating hosts: %w", tc.err)
		if !tc.is(wrapped) || tc.ignore(wrapped) != nil || !errors.Is(wrapped, base) {
			t.Errorf("%T: helpers do not see through wrapping", tc.err)
		}
		if got := providers.ErrorKind(wrapped); got != tc.kind {
			t.Errorf("ErrorKind(%T) = %q, want %q", tc.err, got, tc.kind)
		}
		if tc.ignore(base) != base {
			t.Errorf("%T: ignore swallowed an unrelated error", tc.err)
		}
	}
	err := providers.NewInsufficientCapacityError(base, a)
	if !strings.Contains(err.Error(), "m5.large/us-east-1a/spot") {
		t.Errorf("error %q does not name the offering", err)
	}
}

func TestClientTokenIsStableAndBounded(t *testing.T) {
	a := providers.Offering{InstanceType: "m5.large", Zone: "us-east-1a"}
	long := strings.Repeat("claim/", 30)
	if first, again := providers.ClientToken("c", 0, a), providers.ClientToken("c", 0, a); first != again {
		t.Fatal("token not deterministic")
	}
	if providers.ClientToken("c", 0, a) == providers.ClientToken("c", 3, a) {
		t.Fatal("follow-up request reuses the token")
	}
	if n := len(providers.ClientToken(long, 0, a)); n > 64 {
		t.Fatalf("token is %d chars", n)
	}
}

func TestInstrumentCountsCallsAndErrors(t *testing.T) {
	reg := prometheus.NewRegistry()
	f := fake.New(fake.NewCloud(nil), "test", fake.Credential)
	p := providers.Instrument(f, reg, nil)
	// A second decorator on the same registry shares the collectors.
	_ = providers.Instrument(f, reg, nil)
	pool := providers.Pool{Name: "p1", Offerings: []providers.Offering{{InstanceType: "small", Zone: "z"}}}
	if _, err := p.Create(t.Context(), providers.Claim{ID: "c", Pool: pool, Count: 2}); err != nil {
		t.Fatal(err)
	}
	f.NextListErr = providers.NewThrottledError(nil, 0)
	if _, err := p.List(t.Context(), "p1"); !providers.IsThrottled(err) {
		t.Fatalf("list err = %v", err)
	}
	want := `
# HELP spillway_provider_call_errors_total Cloud provider calls that returned an error.
# TYPE spillway_provider_call_errors_total counter
spillway_provider_call_errors_total{operation="list",pool="p1",provider="fake"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), providers.MetricCallErrors); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(reg, providers.MetricCallDuration); n != 2 {
		t.Fatalf("duration series = %d, want 2", n)
	}
}

func TestGuardStopsEveryCallBeforeTheCloud(t *testing.T) {
	f := fake.New(fake.NewCloud(nil), "test", fake.Credential)
	refuse := errors.New("term over")
	var allow bool
	p := providers.Guard(f, func(context.Context) error {
		if allow {
			return nil
		}
		return refuse
	})
	if providers.Guard(f, nil) != providers.Provider(f) {
		t.Error("a nil check must not wrap")
	}
	pool := providers.Pool{Name: "p1", Offerings: []providers.Offering{{InstanceType: "small", Zone: "z"}}}
	ctx := t.Context()
	_, errCreate := p.Create(ctx, providers.Claim{ID: "c", Pool: pool, Count: 1})
	errDelete := p.Delete(ctx, providers.Host{ID: "i-1"})
	_, errGet := p.Get(ctx, "i-1")
	_, errList := p.List(ctx, "p1")
	_, errCatalog := p.Catalog(ctx, pool)
	for name, err := range map[string]error{"create": errCreate, "delete": errDelete, "get": errGet, "list": errList, "catalog": errCatalog} {
		if !errors.Is(err, refuse) {
			t.Errorf("%s while refused: %v", name, err)
		}
	}
	if n := len(f.CreateCalls) + len(f.DeleteCalls) + len(f.GetCalls) + len(f.ListCalls) + len(f.CatalogCalls); n != 0 {
		t.Fatalf("%d refused calls reached the provider", n)
	}
	allow = true
	hosts, err := p.Create(ctx, providers.Claim{ID: "c", Pool: pool, Count: 1})
	if err != nil || len(hosts) != 1 || len(f.CreateCalls) != 1 || p.Name() != "fake" {
		t.Fatalf("an allowed create: %v, %v, %d calls", hosts, err, len(f.CreateCalls))
	}
}

func TestAppID(t *testing.T) {
	for in, want := range map[string]string{
		"":                                     "",
		"replica-a":                            "replica-a",
		"host.example:4242":                    "host.example-4242",
		"5c6b1a8e-0f1d-4c1b-9d7e-1b2c3d4e5f60": "5c6b1a8e-0f1d-4c1b-9d7e-1b2c3d4e5f60",
		"a b/c" + strings.Repeat("x", 60):      "a-b-c" + strings.Repeat("x", 45),
	} {
		if got := providers.AppID(in); got != want {
			t.Errorf("AppID(%q) = %q, want %q", in, got, want)
		}
	}
}
