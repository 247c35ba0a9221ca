package pool

import (
	"context"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/authpool/authpool/internal/redistest"
)

func near(a, b float64) bool { return math.Abs(a-b) < 1e-6 }

func TestSettleCountsEachRequestOnce(t *testing.T) {
	redistest.Each(t, func(t *testing.T, tg *redistest.Target) {
		p := newPool(t, tg, testConfig(1, 100, 5))
		mustAllocate(t, p, "s1", PriorityNormal)
		u := Usage{RequestID: "req-1", SubscriptionID: "sub00", SessionID: "s1", CostUSD: 1.234567,
			InputTokens: 10, OutputTokens: 5, Model: "claude-sonnet-4-5",
			ModelUsage: []byte(`{"claude-sonnet-4-5":{"inputTokens":10,"outputTokens":5,"costUSD":1.234567}}`)}
		first := mustSettle(t, p, u)
		again := mustSettle(t, p, u)
		if first.Duplicate || !again.Duplicate {
			t.Fatalf("first %+v, again %+v", first, again)
		}
		s := subStatus(t, p, "sub00")
		if !near(s.WeeklyUsed, 1.234567) || s.Requests != 1 || s.Tokens != 15 {
			t.Fatalf("after duplicate settle: %+v", s)
		}
		n, _ := tg.Client.XLen(context.Background(), p.keys.Usage()).Result()
		if n != 1 {
			t.Fatalf("usage stream has %d entries, want 1", n)
		}
		sess, _ := p.Session(context.Background(), "s1")
		if sess.Requests != 1 || !near(sess.CostUSD, 1.234567) {
			t.Fatalf("session %+v", sess)
		}
		// Fallback usage is recorded too, under the fallback.
		mustSettle(t, p, Usage{RequestID: "req-2", CostUSD: 2})
		fb, _ := tg.Client.HGet(context.Background(), p.keys.Fallback(), "weeklyUsed").Result()
		if fb != "2.000000" {
			t.Fatalf("fallback weeklyUsed = %q", fb)
		}
	})
}

// Money is summed exactly: 10,000 settles of 0.000123 USD make 1.23 USD.
func TestSettleSumsExactly(t *testing.T) {
	tg := redistest.Mini(t)
	p := newPool(t, tg, testConfig(1, 1000, 5))
	for i := 0; i < 1000; i++ {
		mustSettle(t, p, Usage{RequestID: fmt.Sprintf("r%d", i), SubscriptionID: "sub00", CostUSD: 0.000123})
	}
	if got, _ := tg.Client.HGet(context.Background(), p.keys.Sub("sub00"), "weeklyUsed").Result(); got != "0.123000" {
		t.Fatalf("weeklyUsed = %q, want 0.123000", got)
	}
}

func TestBlocksFollowCcusage(t *testing.T) {
	tg := redistest.Mini(t)
	c := newClock(tg, time.Date(2026, 11, 23, 10, 17, 0, 0, time.UTC))
	p := newPool(t, tg, testConfig(1, 100, 5))
	s := mustSettle(t, p, Usage{RequestID: "a", SubscriptionID: "sub00", CostUSD: 1})
	st := subStatus(t, p, "sub00")
	if !st.BlockActive || !st.BlockStart.Equal(time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)) {
		t.Fatalf("block start = %v active=%v, want 10:00", st.BlockStart, st.BlockActive)
	}
	// 17 minutes into the block: burn = 1 USD / (17/60 h).
	if !near(s.BurnRate, 1/(17.0/60)) {
		t.Fatalf("burn rate = %v", s.BurnRate)
	}
	c.advance(4*time.Hour + 33*time.Minute) // 14:50, same block
	s = mustSettle(t, p, Usage{RequestID: "b", SubscriptionID: "sub00", CostUSD: 2})
	if !near(s.BlockCost, 3) {
		t.Fatalf("block cost in same block = %v, want 3", s.BlockCost)
	}
	c.advance(15 * time.Minute) // 15:05: the block ended at 15:00
	if st := subStatus(t, p, "sub00"); st.BlockActive || st.BlockCost != 0 || st.Health.IdleBonus != 10 {
		t.Fatalf("after block end: active=%v cost=%v bonus=%v", st.BlockActive, st.BlockCost, st.Health.IdleBonus)
	}
	s = mustSettle(t, p, Usage{RequestID: "c", SubscriptionID: "sub00", CostUSD: 0.5})
	st = subStatus(t, p, "sub00")
	if !near(s.BlockCost, 0.5) || !st.BlockStart.Equal(time.Date(2026, 11, 23, 15, 0, 0, 0, time.UTC)) {
		t.Fatalf("new block: cost %v start %v", s.BlockCost, st.BlockStart)
	}
	// Five minutes in: elapsed is taken as at least 15 minutes.
	if !near(s.BurnRate, 0.5/0.25) {
		t.Fatalf("early burn rate = %v, want 2", s.BurnRate)
	}
	if !near(st.WeeklyUsed, 3.5) {
		t.Fatalf("weekly = %v", st.WeeklyUsed)
	}
}

func TestWeeklyWindowRolls(t *testing.T) {
	tg := redistest.Mini(t)
	c := newClock(tg, time.Date(2026, 11, 2, 9, 30, 0, 0, time.UTC))
	p := newPool(t, tg, testConfig(1, 100, 5))
	mustSettle(t, p, Usage{RequestID: "old", SubscriptionID: "sub00", CostUSD: 40})
	c.advance(3 * 24 * time.Hour)
	mustSettle(t, p, Usage{RequestID: "mid", SubscriptionID: "sub00", CostUSD: 10})
	if w := subStatus(t, p, "sub00").WeeklyUsed; !near(w, 50) {
		t.Fatalf("weekly after 3 days = %v, want 50", w)
	}
	c.advance(4*24*time.Hour + time.Hour) // the first usage is now 7 d 1 h old
	if w := subStatus(t, p, "sub00").WeeklyUsed; !near(w, 10) {
		t.Fatalf("status weekly after 7 days = %v, want 10", w)
	}
	s := mustSettle(t, p, Usage{RequestID: "new", SubscriptionID: "sub00", CostUSD: 1})
	if !near(s.WeeklyUsed, 11) {
		t.Fatalf("settled weekly = %v, want 11", s.WeeklyUsed)
	}
	n, _ := tg.Client.HLen(context.Background(), p.keys.Hourly("sub00")).Result()
	if n != 2 {
		t.Fatalf("hourly buckets = %d, want 2 (the old one deleted)", n)
	}
	if l, _ := tg.Client.XLen(context.Background(), p.keys.Usage()).Result(); l != 2 {
		t.Fatalf("usage stream = %d entries, want 2 (7-day retention)", l)
	}
}

func TestThresholdEventOncePerCrossing(t *testing.T) {
	tg := redistest.Mini(t)
	c := newClock(tg, time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC))
	p := newPool(t, tg, withRules(testConfig(1, 100, 5), 0.8, 0.9))
	settle := func(id string, cost float64) Settlement {
		return mustSettle(t, p, Usage{RequestID: id, SubscriptionID: "sub00", CostUSD: cost})
	}
	if s := settle("a", 79); s.Status != StatusAvailable {
		t.Fatalf("at 79%%: %s", s.Status)
	}
	if s := settle("b", 2); s.Status != StatusApproaching {
		t.Fatalf("at 81%%: %s, want approaching", s.Status)
	}
	settle("c", 1) // 82%: no second event
	settle("d", 9) // 91%: the 0.9 rule
	evs := events(t, tg, p, "usage_threshold")
	if len(evs) != 2 {
		t.Fatalf("usage_threshold events = %d, want 2", len(evs))
	}
	if evs[0]["data"] == nil || evs[0]["severity"] != "warning" {
		t.Fatalf("event = %v", evs[0])
	}
	// Usage falls out of the window; crossing again fires again, once.
	c.advance(8 * 24 * time.Hour)
	settle("e", 85)
	settle("f", 1)
	if n := len(events(t, tg, p, "usage_threshold")); n != 3 {
		t.Fatalf("after a new crossing: %d events, want 3", n)
	}
}

func TestLimitedRecoversWhenResetPasses(t *testing.T) {
	tg := redistest.Mini(t)
	start := time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)
	c := newClock(tg, start)
	p := newPool(t, tg, testConfig(1, 100, 5))
	if _, err := p.Mark(context.Background(), "sub00", StatusLimited, "usage_limit", start.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	c.advance(30 * time.Minute)
	if a := mustAllocate(t, p, "s1", PriorityNormal); a.Kind != Fallback || a.RetryAfter != 30*time.Minute {
		t.Fatalf("while limited: %+v", a)
	}
	c.advance(31 * time.Minute)
	if a := mustAllocate(t, p, "s1", PriorityNormal); a.Kind != Bound {
		t.Fatalf("after reset: %+v", a)
	}
	if n := len(events(t, tg, p, "recovered")); n != 1 {
		t.Fatalf("recovered events = %d", n)
	}
	// A limit with no reset time lasts until the end of the current block.
	mustSettle(t, p, Usage{RequestID: "x", SubscriptionID: "sub00", CostUSD: 1}) // block 10:00–15:00
	m, _ := p.Mark(context.Background(), "sub00", StatusLimited, "usage_limit", time.Time{})
	if want := time.Date(2026, 11, 2, 15, 0, 0, 0, time.UTC); !m.Until.Equal(want) {
		t.Fatalf("until = %v, want block end %v", m.Until, want)
	}
}

func TestStaleSessionsAreDropped(t *testing.T) {
	tg := redistest.Mini(t)
	c := newClock(tg, time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC))
	cfg := testConfig(1, 100, 2)
	cfg.StaleAfterSeconds = 600
	p := newPool(t, tg, cfg)
	mustAllocate(t, p, "a", PriorityNormal)
	mustAllocate(t, p, "b", PriorityNormal)
	if a := mustAllocate(t, p, "c", PriorityNormal); a.Kind != Fallback {
		t.Fatalf("third on a 2-client cap: %+v", a)
	}
	c.advance(5 * time.Minute)
	mustAllocate(t, p, "a", PriorityNormal) // a stays active
	c.advance(6 * time.Minute)              // b is now 11 minutes idle: stale
	if got := subStatus(t, p, "sub00").Clients; got != 1 {
		t.Fatalf("live clients = %d, want 1", got)
	}
	if _, err := p.Session(context.Background(), "b"); err == nil {
		t.Fatalf("stale session b still readable")
	}
	if a := mustAllocate(t, p, "c", PriorityNormal); a.Kind != Bound {
		t.Fatalf("c after b went stale: %+v", a)
	}
	epoch, _ := p.NextEpoch(context.Background())
	c.advance(11 * time.Minute)
	r, err := p.Maintain(context.Background(), epoch)
	// allocate counts only live clients; maintain prunes the stale entries
	// (b earlier, a and c now).
	if err != nil || r.DroppedClients != 3 {
		t.Fatalf("maintain = %+v, %v; want 3 dropped", r, err)
	}
	if n, _ := tg.Client.ZCard(context.Background(), p.keys.Clients("sub00")).Result(); n != 0 {
		t.Fatalf("client set holds %d entries after maintain", n)
	}
}
