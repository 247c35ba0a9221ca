package pool_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/authpool/authpool/internal/pooltest"
	"github.com/authpool/authpool/internal/redistest"

	. "github.com/authpool/authpool/pkg/pool"
)

// A fenced script called with an old epoch changes nothing.
func TestFencedScriptsRefuseStaleEpoch(t *testing.T) {
	redistest.EachParallel(t, func(t *testing.T, tg *redistest.Target) {
		ctx := context.Background()
		cfg := pooltest.Config(2, 100, 10)
		cfg.IdleAfterSeconds, cfg.StaleAfterSeconds = 1, 3600
		p := newPool(t, tg, cfg)
		old, _ := p.NextEpoch(ctx)
		if _, err := p.NextEpoch(ctx); err != nil { // a new leader took over
			t.Fatal(err)
		}
		for i := 0; i < 4; i++ {
			mustAllocate(t, p, fmt.Sprintf("s%d", i), PriorityNormal)
		}
		mustSettle(t, p, Usage{RequestID: "r", SubscriptionID: "sub00", CostUSD: 50})
		before, _ := p.Status(ctx)
		// Clients become idle: on miniredis by moving its clock (TIME and
		// TTLs), on redis-server only by waiting.
		if tg.Mini != nil {
			tg.Mini.SetTime(time.Now().Add(1100 * time.Millisecond))
			tg.Mini.FastForward(1100 * time.Millisecond)
		} else {
			time.Sleep(1100 * time.Millisecond)
		}
		if _, err := p.Maintain(ctx, old); !errors.Is(err, ErrNotLeader) {
			t.Fatalf("maintain with old epoch: %v", err)
		}
		if _, err := p.Rebalance(ctx, old); !errors.Is(err, ErrNotLeader) {
			t.Fatalf("rebalance with old epoch: %v", err)
		}
		after, _ := p.Status(ctx)
		for i := range before.Subscriptions {
			b, a := before.Subscriptions[i], after.Subscriptions[i]
			if b.Clients != a.Clients || b.Status != a.Status {
				t.Fatalf("%s changed under a stale epoch: %+v -> %+v", b.ID, b, a)
			}
		}
	})
}

func TestRebalanceMovesOnlyIdleClientsWithinLimits(t *testing.T) {
	tg := redistest.Mini(t)
	c := newClock(tg, time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC))
	ctx := context.Background()
	cfg := pooltest.Config(2, 1000, 6)
	cfg.IdleAfterSeconds, cfg.StaleAfterSeconds = 300, 3600
	cfg.Rebalancing.CostGapThreshold, cfg.Rebalancing.MaxClientsToMovePerCycle = 5, 2
	p := newPool(t, tg, cfg)
	epoch, _ := p.NextEpoch(ctx)
	// Eight sessions spread 4/4, then sub00 spends 20 USD more.
	for i := 0; i < 8; i++ {
		mustAllocate(t, p, fmt.Sprintf("s%d", i), PriorityNormal)
	}
	var onHigh []string
	for i := 0; i < 8; i++ {
		sess, _ := p.Session(ctx, fmt.Sprintf("s%d", i))
		if sess.Subscription == "sub00" {
			onHigh = append(onHigh, sess.ID)
		}
	}
	mustSettle(t, p, Usage{RequestID: "big", SubscriptionID: "sub00", SessionID: onHigh[0], CostUSD: 20})
	c.advance(6 * time.Minute)
	mustAllocate(t, p, onHigh[1], PriorityNormal) // active again: must not move

	r, err := p.Rebalance(ctx, epoch)
	if err != nil || !r.Needed || r.From != "sub00" || r.To != "sub01" || r.Moved != 2 {
		t.Fatalf("rebalance = %+v, %v; want 2 moved sub00 -> sub01", r, err)
	}
	for _, sid := range []string{onHigh[1]} {
		if s, _ := p.Session(ctx, sid); s.Subscription != "sub00" {
			t.Fatalf("active session %s moved", sid)
		}
	}
	if n := len(events(t, tg, p, "rotation")); n != 2 {
		t.Fatalf("rotation events = %d, want 2", n)
	}
	// The destination's cap (6) counts active sessions (issue 10): the idle
	// ones moved there take no slot, so the last idle one on sub00 moves too,
	// and sub01 holds 7 clients of which 4 are active.
	r, _ = p.Rebalance(ctx, epoch)
	if st := subStatus(t, p, "sub01"); st.ActiveClients > 6 || r.Moved != 1 || st.Clients != 7 {
		t.Fatalf("second pass: %+v, sub01 clients %d (active %d)", r, st.Clients, st.ActiveClients)
	}
	// A moved session's next request goes to its new subscription, no resume.
	moved := ""
	for _, sid := range onHigh {
		if s, _ := p.Session(ctx, sid); s.Subscription == "sub01" {
			moved = sid
		}
	}
	if a := mustAllocate(t, p, moved, PriorityNormal); a.Kind != Resumed || a.Subscription.ID != "sub01" || a.CLISession != "" {
		t.Fatalf("moved session's next allocation: %+v", a)
	}
	// Under the threshold nothing moves.
	q := newPool(t, redistest.Mini(t), cfg)
	e2, _ := q.NextEpoch(ctx)
	mustAllocate(t, q, "x", PriorityNormal)
	mustSettle(t, q, Usage{RequestID: "small", SubscriptionID: "sub00", CostUSD: 4})
	if r, _ := q.Rebalance(ctx, e2); r.Needed || r.Moved != 0 {
		t.Fatalf("gap 4 < 5 rebalanced: %+v", r)
	}
}
