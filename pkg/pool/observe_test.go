package pool_test

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/authpool/authpool/internal/pooltest"
	"github.com/authpool/authpool/internal/redistest"

	. "github.com/authpool/authpool/pkg/pool"
)

func frac(f float64) *float64 { return &f }

func mustObserve(t testing.TB, p *Pool, id string, obs ...Observation) ObserveResult {
	t.Helper()
	r, err := p.Observe(context.Background(), id, obs)
	if err != nil {
		t.Fatalf("observe %s: %v", id, err)
	}
	return r
}

// Two replicas record readings of one window out of order (the slower one
// records the older reading last): the newest observation stands, per
// window, whatever order they arrive in.
func TestObserveNewestWinsAcrossReplicas(t *testing.T) {
	tg := redistest.Real(t)
	ctx := context.Background()
	cfg := pooltest.Config(2, 100, 5)
	cfg.Pool = tg.Pool
	a := newPool(t, tg, cfg)
	b := New(tg.Client, cfg, Options{})
	now := time.Now()
	reset := now.Add(3 * time.Hour).Truncate(time.Second)
	newer := Observation{Window: WindowFiveHour, Utilization: frac(0.7), ResetAt: reset, Status: "allowed",
		ObservedAt: now}
	older := Observation{Window: WindowFiveHour, Utilization: frac(0.2), ResetAt: reset, Status: "allowed",
		ObservedAt: now.Add(-2 * time.Second)}
	if r := mustObserve(t, a, "sub00", newer); r.Applied != 1 {
		t.Fatalf("newer: %+v, want applied", r)
	}
	if r := mustObserve(t, b, "sub00", older); r.Applied != 0 {
		t.Fatalf("older after newer: %+v, want nothing applied", r)
	}
	// A seven_day reading of the same older time is another window: it lands.
	week := Observation{Window: WindowSevenDay, Utilization: frac(0.3), ResetAt: now.Add(48 * time.Hour),
		ObservedAt: now.Add(-2 * time.Second)}
	if r := mustObserve(t, b, "sub00", week); r.Applied != 1 {
		t.Fatalf("seven_day: %+v, want applied", r)
	}
	// Many goroutines of both replicas at once: still the newest.
	done := make(chan error, 40)
	for i := 0; i < 40; i++ {
		p := a
		if i%2 == 1 {
			p = b
		}
		o := Observation{Window: WindowFiveHour, Utilization: frac(float64(i) / 100), ResetAt: reset,
			ObservedAt: now.Add(-time.Duration(i+1) * time.Millisecond)}
		go func() { _, err := p.Observe(ctx, "sub00", []Observation{o}); done <- err }()
	}
	for i := 0; i < 40; i++ {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	st := subStatus(t, b, "sub00")
	w := st.Windows[WindowFiveHour]
	if w.Utilization == nil || *w.Utilization != 0.7 || !w.ObservedAt.Equal(now.Truncate(time.Millisecond)) {
		t.Fatalf("five_hour = %+v, want the newest reading 0.7 at %v", w, now)
	}
	if w.Source != SourceObserved || !w.Current || !w.ResetAt.Equal(reset) {
		t.Fatalf("five_hour = %+v, want current, observed, resetting at %v", w, reset)
	}
	if w7 := st.Windows[WindowSevenDay]; w7.Utilization == nil || *w7.Utilization != 0.3 {
		t.Fatalf("seven_day = %+v, want 0.3", w7)
	}
	if st.WeeklySource != SourceObserved || st.WeeklyPercent != 30 {
		t.Fatalf("weekly = %v%% (%s), want 30%% observed", st.WeeklyPercent, st.WeeklySource)
	}
}

// The observed seven_day utilization replaces the estimate while current,
// counts as 0 once its window has reset, and the weekly usage window is
// anchored at that reset.
func TestObservedWeekReplacesEstimateUntilReset(t *testing.T) {
	tg := redistest.Mini(t)
	start := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	c := newClock(tg, start)
	p := newPool(t, tg, pooltest.Config(2, 100, 5))
	mustSettle(t, p, Usage{RequestID: "r1", SubscriptionID: "sub00", CostUSD: 10})
	if st := subStatus(t, p, "sub00"); st.WeeklySource != SourceEstimate || st.WeeklyPercent != 10 {
		t.Fatalf("before any observation: %v%% (%s), want the 10%% estimate", st.WeeklyPercent, st.WeeklySource)
	}
	reset := start.Add(2 * time.Hour)
	mustObserve(t, p, "sub00", Observation{Window: WindowSevenDay, Utilization: frac(0.5), ResetAt: reset,
		ObservedAt: start})
	st := subStatus(t, p, "sub00")
	if st.WeeklySource != SourceObserved || st.WeeklyPercent != 50 {
		t.Fatalf("observed: %v%% (%s), want 50%% observed", st.WeeklyPercent, st.WeeklySource)
	}
	if st.Health.WeeklyPercent != 50 {
		t.Fatalf("health weekly%% = %v, want the observed 50", st.Health.WeeklyPercent)
	}
	c.advance(3 * time.Hour)
	// Usage after the reset: the anchored week holds only this, not the
	// 10 USD of the week before.
	mustSettle(t, p, Usage{RequestID: "r2", SubscriptionID: "sub00", CostUSD: 3})
	st = subStatus(t, p, "sub00")
	if st.WeeklySource != SourceReset || st.WeeklyPercent != 0 || st.Windows[WindowSevenDay].Current {
		t.Fatalf("after the reset: %v%% (%s) %+v, want 0%% (reset)", st.WeeklyPercent, st.WeeklySource,
			st.Windows[WindowSevenDay])
	}
	if st.WeeklyUsed != 3 {
		t.Fatalf("weekly used after the reset = %v, want 3 (anchored at the observed reset)", st.WeeklyUsed)
	}
}

// allowed_warning, or a utilization at or over the approaching threshold,
// makes a subscription approaching; new sessions go to the others first.
func TestObservedWarningApproaching(t *testing.T) {
	redistest.EachParallel(t, func(t *testing.T, tg *redistest.Target) {
		p := newPool(t, tg, pooltest.Config(2, 100, 5))
		now := time.Now()
		r := mustObserve(t, p, "sub00", Observation{Window: WindowSevenDay, Utilization: frac(0.9),
			ResetAt: now.Add(72 * time.Hour), Status: "allowed_warning", ObservedAt: now})
		if r.Status != StatusApproaching {
			t.Fatalf("status = %s, want approaching", r.Status)
		}
		if st := subStatus(t, p, "sub00"); st.Status != StatusApproaching {
			t.Fatalf("snapshot status = %s, want approaching", st.Status)
		}
		for i := 0; i < 4; i++ {
			if a := mustAllocate(t, p, "s"+string(rune('a'+i)), PriorityNormal); a.Subscription.ID != "sub01" {
				t.Fatalf("session %d went to %s, want sub01 (sub00 is at 90%% of its week)", i, a.Subscription.ID)
			}
		}
		// A status-only warning (no utilization) on the five_hour window.
		mustObserve(t, p, "sub01", Observation{Window: WindowFiveHour, Status: "allowed_warning",
			ResetAt: now.Add(time.Hour), ObservedAt: now})
		if st := subStatus(t, p, "sub01"); st.Status != StatusApproaching {
			t.Fatalf("sub01 = %s, want approaching on allowed_warning", st.Status)
		}
	})
}

// Pacing: an observed 5-hour utilization at or over blockAdmissionThreshold
// takes no new session until that window resets; the sessions already
// there continue.
func TestBlockAdmissionThreshold(t *testing.T) {
	tg := redistest.Mini(t)
	start := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	c := newClock(tg, start)
	cfg := pooltest.Config(2, 100, 5)
	p := newPool(t, tg, cfg)
	if got := mustAllocate(t, p, "old", PriorityNormal).Subscription.ID; got != "sub00" {
		t.Fatalf("first session on %s, want sub00", got)
	}
	mustObserve(t, p, "sub00", Observation{Window: WindowFiveHour, Utilization: frac(0.95),
		ResetAt: start.Add(time.Hour), Status: "allowed", ObservedAt: start})
	for i := 0; i < 3; i++ {
		if a := mustAllocate(t, p, "new"+string(rune('a'+i)), PriorityHigh); a.Subscription.ID != "sub01" {
			t.Fatalf("new session on %s, want sub01: sub00's 5-hour window is at 95%%", a.Subscription.ID)
		}
	}
	if a := mustAllocate(t, p, "old", PriorityNormal); a.Kind != Resumed || a.Subscription.ID != "sub00" {
		t.Fatalf("bound session: %+v, want it resumed on sub00", a)
	}
	c.advance(61 * time.Minute)
	if a := mustAllocate(t, p, "after", PriorityNormal); a.Subscription.ID != "sub00" {
		t.Fatalf("after the reset the new session went to %s, want sub00 (0 used, fewer clients)", a.Subscription.ID)
	}
	// Every subscription spent: the pool says why.
	for _, id := range []string{"sub00", "sub01"} {
		mustObserve(t, p, id, Observation{Window: WindowFiveHour, Utilization: frac(0.92),
			ResetAt: c.now.Add(time.Hour), ObservedAt: c.now})
	}
	if a := mustAllocate(t, p, "late", PriorityNormal); a.Kind != Fallback || a.Reason != "five_hour_window" {
		t.Fatalf("all spent: %+v, want fallback (five_hour_window)", a)
	}
}

// A usage_threshold rule fires on the observed utilization once per
// crossing per window period.
func TestObservedUsageThresholdOncePerPeriod(t *testing.T) {
	tg := redistest.Mini(t)
	start := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	c := newClock(tg, start)
	p := newPool(t, tg, pooltest.WithRules(pooltest.Config(1, 100, 5), 0.8))
	reset := start.Add(time.Hour)
	for i, u := range []float64{0.5, 0.81, 0.85, 0.9} {
		mustObserve(t, p, "sub00", Observation{Window: WindowFiveHour, Utilization: frac(u), ResetAt: reset,
			ObservedAt: start.Add(time.Duration(i) * time.Second)})
	}
	ev := events(t, tg, p, "usage_threshold")
	if len(ev) != 1 || !strings.Contains(ev[0]["message"].(string), "five_hour") {
		t.Fatalf("usage_threshold events: %v, want one naming five_hour", ev)
	}
	var d map[string]any
	if err := json.Unmarshal([]byte(ev[0]["data"].(string)), &d); err != nil || d["threshold"] != 0.8 ||
		d["window"] != "five_hour" {
		t.Fatalf("data = %v, want threshold 0.8, window five_hour", d)
	}
	c.advance(2 * time.Hour)
	mustObserve(t, p, "sub00", Observation{Window: WindowFiveHour, Utilization: frac(0.82),
		ResetAt: c.now.Add(3 * time.Hour), ObservedAt: c.now})
	if ev := events(t, tg, p, "usage_threshold"); len(ev) != 2 {
		t.Fatalf("after a new window period: %d events, want 2", len(ev))
	}
}

// A rejected reading names its window in the limit_reached event Mark
// writes, with the reading's reset.
func TestRejectedWindowLimitReached(t *testing.T) {
	redistest.EachParallel(t, func(t *testing.T, tg *redistest.Target) {
		p := newPool(t, tg, pooltest.Config(2, 100, 5))
		reset := time.Now().Add(time.Hour).Truncate(time.Second)
		mustObserve(t, p, "sub00", Observation{Window: WindowFiveHour, Utilization: frac(1), ResetAt: reset,
			Status: "rejected", ObservedAt: time.Now()})
		r, err := p.Mark(context.Background(), "sub00", StatusLimited, WindowFiveHour, reset)
		if err != nil || !r.Changed || !r.Until.Equal(reset) {
			t.Fatalf("mark: %+v %v, want limited until %v", r, err, reset)
		}
		ev := events(t, tg, p, "limit_reached")
		if len(ev) != 1 || !strings.Contains(ev[0]["message"].(string), "five_hour usage limit; resets at "+
			reset.UTC().Format(time.RFC3339)) {
			t.Fatalf("limit_reached: %v, want one naming five_hour and %v", ev, reset)
		}
		st := subStatus(t, p, "sub00")
		if st.Status != StatusLimited || st.Windows[WindowFiveHour].Status != "rejected" {
			t.Fatalf("sub00 = %s, window %+v", st.Status, st.Windows[WindowFiveHour])
		}
	})
}

// Refused logins count across replicas: cooldowns of 5, 10, 20 minutes in
// Redis, one auth_failed event for the episode, recovered at the first
// success.
func TestAuthFailuresDoubleAcrossReplicas(t *testing.T) {
	tg := redistest.Real(t)
	ctx := context.Background()
	cfg := pooltest.Config(2, 100, 5)
	cfg.Pool = tg.Pool
	a := newPool(t, tg, cfg)
	b := New(tg.Client, cfg, Options{})
	key := a.Keys().Sub("sub00")
	for i, want := range []time.Duration{5 * time.Minute, 10 * time.Minute, 20 * time.Minute} {
		p := a
		if i%2 == 1 {
			p = b
		}
		before := time.Now()
		r, err := p.AuthFailed(ctx, "sub00")
		if err != nil {
			t.Fatal(err)
		}
		h := tg.Client.HGetAll(ctx, key).Val()
		until := time.UnixMilli(atoi(t, h["until"]))
		if h["status"] != StatusCooldown || h["statusReason"] != "auth" || !r.Tripped {
			t.Fatalf("failure %d: %v (%+v), want cooldown (auth)", i+1, h, r)
		}
		if got := until.Sub(before); got < want-2*time.Second || got > want+2*time.Second {
			t.Fatalf("failure %d: cooldown %v, want %v", i+1, got, want)
		}
		// A turn that started before the cooldown fails too: nothing more.
		if r, _ := b.AuthFailed(ctx, "sub00"); r.Tripped {
			t.Fatalf("failure during the cooldown doubled it again: %+v", r)
		}
		// Time passes: the cooldown ends, the login is only on probation.
		tg.Client.HSet(ctx, key, "until", time.Now().Add(-time.Second).UnixMilli())
		if got := mustAllocate(t, a, "probe", PriorityNormal); got.Subscription.ID == "" {
			t.Fatalf("no allocation: %+v", got)
		}
		if ev := events(t, tg, a, "recovered"); len(ev) != 0 {
			t.Fatalf("the cooldown's end said recovered before any success: %v", ev)
		}
	}
	if ev := events(t, tg, a, "auth_failed"); len(ev) != 1 || ev[0]["severity"] != "critical" ||
		!strings.Contains(ev[0]["message"].(string), "setup-token") {
		t.Fatalf("auth_failed events: %v, want one, critical, saying what to do", ev)
	}
	if err := b.Succeeded(ctx, "sub00"); err != nil {
		t.Fatal(err)
	}
	if ev := events(t, tg, a, "recovered"); len(ev) != 1 {
		t.Fatalf("recovered events after a success: %v, want one", ev)
	}
	if err := a.Succeeded(ctx, "sub00"); err != nil {
		t.Fatal(err)
	}
	if ev := events(t, tg, a, "recovered"); len(ev) != 1 {
		t.Fatalf("a second success said recovered again: %v", ev)
	}
	// A new episode starts at 5 minutes again.
	before := time.Now()
	r, err := a.AuthFailed(ctx, "sub00")
	if err != nil || r.Until.Sub(before) > 5*time.Minute+2*time.Second {
		t.Fatalf("new episode: %+v %v, want 5 minutes", r, err)
	}
	if ev := events(t, tg, a, "auth_failed"); len(ev) != 2 {
		t.Fatalf("auth_failed after a new episode: %d, want 2", len(ev))
	}
}

func atoi(t testing.TB, s string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatalf("not a number: %q", s)
	}
	return n
}

// The rebalancer moves no idle session onto a subscription whose observed
// 5-hour window is nearly spent: that would be a new session there.
func TestRebalanceAvoidsSpentFiveHourWindow(t *testing.T) {
	tg := redistest.Mini(t)
	start := time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)
	c := newClock(tg, start)
	ctx := context.Background()
	cfg := pooltest.Config(2, 1000, 10)
	cfg.Rebalancing.CostGapThreshold, cfg.Rebalancing.MaxClientsToMovePerCycle = 5, 1
	p := newPool(t, tg, cfg)
	epoch, _ := p.NextEpoch(ctx)
	a := mustAllocate(t, p, "s0", PriorityNormal)
	mustSettle(t, p, Usage{RequestID: "big", SubscriptionID: a.Subscription.ID, SessionID: "s0", CostUSD: 20})
	other := "sub01"
	if a.Subscription.ID == other {
		other = "sub00"
	}
	mustObserve(t, p, other, Observation{Window: WindowFiveHour, Utilization: frac(0.95),
		ResetAt: start.Add(8 * time.Minute), ObservedAt: start})
	c.advance(6 * time.Minute)
	r, err := p.Rebalance(ctx, epoch)
	if err != nil || r.Moved != 0 {
		t.Fatalf("rebalance = %+v, %v; want no move onto %s (5-hour window at 95%%)", r, err, other)
	}
	c.advance(3 * time.Minute) // the window resets
	r, err = p.Rebalance(ctx, epoch)
	if err != nil || r.Moved != 1 || r.To != other {
		t.Fatalf("after the reset: %+v, %v; want the move to %s", r, err, other)
	}
}
