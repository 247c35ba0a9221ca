package pool

import (
	"context"
	"testing"
	"time"

	"github.com/authpool/authpool/internal/redistest"
)

// passTime moves the scripts' clock by d: the fake clock on miniredis (TIME
// and key TTLs), the real one on redis-server.
func passTime(tg *redistest.Target, clk *clock, d time.Duration) {
	if clk != nil {
		clk.advance(d)
		return
	}
	time.Sleep(d)
}

// TestTurnInFlightIsActive (issue 8, finding 6): a session with a turn in
// flight is active however long the turn runs. Past the idle and the stale
// age, with its lease refreshed by the gateway's heartbeat, rebalance does
// not move it, maintain does not drop it and its session key does not
// expire; once the turn is settled it is idle and stale like any other. A
// lease nobody refreshes (the replica died) runs out by itself.
func TestTurnInFlightIsActive(t *testing.T) {
	redistest.Each(t, func(t *testing.T, tg *redistest.Target) {
		ctx := context.Background()
		var clk *clock
		if tg.Mini != nil {
			clk = newClock(tg, time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC))
		}
		cfg := testConfig(2, 100, 10)
		cfg.IdleAfterSeconds, cfg.StaleAfterSeconds = 1, 3
		cfg.Rebalancing.CostGapThreshold, cfg.Rebalancing.MaxClientsToMovePerCycle = 5, 3
		p := newPool(t, tg, cfg)
		epoch, err := p.NextEpoch(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// Both sessions on sub00 (sub01 disabled meanwhile), then sub00
		// spends 10 USD more than sub01: its idle clients are to move.
		if _, err := p.Mark(ctx, "sub01", StatusDisabled, "test", time.Time{}); err != nil {
			t.Fatal(err)
		}
		for _, sid := range []string{"busy", "crashed"} {
			a, err := p.AllocateTurn(ctx, TurnRequest{SessionID: sid, TurnID: "turn-" + sid})
			if err != nil || a.Subscription.ID != "sub00" {
				t.Fatalf("allocate %s: %+v %v", sid, a, err)
			}
		}
		if _, err := p.Mark(ctx, "sub01", StatusAvailable, "test", time.Time{}); err != nil {
			t.Fatal(err)
		}
		mustSettle(t, p, Usage{RequestID: "spend", SubscriptionID: "sub00", CostUSD: 10})

		// "busy" runs for 4 s (past idle 1 s and stale 3 s), its heartbeat
		// refreshing the lease; "crashed" is never refreshed: it moves once
		// idle and its lease has run out (and is dropped once stale).
		crashedMoved := false
		for step := 0; step < 10; step++ {
			passTime(tg, clk, 400*time.Millisecond)
			if err := p.Heartbeat(ctx, "busy", "turn-busy"); err != nil {
				t.Fatalf("heartbeat: %v", err)
			}
			if _, err := p.Maintain(ctx, epoch); err != nil {
				t.Fatal(err)
			}
			if _, err := p.Rebalance(ctx, epoch); err != nil {
				t.Fatal(err)
			}
			if s, err := p.Session(ctx, "crashed"); err == nil && s.Subscription == "sub01" {
				crashedMoved = true
			}
			s, err := p.Session(ctx, "busy")
			if err != nil || s.Subscription != "sub00" {
				t.Fatalf("step %d: the session with a turn in flight: %+v %v", step, s, err)
			}
			if sc, err := tg.Client.ZScore(ctx, p.keys.Clients("sub00"), "busy").Result(); err != nil || sc == 0 {
				t.Fatalf("step %d: busy left sub00's clients: %v", step, err)
			}
		}
		if !crashedMoved {
			t.Errorf("a lease nobody refreshed pinned its session")
		}

		// The turn ends: settled under its id, the lease is gone.
		mustSettle(t, p, Usage{RequestID: "turn-busy", SubscriptionID: "sub00", SessionID: "busy", CostUSD: 0.01})
		passTime(tg, clk, 1200*time.Millisecond)
		r, err := p.Rebalance(ctx, epoch)
		if err != nil {
			t.Fatal(err)
		}
		if s, err := p.Session(ctx, "busy"); r.Moved != 1 || err != nil || s.Subscription != "sub01" {
			t.Fatalf("after settle, idle: moved %d, session %+v %v", r.Moved, s, err)
		}
		passTime(tg, clk, 3200*time.Millisecond)
		m, err := p.Maintain(ctx, epoch)
		if err != nil {
			t.Fatal(err)
		}
		if m.DroppedClients != 1 {
			t.Errorf("after settle, stale: maintain dropped %d clients, want 1", m.DroppedClients)
		}
		if _, err := p.Session(ctx, "busy"); err != ErrSessionNotFound {
			t.Errorf("stale session still there: %v", err)
		}
	})
}
