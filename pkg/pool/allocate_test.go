package pool_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/authpool/authpool/internal/pooltest"
	"github.com/authpool/authpool/internal/redistest"

	. "github.com/authpool/authpool/pkg/pool"
)

func TestAllocateResumesAndBinds(t *testing.T) {
	redistest.EachParallel(t, func(t *testing.T, tg *redistest.Target) {
		p := newPool(t, tg, pooltest.Config(3, 100, 5))
		a := mustAllocate(t, p, "s1", PriorityNormal)
		if a.Kind != Bound || a.Subscription.ID == "" {
			t.Fatalf("first allocation = %+v, want bound", a)
		}
		mustSettle(t, p, Usage{RequestID: "r1", SubscriptionID: a.Subscription.ID, SessionID: "s1",
			CostUSD: 0.5, CLISession: "cli-abc"})
		b := mustAllocate(t, p, "s1", PriorityNormal)
		if b.Kind != Resumed || b.Subscription.ID != a.Subscription.ID || b.CLISession != "cli-abc" {
			t.Fatalf("second allocation = %+v, want resumed on %s with cli-abc", b, a.Subscription.ID)
		}
		sess, err := p.Session(context.Background(), "s1")
		if err != nil || sess.Subscription != a.Subscription.ID || sess.Requests != 1 || sess.CostUSD != 0.5 {
			t.Fatalf("session = %+v, %v", sess, err)
		}
		sub, err := p.Release(context.Background(), "s1")
		if err != nil || sub != a.Subscription.ID {
			t.Fatalf("release = %q, %v", sub, err)
		}
		if got := subStatus(t, p, a.Subscription.ID).Clients; got != 0 {
			t.Fatalf("clients after release = %d", got)
		}
		if _, err := p.Release(context.Background(), "s1"); !errors.Is(err, ErrSessionNotFound) {
			t.Fatalf("second release err = %v", err)
		}
	})
}

func TestAllocateRejectsBadInput(t *testing.T) {
	tg := redistest.Mini(t)
	p := newPool(t, tg, pooltest.Config(1, 100, 5))
	for _, sid := range []string{"", "a b", "x:y", "{tag}", "../x", string(make([]byte, 129))} {
		if _, err := p.Allocate(context.Background(), sid, PriorityNormal); !errors.Is(err, ErrInvalidSession) {
			t.Errorf("Allocate(%q) err = %v, want ErrInvalidSession", sid, err)
		}
	}
	if _, err := p.Allocate(context.Background(), "ok", "urgent"); !errors.Is(err, ErrInvalidPriority) {
		t.Errorf("bad priority err = %v", err)
	}
	for _, k := range tg.Mini.Keys() {
		if k != p.Keys().Subs() && k != p.Keys().Sub("sub00") && k != p.Keys().Config() &&
			k != p.Keys().Rank() && k != p.Keys().RankAt() {
			t.Errorf("bad input reached Redis: key %q", k)
		}
	}
	if _, err := p.Settle(context.Background(), Usage{RequestID: "r", SubscriptionID: "nope"}); !errors.Is(err, ErrUnknownSubscription) {
		t.Errorf("settle unknown sub err = %v", err)
	}
	if _, err := p.Settle(context.Background(), Usage{RequestID: "r", SubscriptionID: "sub00", CostUSD: -1}); !errors.Is(err, ErrInvalidUsage) {
		t.Errorf("negative cost err = %v", err)
	}
}

// Fair spreading: ranking by the unclamped score spreads new sessions evenly
// (the earlier version, clamping before ranking, gave 102, 22, 22, …).
func TestFairSpreading(t *testing.T) {
	redistest.EachParallel(t, func(t *testing.T, tg *redistest.Target) {
		p := newPool(t, tg, pooltest.Config(10, 100, 40))
		for i := 0; i < 300; i++ {
			mustAllocate(t, p, fmt.Sprintf("s%03d", i), PriorityNormal)
		}
		snap, err := p.Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		var got []int
		for _, s := range snap.Subscriptions {
			got = append(got, s.Clients)
			if s.Clients < 29 || s.Clients > 31 {
				t.Errorf("%s has %d clients, want 30±1", s.ID, s.Clients)
			}
		}
		t.Logf("distribution: %v", got)
	})
}

// 100 parallel allocations on a 45-slot pool bind exactly 45; the rest fall
// back, and the client sets hold exactly the bound sessions.
func TestParallelAllocationsNeverOverfill(t *testing.T) {
	redistest.EachParallel(t, func(t *testing.T, tg *redistest.Target) {
		cfg := pooltest.Config(3, 100, 15)
		pools := []*Pool{newPool(t, tg, cfg), New(tg.Client, cfg, Options{}), New(tg.Client, cfg, Options{})}
		var mu sync.Mutex
		bound, fallback := 0, 0
		var wg sync.WaitGroup
		for i := 0; i < 100; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				a, err := pools[i%3].Allocate(context.Background(), fmt.Sprintf("p%03d", i), PriorityNormal)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				defer mu.Unlock()
				if a.Kind == Fallback {
					fallback++
					if a.Reason != "capacity" {
						t.Errorf("fallback reason = %q, want capacity", a.Reason)
					}
				} else {
					bound++
				}
			}(i)
		}
		wg.Wait()
		if bound != 45 || fallback != 55 {
			t.Fatalf("bound %d, fallback %d; want 45, 55", bound, fallback)
		}
		total := 0
		for _, s := range cfg.Subscriptions {
			n, _ := tg.Client.ZCard(context.Background(), pools[0].Keys().Clients(s.ID)).Result()
			if n != 15 {
				t.Errorf("%s has %d clients, want 15", s.ID, n)
			}
			total += int(n)
		}
		if total != 45 {
			t.Fatalf("client sets hold %d sessions, want 45", total)
		}
	})
}

func TestPriorityAdmission(t *testing.T) {
	// threshold 0.85: low admits under 0.75, normal under 0.85, high under 0.95.
	cases := []struct {
		used      float64
		pr        Priority
		wantBound bool
	}{
		{70, PriorityLow, true}, {76, PriorityLow, false},
		{84, PriorityNormal, true}, {86, PriorityNormal, false},
		{94, PriorityHigh, true}, {96, PriorityHigh, false},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%s-%v", c.pr, c.used), func(t *testing.T) {
			tg := redistest.Mini(t)
			p := newPool(t, tg, pooltest.Config(1, 100, 10))
			mustSettle(t, p, Usage{RequestID: "seed", SubscriptionID: "sub00", CostUSD: c.used})
			a, err := p.Allocate(context.Background(), "s", c.pr)
			if err != nil {
				t.Fatal(err)
			}
			if got := a.Kind != Fallback; got != c.wantBound {
				t.Fatalf("used %v, %s: kind %s (reason %s)", c.used, c.pr, a.Kind, a.Reason)
			}
			if !c.wantBound && a.Reason != "weekly_budget" {
				t.Fatalf("reason = %q, want weekly_budget", a.Reason)
			}
		})
	}
}

func TestLimitedSubscriptionRotatesSessions(t *testing.T) {
	redistest.EachParallel(t, func(t *testing.T, tg *redistest.Target) {
		p := newPool(t, tg, pooltest.Config(2, 100, 10))
		ctx := context.Background()
		a := mustAllocate(t, p, "s1", PriorityNormal)
		reset := time.Now().Add(2 * time.Hour)
		m, err := p.Mark(ctx, a.Subscription.ID, StatusLimited, "usage_limit", reset)
		if err != nil || !m.Changed || m.Until.UnixMilli() != reset.UnixMilli() {
			t.Fatalf("mark = %+v, %v", m, err)
		}
		// A second mark of the same limit writes no second event.
		if m2, _ := p.Mark(ctx, a.Subscription.ID, StatusLimited, "usage_limit", reset); m2.Changed {
			t.Fatalf("second mark changed state")
		}
		if n := len(events(t, tg, p, "limit_reached")); n != 1 {
			t.Fatalf("limit_reached events = %d, want 1", n)
		}
		b := mustAllocate(t, p, "s1", PriorityNormal)
		if b.Kind != Bound || b.Subscription.ID == a.Subscription.ID || b.From != a.Subscription.ID || b.Reason != "limited" {
			t.Fatalf("after limit: %+v", b)
		}
		rot := events(t, tg, p, "rotation")
		if len(rot) != 1 || rot[0]["subscriptionId"] != a.Subscription.ID {
			t.Fatalf("rotation events = %v", rot)
		}
		// Now limit the other: with fallback on, the session fails over.
		if _, err := p.Mark(ctx, b.Subscription.ID, StatusLimited, "usage_limit", reset); err != nil {
			t.Fatal(err)
		}
		c := mustAllocate(t, p, "s1", PriorityNormal)
		if c.Kind != Fallback || c.Reason != "all_unavailable" || c.RetryAfter <= 0 || c.RetryAfter > 2*time.Hour {
			t.Fatalf("all limited: %+v", c)
		}
		if n := len(events(t, tg, p, "failover")); n != 1 {
			t.Fatalf("failover events = %d, want 1", n)
		}
		// Fallback off: exhausted with the time until the earliest reset.
		off := false
		cfg := *p.Config()
		cfg.FallbackWhenExhausted = &off
		q := New(tg.Client, &cfg, Options{})
		_, err = q.Allocate(ctx, "s2", PriorityNormal)
		var ex *ExhaustedError
		if !errors.As(err, &ex) || !errors.Is(err, ErrPoolExhausted) || ex.RetryAfter <= 0 {
			t.Fatalf("fallback off: err = %v", err)
		}
	})
}
