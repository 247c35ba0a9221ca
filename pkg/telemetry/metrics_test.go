package telemetry

import (
	"bufio"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/authpool/authpool/pkg/notify"
)

// A *Metrics is what pkg/notify's Deliverer takes.
var _ notify.Metrics = (*Metrics)(nil)

// wantMetrics is every authpool metric with its type and label names.
var wantMetrics = map[string]struct {
	typ    dto.MetricType
	labels []string
}{
	"authpool_allocations_total":                           {dto.MetricType_COUNTER, []string{"priority", "result"}},
	"authpool_allocation_duration_seconds":                 {dto.MetricType_HISTOGRAM, nil},
	"authpool_failovers_total":                             {dto.MetricType_COUNTER, []string{"reason"}},
	"authpool_rotations_total":                             {dto.MetricType_COUNTER, []string{"reason"}},
	"authpool_settlements_total":                           {dto.MetricType_COUNTER, []string{"result"}},
	"authpool_settle_backlog":                              {dto.MetricType_GAUGE, nil},
	"authpool_settle_dropped_total":                        {dto.MetricType_COUNTER, []string{"reason"}},
	"authpool_subscription_weekly_used_usd":                {dto.MetricType_GAUGE, []string{"subscription"}},
	"authpool_subscription_weekly_budget_usd":              {dto.MetricType_GAUGE, []string{"subscription"}},
	"authpool_subscription_health_score":                   {dto.MetricType_GAUGE, []string{"subscription"}},
	"authpool_subscription_clients":                        {dto.MetricType_GAUGE, []string{"subscription"}},
	"authpool_subscription_status":                         {dto.MetricType_GAUGE, []string{"status", "subscription"}},
	"authpool_subscription_block_cost_usd":                 {dto.MetricType_GAUGE, []string{"subscription"}},
	"authpool_subscription_burn_rate_usd_per_hour":         {dto.MetricType_GAUGE, []string{"subscription"}},
	"authpool_subscription_window_utilization":             {dto.MetricType_GAUGE, []string{"subscription", "window"}},
	"authpool_subscription_window_reset_timestamp_seconds": {dto.MetricType_GAUGE, []string{"subscription", "window"}},
	"authpool_rebalance_runs_total":                        {dto.MetricType_COUNTER, []string{"result"}},
	"authpool_rebalance_moves_total":                       {dto.MetricType_COUNTER, nil},
	"authpool_rebalance_duration_seconds":                  {dto.MetricType_HISTOGRAM, nil},
	"authpool_notifications_total":                         {dto.MetricType_COUNTER, []string{"channel", "result", "type"}},
	"authpool_backend_request_duration_seconds":            {dto.MetricType_HISTOGRAM, []string{"backend", "kind"}},
	"authpool_backend_errors_total":                        {dto.MetricType_COUNTER, []string{"backend", "kind"}},
	"authpool_leader":                                      {dto.MetricType_GAUGE, nil},
	"authpool_http_requests_total":                         {dto.MetricType_COUNTER, []string{"code", "route"}},
	"authpool_http_request_duration_seconds":               {dto.MetricType_HISTOGRAM, []string{"route"}},
}

// testStatuses stand for the pool's statuses: the package knows none.
var testStatuses = []string{"available", "approaching", "limited", "cooldown", "disabled", "removed"}

func testSamples() []SubscriptionSample {
	return []SubscriptionSample{
		{ID: "sub1", Status: "available", WeeklyUsed: 12.5, WeeklyBudget: 456, BlockCost: 3.25,
			BurnRate: 1.5, Clients: 4, Health: 73.2},
		{ID: "sub2", Status: "limited", WeeklyUsed: 400, WeeklyBudget: 456, BlockCost: 30,
			BurnRate: 9, Clients: 0, Health: 0,
			Windows: []WindowSample{{Name: "five_hour", Utilization: &fiveHourUsed, Reset: time.Unix(1796050800, 0)},
				{Name: "seven_day"}}},
	}
}

var fiveHourUsed = 0.42

// exercise calls every recording method once or more.
func exercise(m *Metrics) {
	ctx := context.Background()
	m.Allocation(ctx, "bound", "normal", 2*time.Millisecond)
	m.Allocation(ctx, "resumed", "normal", 700*time.Microsecond)
	m.Allocation(ctx, "fallback", "high", 3*time.Millisecond)
	m.Failover(ctx, "weekly_budget")
	m.Rotation(ctx, "limited")
	m.Settlement(ctx, "settled")
	m.Settlement(ctx, "duplicate")
	m.SettleBacklog(ctx, 1)
	m.SettleBacklog(ctx, -1)
	m.SettleDropped(ctx, "queue_full")
	m.RebalanceRun(ctx, "ok", 2, 40*time.Millisecond)
	m.Delivered(notify.TypeUsageThreshold, notify.ChannelWebhook, notify.ResultDelivered)
	m.Delivered(notify.TypeRotation, "", notify.ResultUnrouted)
	m.Backend(ctx, "claude-cli", "complete", 4*time.Second, nil)
	m.Backend(ctx, "claude-cli", "complete", 90*time.Second, errors.New("exit status 1"))
	m.SetLeader(true)
	m.HTTP(ctx, "/v1/chat/completions", 200, 5*time.Second)
	m.HTTP(ctx, "/health", 200, time.Millisecond)
}

func newTestMetrics(t *testing.T, read func(context.Context) ([]SubscriptionSample, error)) *Metrics {
	t.Helper()
	m, err := NewMetrics(MetricsOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Shutdown(context.Background()) })
	if read != nil {
		if err := m.ObserveSubscriptions(testStatuses, read); err != nil {
			t.Fatal(err)
		}
	}
	return m
}

// scrape GETs /metrics through the handler and parses the text format.
func scrape(t *testing.T, m *Metrics) map[string]*dto.MetricFamily {
	t.Helper()
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse exposition: %v", err)
	}
	return fams
}

func labelsOf(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

// find returns the series of fam whose labels include want.
func find(t *testing.T, fams map[string]*dto.MetricFamily, name string, want map[string]string) *dto.Metric {
	t.Helper()
	fam, ok := fams[name]
	if !ok {
		t.Fatalf("%s not exported", name)
	}
	for _, m := range fam.GetMetric() {
		got := labelsOf(m)
		match := true
		for k, v := range want {
			if got[k] != v {
				match = false
			}
		}
		if match {
			return m
		}
	}
	t.Fatalf("%s has no series with %v", name, want)
	return nil
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	}
	return -1
}

func TestMetricsExportEveryNameWithItsLabels(t *testing.T) {
	m := newTestMetrics(t, func(context.Context) ([]SubscriptionSample, error) { return testSamples(), nil })
	exercise(m)
	fams := scrape(t, m)

	for name, want := range wantMetrics {
		fam, ok := fams[name]
		if !ok {
			t.Errorf("%s: not exported", name)
			continue
		}
		if fam.GetType() != want.typ {
			t.Errorf("%s: type %v, want %v", name, fam.GetType(), want.typ)
		}
		for _, s := range fam.GetMetric() {
			var got []string
			for k := range labelsOf(s) {
				got = append(got, k)
			}
			sort.Strings(got)
			if !slices.Equal(got, want.labels) {
				t.Errorf("%s: labels %v, want %v", name, got, want.labels)
			}
		}
	}
	for name := range fams {
		if strings.HasPrefix(name, "authpool_") {
			if _, ok := wantMetrics[name]; !ok {
				t.Errorf("unexpected metric %s", name)
			}
		}
		if strings.HasPrefix(name, "otel_") || name == "target_info" {
			t.Errorf("exporter metadata %s is exported", name)
		}
	}
	for _, name := range []string{"go_memstats_heap_alloc_bytes", "process_resident_memory_bytes", "process_cpu_seconds_total"} {
		if fams[name] == nil || value(fams[name].GetMetric()[0]) <= 0 {
			t.Errorf("%s: missing or not positive", name)
		}
	}
}

func TestMetricsValues(t *testing.T) {
	m := newTestMetrics(t, func(context.Context) ([]SubscriptionSample, error) { return testSamples(), nil })
	exercise(m)
	fams := scrape(t, m)

	tests := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"authpool_allocations_total", map[string]string{"result": "bound", "priority": "normal"}, 1},
		{"authpool_allocations_total", map[string]string{"result": "fallback", "priority": "high"}, 1},
		// Pre-set to zero so ratios have a series before the first exhaustion.
		{"authpool_allocations_total", map[string]string{"result": "exhausted", "priority": "low"}, 0},
		{"authpool_failovers_total", map[string]string{"reason": "weekly_budget"}, 1},
		{"authpool_rotations_total", map[string]string{"reason": "limited"}, 1},
		{"authpool_settlements_total", map[string]string{"result": "settled"}, 1},
		{"authpool_settle_dropped_total", map[string]string{"reason": "queue_full"}, 1},
		{"authpool_settle_dropped_total", map[string]string{"reason": "shutdown"}, 0},
		{"authpool_settle_backlog", nil, 0},
		{"authpool_settlements_total", map[string]string{"result": "duplicate"}, 1},
		{"authpool_rebalance_runs_total", map[string]string{"result": "ok"}, 1},
		{"authpool_rebalance_moves_total", nil, 2},
		{"authpool_notifications_total", map[string]string{"type": "usage_threshold", "channel": "webhook", "result": "delivered"}, 1},
		{"authpool_notifications_total", map[string]string{"type": "rotation", "channel": "none", "result": "unrouted"}, 1},
		{"authpool_backend_errors_total", map[string]string{"backend": "claude-cli", "kind": "complete"}, 1},
		{"authpool_leader", nil, 1},
		{"authpool_http_requests_total", map[string]string{"route": "/v1/chat/completions", "code": "200"}, 1},
		{"authpool_subscription_weekly_used_usd", map[string]string{"subscription": "sub1"}, 12.5},
		{"authpool_subscription_weekly_budget_usd", map[string]string{"subscription": "sub2"}, 456},
		{"authpool_subscription_health_score", map[string]string{"subscription": "sub1"}, 73.2},
		{"authpool_subscription_health_score", map[string]string{"subscription": "sub2"}, 0},
		{"authpool_subscription_clients", map[string]string{"subscription": "sub1"}, 4},
		{"authpool_subscription_block_cost_usd", map[string]string{"subscription": "sub2"}, 30},
		{"authpool_subscription_burn_rate_usd_per_hour", map[string]string{"subscription": "sub1"}, 1.5},
		{"authpool_subscription_status", map[string]string{"subscription": "sub1", "status": "available"}, 1},
		{"authpool_subscription_status", map[string]string{"subscription": "sub1", "status": "limited"}, 0},
		{"authpool_subscription_status", map[string]string{"subscription": "sub2", "status": "limited"}, 1},
		{"authpool_subscription_status", map[string]string{"subscription": "sub2", "status": "available"}, 0},
	}
	for _, tt := range tests {
		if got := value(find(t, fams, tt.name, tt.labels)); got != tt.want {
			t.Errorf("%s%v = %v, want %v", tt.name, tt.labels, got, tt.want)
		}
	}
	if n := len(fams["authpool_subscription_status"].GetMetric()); n != 2*len(testStatuses) {
		t.Errorf("authpool_subscription_status has %d series, want %d (every status of both)", n, 2*len(testStatuses))
	}

	hists := []struct {
		name   string
		labels map[string]string
		count  uint64
		sum    float64
		le     float64 // a bucket bound
		under  uint64  // observations ≤ le
	}{
		// 0.7 ms falls in the sub-millisecond bucket: allocation buckets are ms-range.
		{"authpool_allocation_duration_seconds", nil, 3, 0.0057, 0.001, 1},
		{"authpool_rebalance_duration_seconds", nil, 1, 0.04, 0.05, 1},
		// 4 s and 90 s: backend buckets reach minutes.
		{"authpool_backend_request_duration_seconds", map[string]string{"backend": "claude-cli", "kind": "complete"}, 2, 94, 5, 1},
		{"authpool_http_request_duration_seconds", map[string]string{"route": "/health"}, 1, 0.001, 0.005, 1},
	}
	for _, h := range hists {
		s := find(t, fams, h.name, h.labels).GetHistogram()
		if s.GetSampleCount() != h.count || abs(s.GetSampleSum()-h.sum) > 1e-9 {
			t.Errorf("%s: count %d sum %v, want %d and %v", h.name, s.GetSampleCount(), s.GetSampleSum(), h.count, h.sum)
		}
		found := false
		for _, b := range s.GetBucket() {
			if b.GetUpperBound() == h.le {
				found = true
				if b.GetCumulativeCount() != h.under {
					t.Errorf("%s: %d observations ≤ %v, want %d", h.name, b.GetCumulativeCount(), h.le, h.under)
				}
			}
		}
		if !found {
			t.Errorf("%s: no bucket le=%v", h.name, h.le)
		}
	}
}

func abs(f float64) float64 {
	if f < 0 {
		return -f
	}
	return f
}

func TestLeaderFollowsSetLeader(t *testing.T) {
	m := newTestMetrics(t, nil)
	for _, leading := range []bool{true, false, true, false} {
		m.SetLeader(leading)
		want := 0.0
		if leading {
			want = 1
		}
		if got := value(find(t, scrape(t, m), "authpool_leader", nil)); got != want {
			t.Fatalf("SetLeader(%v): authpool_leader = %v", leading, got)
		}
	}
}

func TestNilMetricsRecordNothing(t *testing.T) {
	var m *Metrics
	exercise(m) // must not panic
	if err := m.ObserveSubscriptions(testStatuses, nil); err != nil {
		t.Fatal(err)
	}
	if err := m.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestDeployMetricsListIsExported checks deploy/metrics.txt, the list the
// dashboard and the alert rules are checked against, names only metrics this
// registry exports.
func TestDeployMetricsListIsExported(t *testing.T) {
	f, err := os.Open("../../deploy/metrics.txt")
	if errors.Is(err, os.ErrNotExist) {
		t.Skip("deploy/metrics.txt does not exist yet")
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m := newTestMetrics(t, func(context.Context) ([]SubscriptionSample, error) { return testSamples(), nil })
	exercise(m)
	if err := m.ObserveSavings(func(context.Context) ([]SavingsSample, error) {
		return []SavingsSample{{Window: "7d", SavedUSD: 12.5, FallbackUSD: 1.25, Share: 0.9}}, nil
	}); err != nil {
		t.Fatal(err)
	}
	fams := scrape(t, m)
	if got := value(find(t, fams, "authpool_savings_usd", map[string]string{"window": "7d"})); got != 12.5 {
		t.Errorf("authpool_savings_usd = %v, want 12.5", got)
	}
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		name := strings.TrimSpace(sc.Text())
		if name == "" || strings.HasPrefix(name, "#") {
			continue
		}
		n++
		if _, ok := fams[name]; !ok {
			t.Errorf("deploy/metrics.txt names %s, which is not exported", name)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("deploy/metrics.txt lists no metric")
	}
}

// A window's utilization and reset are exported per subscription and
// window; a window never observed has no series.
func TestWindowGauges(t *testing.T) {
	m := newTestMetrics(t, func(context.Context) ([]SubscriptionSample, error) { return testSamples(), nil })
	fams := scrape(t, m)
	lbl := map[string]string{"subscription": "sub2", "window": "five_hour"}
	if got := value(find(t, fams, "authpool_subscription_window_utilization", lbl)); got != 0.42 {
		t.Fatalf("utilization = %v, want 0.42", got)
	}
	if got := value(find(t, fams, "authpool_subscription_window_reset_timestamp_seconds", lbl)); got != 1796050800 {
		t.Fatalf("reset = %v, want 1796050800", got)
	}
	for _, mf := range fams["authpool_subscription_window_utilization"].GetMetric() {
		for _, l := range mf.GetLabel() {
			if l.GetName() == "window" && l.GetValue() == "seven_day" {
				t.Fatalf("a window never observed has a series: %v", mf)
			}
		}
	}
}
