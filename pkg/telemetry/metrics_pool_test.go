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

	"github.com/authpool/authpool/internal/testutil"
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
	if err := m.ObserveSubscriptions(testStatuses, func(context.Context) ([]SubscriptionSample, error) {
		calls.Add(1)
		s := testSamples()
		s[0].WeeklyUsed = used
		return s, nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := m.ObserveSubscriptions(testStatuses, func(context.Context) ([]SubscriptionSample, error) { return nil, nil }); !errors.Is(err, ErrAlreadyObserving) {
		t.Fatalf("second ObserveSubscriptions: %v, want ErrAlreadyObserving", err)
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
	m := newTestMetrics(t, func(context.Context) ([]SubscriptionSample, error) {
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
	if out := logged.String(); !strings.Contains(out, "subscription samples") || !strings.Contains(out, "connection refused") {
		t.Errorf("the failure did not reach the process logger: %q", out)
	}
}
