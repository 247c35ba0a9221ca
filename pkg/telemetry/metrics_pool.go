package telemetry

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/authpool/authpool/pkg/pool"
)

// ErrAlreadyObserving reports a second ObservePool on the same Metrics.
var ErrAlreadyObserving = errors.New("telemetry: a pool is already observed")

// Statuses are the subscription statuses authpool_subscription_status has a
// series for: 1 for the status in force, 0 for the others.
var Statuses = []string{
	pool.StatusAvailable, pool.StatusApproaching, pool.StatusLimited,
	pool.StatusCooldown, pool.StatusDisabled, pool.StatusRemoved,
}

// snapshotTimeout bounds one snapshot read during a scrape.
const snapshotTimeout = 3 * time.Second

// ObservePool exports the per-subscription gauges from snapshot (typically
// (*pool.Pool).Status): weekly used and budget, health score (clamped for
// display), live clients, status, block cost and burn rate, each labelled
// subscription. A snapshot serves scrapes for MetricsOptions.PoolCacheTTL, so
// frequent or concurrent scrapes cost Redis one status call per period. When
// snapshot fails, these gauges are left out of the scrape (the error goes to
// the OTel error handler, see SetOTelErrorLogger) and the rest still answer.
func (m *Metrics) ObservePool(snapshot func(context.Context) (*pool.Snapshot, error)) error {
	if m == nil {
		return nil
	}
	if snapshot == nil {
		return errors.New("telemetry: observe pool: nil snapshot func")
	}
	first := false
	m.observeOnce.Do(func() { first = true })
	if !first {
		return ErrAlreadyObserving
	}
	gauge := func(name, unit, desc string) (metric.Float64ObservableGauge, error) {
		return m.meter.Float64ObservableGauge(name, metric.WithDescription(desc), metric.WithUnit(unit))
	}
	var errs []error
	g := func(name, unit, desc string) metric.Float64ObservableGauge {
		o, err := gauge(name, unit, desc)
		errs = append(errs, err)
		return o
	}
	used := g("authpool_subscription_weekly_used_usd", "USD", "Rolling 7-day usage of a subscription.")
	budget := g("authpool_subscription_weekly_budget_usd", "USD", "Weekly budget of a subscription.")
	health := g("authpool_subscription_health_score", "1", "Health score of a subscription, 0-100.")
	clients := g("authpool_subscription_clients", "1", "Live sessions bound to a subscription.")
	status := g("authpool_subscription_status", "1", "1 for a subscription's current status, 0 for the others.")
	block := g("authpool_subscription_block_cost_usd", "USD", "Cost of a subscription's active 5-hour block.")
	burn := g("authpool_subscription_burn_rate_usd_per_hour", "USD/h", "Burn rate in a subscription's active block.")
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("telemetry: observe pool: %w", err)
	}

	c := &snapshotCache{fetch: snapshot, ttl: m.cacheTTL, now: m.now}
	_, err := m.meter.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		snap, err := c.get(ctx)
		if err != nil {
			return fmt.Errorf("telemetry: pool snapshot: %w", err)
		}
		for _, s := range snap.Subscriptions {
			sub := attribute.String("subscription", s.ID)
			one := metric.WithAttributeSet(attribute.NewSet(sub))
			o.ObserveFloat64(used, s.WeeklyUsed, one)
			o.ObserveFloat64(budget, s.WeeklyBudget, one)
			o.ObserveFloat64(health, s.Health.Display, one)
			o.ObserveFloat64(clients, float64(s.Clients), one)
			o.ObserveFloat64(block, s.BlockCost, one)
			o.ObserveFloat64(burn, s.BurnRate, one)
			for _, st := range Statuses {
				v := 0.0
				if st == s.Status {
					v = 1
				}
				o.ObserveFloat64(status, v, metric.WithAttributeSet(attribute.NewSet(sub, attribute.String("status", st))))
			}
		}
		return nil
	}, used, budget, health, clients, status, block, burn)
	if err != nil {
		return fmt.Errorf("telemetry: observe pool: %w", err)
	}
	return nil
}

// snapshotCache keeps the last snapshot (or error) for ttl; concurrent
// scrapes wait for one read instead of each reading Redis.
type snapshotCache struct {
	fetch func(context.Context) (*pool.Snapshot, error)
	ttl   time.Duration
	now   func() time.Time

	mu   sync.Mutex
	at   time.Time
	snap *pool.Snapshot
	err  error
}

func (c *snapshotCache) get(ctx context.Context) (*pool.Snapshot, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.at.IsZero() && c.now().Sub(c.at) < c.ttl {
		return c.snap, c.err
	}
	ctx, cancel := context.WithTimeout(ctx, snapshotTimeout)
	defer cancel()
	c.snap, c.err = c.fetch(ctx)
	if c.err == nil && c.snap == nil {
		c.snap = &pool.Snapshot{}
	}
	c.at = c.now()
	return c.snap, c.err
}

// attrs turns label pairs into a measurement option. An empty value becomes
// "unknown", so a series never has a blank label.
func attrs(kv ...string) metric.MeasurementOption {
	kvs := make([]attribute.KeyValue, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		v := kv[i+1]
		if v == "" {
			v = "unknown"
		}
		kvs = append(kvs, attribute.String(kv[i], v))
	}
	return metric.WithAttributeSet(attribute.NewSet(kvs...))
}
