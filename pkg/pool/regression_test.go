package pool

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/authpool/authpool/internal/redistest"
)

// Regression tests from a review of the scripts: each failed before its fix.

// TestLateSettleNeverOverfills: a settle from a subscription the session has
// left must not keep the session alive past its client-set entry, and a
// session whose entry went stale comes back only through the cap check.
func TestLateSettleNeverOverfills(t *testing.T) {
	tg := redistest.Mini(t)
	clk := newClock(tg, time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	p := newPool(t, tg, testConfig(2, 100, 1))
	ctx := context.Background()

	first := mustAllocate(t, p, "S", PriorityNormal).Subscription.ID
	other := map[string]string{"sub00": "sub01", "sub01": "sub00"}[first]
	// A request of S is in flight on first when first hits its limit; S's
	// next request moves it to other.
	if _, err := p.Mark(ctx, first, StatusLimited, "usage_limit", clk.now.Add(100*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got := mustAllocate(t, p, "S", PriorityNormal).Subscription.ID; got != other {
		t.Fatalf("S moved to %s, want %s", got, other)
	}
	clk.advance(20 * time.Minute)
	mustSettle(t, p, Usage{RequestID: "late", SubscriptionID: first, SessionID: "S", CostUSD: 0.1})
	clk.advance(45 * time.Minute) // past the stale age (1 h) since S last touched other

	// T takes other's only slot; S must not squeeze in beside it.
	if got := mustAllocate(t, p, "T", PriorityNormal); got.Subscription.ID != other {
		t.Fatalf("T = %+v, want %s", got, other)
	}
	s := mustAllocate(t, p, "S", PriorityNormal)
	if n := subStatus(t, p, other).Clients; n > 1 {
		t.Fatalf("%s has %d live clients with a cap of 1 (S: %+v)", other, n, s)
	}
	if s.Kind != Fallback {
		t.Errorf("S = %+v, want the fallback: the only usable subscription is full", s)
	}
}

// TestStaleEntryResumesThroughCapCheck: a session whose client-set entry
// went stale while its hash lived on gets its subscription back when there
// is room, with its CLI session.
func TestStaleEntryResumesThroughCapCheck(t *testing.T) {
	tg := redistest.Mini(t)
	p := newPool(t, tg, testConfig(1, 100, 2))
	a := mustAllocate(t, p, "S", PriorityNormal)
	mustSettle(t, p, Usage{RequestID: "r", SubscriptionID: a.Subscription.ID, SessionID: "S", CLISession: "cli-1"})
	// The entry ages out of the live window (as after a desync); the hash stays.
	ck := p.keys.Clients(a.Subscription.ID)
	if err := tg.Client.ZAdd(context.Background(), ck, redisZ(1, "S")).Err(); err != nil {
		t.Fatal(err)
	}
	b := mustAllocate(t, p, "S", PriorityNormal)
	if b.Kind != Resumed || b.Subscription.ID != a.Subscription.ID || b.CLISession != "cli-1" {
		t.Fatalf("allocation = %+v, want resumed on %s with cli-1", b, a.Subscription.ID)
	}
	if n := subStatus(t, p, a.Subscription.ID).Clients; n != 1 {
		t.Errorf("clients = %d, want 1", n)
	}
}

// TestReleaseWithStaleSubscriptionList: a replica whose subscription list
// lacks the session's subscription reloads it and removes the client entry.
func TestReleaseWithStaleSubscriptionList(t *testing.T) {
	redistest.Each(t, func(t *testing.T, tg *redistest.Target) {
		ctx := context.Background()
		old := newPool(t, tg, testConfig(2, 100, 5))
		cur := newPool(t, tg, testConfig(3, 100, 5))
		for _, id := range []string{"sub00", "sub01"} {
			if _, err := cur.Mark(ctx, id, StatusDisabled, "operator", time.Time{}); err != nil {
				t.Fatal(err)
			}
		}
		if got := mustAllocate(t, cur, "S", PriorityNormal).Subscription.ID; got != "sub02" {
			t.Fatalf("S on %s, want sub02", got)
		}
		sub, err := old.Release(ctx, "S")
		if err != nil || sub != "sub02" {
			t.Fatalf("release = %q, %v", sub, err)
		}
		if n, err := tg.Client.ZCard(ctx, cur.keys.Clients("sub02")).Result(); err != nil || n != 0 {
			t.Errorf("sub02 still lists %d clients after the release (%v)", n, err)
		}
	})
}

// TestDisabledStaysDisabled: a backend's limit or failure does not replace
// an operator's disabled status (whose expiry would re-enable it).
func TestDisabledStaysDisabled(t *testing.T) {
	tg := redistest.Mini(t)
	clk := newClock(tg, time.Date(2030, 1, 1, 10, 0, 0, 0, time.UTC))
	p := newPool(t, tg, testConfig(1, 100, 5))
	ctx := context.Background()
	if _, err := p.Mark(ctx, "sub00", StatusDisabled, "operator", time.Time{}); err != nil {
		t.Fatal(err)
	}
	for _, st := range []string{StatusCooldown, StatusLimited} {
		r, err := p.Mark(ctx, "sub00", st, "auth", time.Time{})
		if err != nil || r.Changed || r.Status != StatusDisabled {
			t.Errorf("mark %s on disabled = %+v, %v; want unchanged", st, r, err)
		}
	}
	clk.advance(2 * time.Hour)
	if a := mustAllocate(t, p, "S", PriorityNormal); a.Kind != Fallback {
		t.Errorf("allocation = %+v: a disabled subscription served traffic", a)
	}
	if r, err := p.Mark(ctx, "sub00", StatusAvailable, "operator", time.Time{}); err != nil || r.Status != StatusAvailable {
		t.Errorf("operator re-enable = %+v, %v", r, err)
	}
}

// TestSettleRefusesOutOfBoundsUsage: usage the scripts cannot sum exactly is
// refused before anything is written, so a corrected retry still counts.
func TestSettleRefusesOutOfBoundsUsage(t *testing.T) {
	redistest.Each(t, func(t *testing.T, tg *redistest.Target) {
		ctx := context.Background()
		p := newPool(t, tg, testConfig(1, 100, 5))
		for _, u := range []Usage{
			{RequestID: "r", SubscriptionID: "sub00", CostUSD: 3, InputTokens: 1 << 60},
			{RequestID: "r", SubscriptionID: "sub00", CostUSD: 3, CacheReadTokens: MaxRequestTokens + 1},
			{RequestID: "r", SubscriptionID: "sub00", CostUSD: MaxCostUSD * 2},
		} {
			if _, err := p.Settle(ctx, u); !errors.Is(err, ErrInvalidUsage) {
				t.Errorf("settle %+v err = %v, want ErrInvalidUsage", u, err)
			}
		}
		s := mustSettle(t, p, Usage{RequestID: "r", SubscriptionID: "sub00", CostUSD: 3, InputTokens: 10})
		if s.Duplicate {
			t.Fatal("the corrected retry counted as a duplicate")
		}
		if st := subStatus(t, p, "sub00"); st.Requests != 1 || !near(st.WeeklyUsed, 3) {
			t.Errorf("status = requests %d, weekly %v; want 1, 3", st.Requests, st.WeeklyUsed)
		}
	})
}

// TestClockStepBackKeepsUsage: when Redis' clock steps back across an hour
// (a failover to a server a little behind), the newest hour's usage is kept.
func TestClockStepBackKeepsUsage(t *testing.T) {
	tg := redistest.Mini(t)
	start := time.Date(2030, 1, 1, 10, 0, 5, 0, time.UTC)
	newClock(tg, start)
	p := newPool(t, tg, testConfig(1, 100, 5))
	mustSettle(t, p, Usage{RequestID: "r1", SubscriptionID: "sub00", CostUSD: 10})
	tg.Mini.SetTime(start.Add(-10 * time.Second))
	mustAllocate(t, p, "S1", PriorityNormal)
	tg.Mini.SetTime(start.Add(time.Minute))
	mustAllocate(t, p, "S2", PriorityNormal)
	if st := subStatus(t, p, "sub00"); !near(st.WeeklyUsed, 10) {
		t.Errorf("weekly used = %v after the clock stepped back, want 10", st.WeeklyUsed)
	}
}

func redisZ(score float64, member string) redis.Z { return redis.Z{Score: score, Member: member} }

// TestPoolSurvivesRedisDataLoss: after Redis lost everything (a restart
// without persistence), the next allocation writes the config again and
// binds to a subscription instead of reporting an empty pool.
func TestPoolSurvivesRedisDataLoss(t *testing.T) {
	redistest.Each(t, func(t *testing.T, tg *redistest.Target) {
		ctx := context.Background()
		p := newPool(t, tg, testConfig(2, 100, 5))
		mustAllocate(t, p, "before", PriorityNormal)
		if err := tg.Client.FlushAll(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		if err := tg.Client.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		a := mustAllocate(t, p, "after", PriorityNormal)
		if a.Kind != Bound {
			t.Fatalf("allocation after the data loss = %+v, want bound", a)
		}
		if n := len(subStatusAll(t, p)); n != 2 {
			t.Errorf("status lists %d subscriptions after the re-sync, want 2", n)
		}
	})
}

func subStatusAll(t *testing.T, p *Pool) []SubscriptionStatus {
	t.Helper()
	snap, err := p.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return snap.Subscriptions
}
