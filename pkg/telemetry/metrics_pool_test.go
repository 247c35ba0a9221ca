package telemetry

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authpool/authpool/internal/redistest"
	"github.com/authpool/authpool/internal/testutil"
	"github.com/authpool/authpool/pkg/pool"
)

func TestPoolSnapshotIsCachedBetweenScrapes(t *testing.T) {
	var calls atomic.Int32
	m, err := NewMetrics(MetricsOptions{PoolCacheTTL: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = m.Shutdown(context.Background()) }()
	var mu sync.Mutex
	now := time.Unix(1_700_000_000, 0)
	m.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	used := 1.0
	if err := m.ObservePool(func(context.Context) (*pool.Snapshot, error) {
		calls.Add(1)
		s := testSnapshot()
		s.Subscriptions[0].WeeklyUsed = used
		return s, nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := m.ObservePool(func(context.Context) (*pool.Snapshot, error) { return nil, nil }); !errors.Is(err, ErrAlreadyObserving) {
		t.Fatalf("second ObservePool: %v, want ErrAlreadyObserving", err)
	}

	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	var wg sync.WaitGroup
	for range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Get(srv.URL)
			if err != nil {
				t.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
		}()
	}
	wg.Wait()
	if calls.Load() != 1 {
		t.Fatalf("5 scrapes within the TTL read the pool %d times, want 1", calls.Load())
	}
	used = 2
	mu.Lock()
	now = now.Add(11 * time.Second)
	mu.Unlock()
	got := value(find(t, scrape(t, m), "authpool_subscription_weekly_used_usd", map[string]string{"subscription": "sub1"}))
	if calls.Load() != 2 || got != 2 {
		t.Fatalf("after the TTL: %d reads, weekly used %v; want 2 reads and the new value 2", calls.Load(), got)
	}
}

func TestPoolSnapshotFailureKeepsTheRestOfTheScrape(t *testing.T) {
	var logged testutil.Buffer
	SetOTelErrorLogger(slog.New(slog.NewTextHandler(&logged, nil)))
	defer SetOTelErrorLogger(discardLogger())
	m := newTestMetrics(t, func(context.Context) (*pool.Snapshot, error) {
		return nil, errors.New("redis: connection refused")
	})
	exercise(m)
	fams := scrape(t, m)
	if _, ok := fams["authpool_subscription_weekly_used_usd"]; ok {
		t.Error("per-subscription gauges exported without a snapshot")
	}
	if _, ok := fams["authpool_allocations_total"]; !ok {
		t.Error("a failing snapshot hid the other metrics")
	}
	if out := logged.String(); !strings.Contains(out, "pool snapshot") || !strings.Contains(out, "connection refused") {
		t.Errorf("the failure did not reach the process logger: %q", out)
	}
}

func TestObservePoolReadsARealPool(t *testing.T) {
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
	m := newTestMetrics(t, p.Status)
	fams := scrape(t, m)
	sub := map[string]string{"subscription": "sub1"}
	for name, want := range map[string]float64{
		"authpool_subscription_weekly_used_usd":   2.5,
		"authpool_subscription_weekly_budget_usd": 100,
		"authpool_subscription_clients":           1,
		"authpool_subscription_block_cost_usd":    2.5,
	} {
		if got := value(find(t, fams, name, sub)); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if got := value(find(t, fams, "authpool_subscription_status", map[string]string{"subscription": "sub1", "status": "available"})); got != 1 {
		t.Errorf("status available = %v, want 1", got)
	}
	if h := value(find(t, fams, "authpool_subscription_health_score", sub)); h <= 0 || h > 100 {
		t.Errorf("health score %v, want in (0, 100]", h)
	}
	if b := value(find(t, fams, "authpool_subscription_burn_rate_usd_per_hour", sub)); b <= 0 {
		t.Errorf("burn rate %v, want > 0 after a settled request", b)
	}
}
