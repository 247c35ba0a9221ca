package telemetry

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// ErrAlreadyObserving reports a second ObserveSubscriptions on the same
// Metrics.
var ErrAlreadyObserving = errors.New("telemetry: subscriptions are already observed")

// SubscriptionSample is one subscription's gauges at one moment. The binary
// fills it from whatever it reads (cmd/api: the pool's status snapshot);
// this package knows only the numbers and the labels.
type SubscriptionSample struct {
	// ID labels the series (subscription).
	ID string
	// WeeklyUsed and WeeklyBudget are USD; Health is the score shown to
	// people (0-100); Clients counts live sessions; BlockCost is USD of the
	// active 5-hour block; BurnRate is USD per hour in it.
	WeeklyUsed, WeeklyBudget, Health, Clients, BlockCost, BurnRate float64
	// Status is the status in force, one of the statuses given to
	// ObserveSubscriptions.
	Status string
	// Windows are the subscription's usage windows (label window).
	Windows []WindowSample
}

// WindowSample is one usage window of a subscription.
type WindowSample struct {
	// Name labels the series (window).
	Name string
	// Utilization is the fraction used, 0..1; nil leaves the series out.
	Utilization *float64
	// Reset is when the window resets; zero leaves the series out.
	Reset time.Time
}

// snapshotTimeout bounds one read of the samples during a scrape.
const snapshotTimeout = 3 * time.Second

// ObserveSubscriptions exports the per-subscription gauges that read returns:
// weekly used and budget, health score, live clients, status, block cost
// and burn rate, each labelled subscription; authpool_subscription_status
// has a series for each of statuses (1 for the one in force, 0 for the
// others). One read serves scrapes for MetricsOptions.PoolCacheTTL, so
// frequent or concurrent scrapes cost one read per period. When read fails,
// these gauges are left out of the scrape (the error goes to the OTel error
// handler, see SetOTelErrorLogger) and the rest still answer.
func (m *Metrics) ObserveSubscriptions(statuses []string, read func(context.Context) ([]SubscriptionSample, error)) error {
	if m == nil {
		return nil
	}
	if read == nil {
		return errors.New("telemetry: observe subscriptions: nil read func")
	}
	statuses = append([]string(nil), statuses...)
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
	wutil := g("authpool_subscription_window_utilization", "1",
		"Fraction of a subscription's usage window used, as the provider reported it (0 once the window reset).")
	wreset := g("authpool_subscription_window_reset_timestamp_seconds", "s",
		"When a subscription's usage window resets, Unix seconds.")
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("telemetry: observe subscriptions: %w", err)
	}

	c := &ttlCache[[]SubscriptionSample]{fetch: read, ttl: m.cacheTTL, now: m.now}
	_, err := m.meter.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		samples, err := c.get(ctx)
		if err != nil {
			return fmt.Errorf("telemetry: subscription samples: %w", err)
		}
		for _, s := range samples {
			sub := attribute.String("subscription", s.ID)
			one := metric.WithAttributeSet(attribute.NewSet(sub))
			o.ObserveFloat64(used, s.WeeklyUsed, one)
			o.ObserveFloat64(budget, s.WeeklyBudget, one)
			o.ObserveFloat64(health, s.Health, one)
			o.ObserveFloat64(clients, s.Clients, one)
			o.ObserveFloat64(block, s.BlockCost, one)
			o.ObserveFloat64(burn, s.BurnRate, one)
			for _, w := range s.Windows {
				set := metric.WithAttributeSet(attribute.NewSet(sub, attribute.String("window", w.Name)))
				if w.Utilization != nil {
					o.ObserveFloat64(wutil, *w.Utilization, set)
				}
				if !w.Reset.IsZero() {
					o.ObserveFloat64(wreset, float64(w.Reset.UnixMilli())/1000, set)
				}
			}
			for _, st := range statuses {
				v := 0.0
				if st == s.Status {
					v = 1
				}
				o.ObserveFloat64(status, v, metric.WithAttributeSet(attribute.NewSet(sub, attribute.String("status", st))))
			}
		}
		return nil
	}, used, budget, health, clients, status, block, burn, wutil, wreset)
	if err != nil {
		return fmt.Errorf("telemetry: observe subscriptions: %w", err)
	}
	return nil
}

// ttlCache keeps the last value read (or error) for ttl; concurrent scrapes
// wait for one read instead of each reading Redis.
type ttlCache[T any] struct {
	fetch func(context.Context) (T, error)
	ttl   time.Duration
	now   func() time.Time

	mu  sync.Mutex
	at  time.Time
	val T
	err error
}

func (c *ttlCache[T]) get(ctx context.Context) (T, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.at.IsZero() && c.now().Sub(c.at) < c.ttl {
		return c.val, c.err
	}
	ctx, cancel := context.WithTimeout(ctx, snapshotTimeout)
	defer cancel()
	c.val, c.err = c.fetch(ctx)
	c.at = c.now()
	return c.val, c.err
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

// SavingsSample is the savings report over one window, as numbers: the
// binary fills it from the pool's report; this package knows no pool.
type SavingsSample struct {
	// Window labels the series ("7d").
	Window string
	// SavedUSD is the API-equivalent value of what subscriptions served;
	// FallbackUSD is what the paid fallback cost; Share is the fraction of
	// requests subscriptions served (0-1).
	SavedUSD, FallbackUSD, Share float64
}

// savingsTTL is how long one savings read serves scrapes: the report reads
// the usage stream of a whole window, too much for every scrape.
const savingsTTL = time.Minute

// ObserveSavings exports authpool_savings_usd, authpool_fallback_spend_usd
// and authpool_subscription_share, labelled window, from read (at most one
// read per minute). A failed read leaves them out of the scrape.
func (m *Metrics) ObserveSavings(read func(context.Context) ([]SavingsSample, error)) error {
	if m == nil {
		return nil
	}
	if read == nil {
		return errors.New("telemetry: observe savings: nil read func")
	}
	saved, err1 := m.meter.Float64ObservableGauge("authpool_savings_usd", metric.WithUnit("USD"),
		metric.WithDescription("API-equivalent value of the turns subscriptions served over the window (the cost savings achieved)."))
	fallback, err2 := m.meter.Float64ObservableGauge("authpool_fallback_spend_usd", metric.WithUnit("USD"),
		metric.WithDescription("What the paid fallback backend cost over the window."))
	share, err3 := m.meter.Float64ObservableGauge("authpool_subscription_share", metric.WithUnit("1"),
		metric.WithDescription("Fraction of requests served by subscriptions over the window, 0-1."))
	if err := errors.Join(err1, err2, err3); err != nil {
		return fmt.Errorf("telemetry: observe savings: %w", err)
	}
	c := &ttlCache[[]SavingsSample]{fetch: read, ttl: savingsTTL, now: m.now}
	_, err := m.meter.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		samples, err := c.get(ctx)
		if err != nil {
			return fmt.Errorf("telemetry: savings: %w", err)
		}
		for _, s := range samples {
			w := metric.WithAttributeSet(attribute.NewSet(attribute.String("window", s.Window)))
			o.ObserveFloat64(saved, s.SavedUSD, w)
			o.ObserveFloat64(fallback, s.FallbackUSD, w)
			o.ObserveFloat64(share, s.Share, w)
		}
		return nil
	}, saved, fallback, share)
	if err != nil {
		return fmt.Errorf("telemetry: observe savings: %w", err)
	}
	return nil
}
