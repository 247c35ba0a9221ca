package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/otlptranslator"
	promexporter "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

// Histogram buckets, in seconds, each suited to what it times.
var (
	// allocationBuckets: one Lua script call, sub-millisecond to a second.
	allocationBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1}
	// rebalanceBuckets: maintain + rebalance scripts over the whole pool.
	rebalanceBuckets = []float64{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}
	// backendBuckets: a Claude CLI turn or a Messages API call, seconds to minutes.
	backendBuckets = []float64{0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600}
	// httpBuckets: whole HTTP requests, from /health to long completions.
	httpBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}
)

// Allocation results and priorities pre-set to zero, so that ratios and
// alerts have series from the first scrape.
var (
	allocationResults = []string{"resumed", "bound", "fallback", "exhausted"}
	priorities        = []string{"low", "normal", "high"}
	settlementResults = []string{"settled", "duplicate"}
	// settleDropReasons: why a failed settlement was given up (see
	// SettleDropped).
	settleDropReasons = []string{"queue_full", "expired", "invalid", "shutdown"}
)

// MetricsOptions tune NewMetrics. The zero value means the defaults.
type MetricsOptions struct {
	// PoolCacheTTL is how long one read of the subscription samples (see
	// ObserveSubscriptions) serves scrapes before it is read again. Default 5 s.
	PoolCacheTTL time.Duration
}

// DefaultPoolCacheTTL is the default of MetricsOptions.PoolCacheTTL.
const DefaultPoolCacheTTL = 5 * time.Second

// Metrics is the process's metrics: an OTel meter provider exported in the
// Prometheus format on a registry of its own, with the Go runtime and
// process collectors beside it. Its methods are safe for concurrent use. The
// recording methods, ObserveSubscriptions and Shutdown do nothing on a nil
// *Metrics, so a component may hold an optional one; Handler and Registry
// need a real one.
type Metrics struct {
	registry *prometheus.Registry
	provider *sdkmetric.MeterProvider
	meter    metric.Meter
	cacheTTL time.Duration
	now      func() time.Time

	allocations      metric.Int64Counter
	allocationTime   metric.Float64Histogram
	failovers        metric.Int64Counter
	rotations        metric.Int64Counter
	settlements      metric.Int64Counter
	settleBacklog    metric.Int64UpDownCounter
	settleDropped    metric.Int64Counter
	rebalanceRuns    metric.Int64Counter
	rebalanceMoves   metric.Int64Counter
	rebalanceTime    metric.Float64Histogram
	notifications    metric.Int64Counter
	backendTime      metric.Float64Histogram
	backendErrors    metric.Int64Counter
	leader           metric.Int64Gauge
	httpRequests     metric.Int64Counter
	httpRequestsTime metric.Float64Histogram

	observeOnce sync.Once
}

// NewMetrics builds the metrics. Serve Handler at /metrics and call
// Shutdown when the process ends.
func NewMetrics(opts MetricsOptions) (*Metrics, error) {
	reg := prometheus.NewRegistry()
	if err := reg.Register(collectors.NewGoCollector()); err != nil {
		return nil, fmt.Errorf("telemetry: metrics: go collector: %w", err)
	}
	if err := reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return nil, fmt.Errorf("telemetry: metrics: process collector: %w", err)
	}
	// The instrument names below are the final Prometheus names: no unit or
	// _total suffix is added, and no otel_scope_* labels or target_info.
	exp, err := promexporter.New(
		promexporter.WithRegisterer(reg),
		promexporter.WithTranslationStrategy(otlptranslator.UnderscoreEscapingWithoutSuffixes),
		promexporter.WithoutScopeInfo(),
		promexporter.WithoutTargetInfo(),
	)
	if err != nil {
		return nil, fmt.Errorf("telemetry: metrics: prometheus exporter: %w", err)
	}
	m := &Metrics{registry: reg, provider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp)),
		cacheTTL: opts.PoolCacheTTL, now: time.Now}
	if m.cacheTTL <= 0 {
		m.cacheTTL = DefaultPoolCacheTTL
	}
	m.meter = m.provider.Meter("github.com/authpool/authpool/pkg/telemetry")
	if err := m.instruments(); err != nil {
		_ = m.provider.Shutdown(context.Background())
		return nil, fmt.Errorf("telemetry: metrics: %w", err)
	}
	ctx := context.Background()
	for _, r := range allocationResults {
		for _, p := range priorities {
			m.allocations.Add(ctx, 0, attrs("result", r, "priority", p))
		}
	}
	for _, r := range settlementResults {
		m.settlements.Add(ctx, 0, attrs("result", r))
	}
	for _, r := range settleDropReasons {
		m.settleDropped.Add(ctx, 0, attrs("reason", r))
	}
	m.settleBacklog.Add(ctx, 0)
	m.rebalanceMoves.Add(ctx, 0)
	return m, nil
}

func (m *Metrics) instruments() error {
	var errs []error
	counter := func(name, desc string) metric.Int64Counter {
		c, err := m.meter.Int64Counter(name, metric.WithDescription(desc))
		errs = append(errs, err)
		return c
	}
	histogram := func(name, desc string, buckets []float64) metric.Float64Histogram {
		h, err := m.meter.Float64Histogram(name, metric.WithDescription(desc), metric.WithUnit("s"),
			metric.WithExplicitBucketBoundaries(buckets...))
		errs = append(errs, err)
		return h
	}
	m.allocations = counter("authpool_allocations_total", "Allocations by result (resumed, bound, fallback, exhausted) and priority.")
	m.allocationTime = histogram("authpool_allocation_duration_seconds", "Latency of one allocation (the allocate script).", allocationBuckets)
	m.failovers = counter("authpool_failovers_total", "Requests sent to the fallback backend, by reason.")
	m.rotations = counter("authpool_rotations_total", "Sessions moved to another subscription, by reason.")
	m.settlements = counter("authpool_settlements_total", "Usage settlements by result (settled, duplicate).")
	backlog, err := m.meter.Int64UpDownCounter("authpool_settle_backlog",
		metric.WithDescription("Failed settlements this gateway replica holds for retry (usage not yet recorded)."))
	errs = append(errs, err)
	m.settleBacklog = backlog
	m.settleDropped = counter("authpool_settle_dropped_total", "Failed settlements given up, by reason (queue_full, expired, invalid, shutdown): usage lost.")
	m.rebalanceRuns = counter("authpool_rebalance_runs_total", "Rebalancer cycles by result.")
	m.rebalanceMoves = counter("authpool_rebalance_moves_total", "Idle clients moved by the rebalancer.")
	m.rebalanceTime = histogram("authpool_rebalance_duration_seconds", "Duration of one rebalancer cycle.", rebalanceBuckets)
	m.notifications = counter("authpool_notifications_total", "Notification deliveries by event type, channel and result.")
	m.backendTime = histogram("authpool_backend_request_duration_seconds", "Duration of one backend call (Claude CLI, fallback API).", backendBuckets)
	m.backendErrors = counter("authpool_backend_errors_total", "Failed backend calls.")
	m.httpRequests = counter("authpool_http_requests_total", "HTTP requests by route and status code.")
	m.httpRequestsTime = histogram("authpool_http_request_duration_seconds", "HTTP request duration by route.", httpBuckets)
	leader, err := m.meter.Int64Gauge("authpool_leader", metric.WithDescription("1 while this rebalancer replica leads, else 0."))
	errs = append(errs, err)
	m.leader = leader
	return errors.Join(errs...)
}

// Handler serves the Prometheus exposition of every metric, for /metrics.
func (m *Metrics) Handler() http.Handler {
	// A failing collector (the pool snapshot while Redis is down) must not
	// turn the whole scrape into a 500: the other metrics still answer.
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// Registry is the Prometheus registry behind Handler, for collectors of the
// caller's own.
func (m *Metrics) Registry() *prometheus.Registry { return m.registry }

// Shutdown stops the meter provider; later records are dropped.
func (m *Metrics) Shutdown(ctx context.Context) error {
	if m == nil {
		return nil
	}
	if err := m.provider.Shutdown(ctx); err != nil {
		return fmt.Errorf("telemetry: metrics: shutdown: %w", err)
	}
	return nil
}

// Allocation counts one allocation: result is resumed, bound, fallback or
// exhausted; priority low, normal or high; d is how long the allocate call
// took.
func (m *Metrics) Allocation(ctx context.Context, result, priority string, d time.Duration) {
	if m == nil {
		return
	}
	m.allocations.Add(ctx, 1, attrs("result", result, "priority", priority))
	m.allocationTime.Record(ctx, d.Seconds())
}

// Failover counts one request sent to the fallback backend; reason is the
// allocate script's (weekly_budget, capacity, all_unavailable, …).
func (m *Metrics) Failover(ctx context.Context, reason string) {
	if m == nil {
		return
	}
	m.failovers.Add(ctx, 1, attrs("reason", reason))
}

// Rotation counts one session moved to another subscription; reason is the
// old subscription's state (limited, cooldown, budget, removed, rebalance, …).
func (m *Metrics) Rotation(ctx context.Context, reason string) {
	if m == nil {
		return
	}
	m.rotations.Add(ctx, 1, attrs("reason", reason))
}

// Settlement counts one settle call: result is settled or duplicate.
func (m *Metrics) Settlement(ctx context.Context, result string) {
	if m == nil {
		return
	}
	m.settlements.Add(ctx, 1, attrs("result", result))
}

// SettleBacklog moves the number of failed settlements held for retry by
// delta (+1 queued, -1 landed or dropped).
func (m *Metrics) SettleBacklog(ctx context.Context, delta int) {
	if m == nil {
		return
	}
	m.settleBacklog.Add(ctx, int64(delta))
}

// SettleDropped counts one failed settlement given up; reason is
// queue_full, expired, invalid or shutdown.
func (m *Metrics) SettleDropped(ctx context.Context, reason string) {
	if m == nil {
		return
	}
	m.settleDropped.Add(ctx, 1, attrs("reason", reason))
}

// RebalanceRun counts one rebalancer cycle with its result (e.g. ok, skipped,
// error), the clients it moved and its duration.
func (m *Metrics) RebalanceRun(ctx context.Context, result string, moves int, d time.Duration) {
	if m == nil {
		return
	}
	m.rebalanceRuns.Add(ctx, 1, attrs("result", result))
	if moves > 0 {
		m.rebalanceMoves.Add(ctx, int64(moves))
	}
	m.rebalanceTime.Record(ctx, d.Seconds())
}

// Delivered counts one notification outcome; it is the notify.Metrics
// interface, so a *Metrics is passed to notify.Options as it is. channel is
// "none" in the metric when empty (unrouted or malformed events).
func (m *Metrics) Delivered(eventType, channel, result string) {
	if m == nil {
		return
	}
	if channel == "" {
		channel = "none"
	}
	m.notifications.Add(context.Background(), 1, attrs("type", eventType, "channel", channel, "result", result))
}

// Backend records one backend call: backend is its name (claude-cli,
// anthropic-api), kind what was asked (e.g. complete, stream); a non-nil err
// also counts an error.
func (m *Metrics) Backend(ctx context.Context, backend, kind string, d time.Duration, err error) {
	if m == nil {
		return
	}
	set := attrs("backend", backend, "kind", kind)
	m.backendTime.Record(ctx, d.Seconds(), set)
	if err != nil {
		m.backendErrors.Add(ctx, 1, set)
	}
}

// SetLeader records whether this rebalancer replica leads.
func (m *Metrics) SetLeader(leading bool) {
	if m == nil {
		return
	}
	var v int64
	if leading {
		v = 1
	}
	m.leader.Record(context.Background(), v)
}

// HTTP records one HTTP request: route is the route pattern (never the raw
// path, whose ids would make a series each), code the status sent.
func (m *Metrics) HTTP(ctx context.Context, route string, code int, d time.Duration) {
	if m == nil {
		return
	}
	m.httpRequests.Add(ctx, 1, attrs("route", route, "code", strconv.Itoa(code)))
	m.httpRequestsTime.Record(ctx, d.Seconds(), attrs("route", route))
}
