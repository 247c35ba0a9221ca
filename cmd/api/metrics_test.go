package main

import (
	"context"
	"testing"

	dto "github.com/prometheus/client_model/go"

	"github.com/authpool/authpool/internal/redistest"
	"github.com/authpool/authpool/pkg/pool"
	"github.com/authpool/authpool/pkg/telemetry"
)

// The per-subscription gauges come from a real pool through the wiring's
// adapter (moved from pkg/telemetry, which no longer knows the pool).
func TestSubscriptionGaugesReadARealPool(t *testing.T) {
	tg := redistest.Mini(t)
	ctx := context.Background()
	cfg := &pool.Config{Subscriptions: []pool.SubscriptionConfig{
		{ID: "sub1", Email: "team+sub1@example.com", Type: "claude-pro", ConfigDir: "/tmp/claude-sub1", WeeklyBudget: 100},
	}}
	p := pool.New(tg.Client, cfg, pool.Options{})
	if err := p.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Allocate(ctx, "demo-session", pool.PriorityNormal); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Settle(ctx, pool.Usage{RequestID: "req-1", SubscriptionID: "sub1", SessionID: "demo-session",
		CostUSD: 2.5, InputTokens: 10, OutputTokens: 20}); err != nil {
		t.Fatal(err)
	}
	m, err := telemetry.NewMetrics(telemetry.MetricsOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Shutdown(context.Background()) })
	if err := m.ObserveSubscriptions(pool.Statuses(), subscriptionSamples(p)); err != nil {
		t.Fatal(err)
	}
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	// gauge is the value of name's series whose labels include want.
	gauge := func(name string, want map[string]string) float64 {
		t.Helper()
		for _, f := range fams {
			if f.GetName() != name {
				continue
			}
			for _, mt := range f.GetMetric() {
				if hasLabels(mt, want) {
					return mt.GetGauge().GetValue()
				}
			}
		}
		t.Fatalf("no series %s%v", name, want)
		return 0
	}
	sub := map[string]string{"subscription": "sub1"}
	for name, want := range map[string]float64{
		"authpool_subscription_weekly_used_usd":   2.5,
		"authpool_subscription_weekly_budget_usd": 100,
		"authpool_subscription_clients":           1,
		"authpool_subscription_block_cost_usd":    2.5,
	} {
		if got := gauge(name, sub); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if got := gauge("authpool_subscription_status", map[string]string{"subscription": "sub1", "status": "available"}); got != 1 {
		t.Errorf("status available = %v, want 1", got)
	}
	if got := gauge("authpool_subscription_status", map[string]string{"subscription": "sub1", "status": "removed"}); got != 0 {
		t.Errorf("status removed = %v, want 0", got)
	}
	if h := gauge("authpool_subscription_health_score", sub); h <= 0 || h > 100 {
		t.Errorf("health score %v, want in (0, 100]", h)
	}
	if b := gauge("authpool_subscription_burn_rate_usd_per_hour", sub); b <= 0 {
		t.Errorf("burn rate %v, want > 0 after a settled request", b)
	}
}

func hasLabels(m *dto.Metric, want map[string]string) bool {
	n := 0
	for _, l := range m.GetLabel() {
		if v, ok := want[l.GetName()]; ok && v == l.GetValue() {
			n++
		}
	}
	return n == len(want)
}
