package rebalance

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/authpool/authpool/internal/testutil"
	"github.com/authpool/authpool/pkg/pool"
)

// idle waits until every session seeded so far is idle (idleAfterSeconds 1).
// These tests run on redis-server, whose clock only the wait moves; they run
// in parallel, so the waits overlap.
func idle() { time.Sleep(1100 * time.Millisecond) }

// Rebalancing on a seeded pool, as DESIGN §6 and the seeds' troubleshooting
// section describe it.
func TestCycleMovesOnlyIdleClientsWithinLimits(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name         string
		sessions     int     // all on sub00 at first
		active       int     // of them, used again after they went idle
		gap          float64 // USD sub00 spent more than sub01
		threshold    float64
		perCycle     int
		destCap      int // sub01's maxClientsPerSub
		disabled     bool
		wantNeeded   bool
		wantMoved    int
		secondCycles int // further moves expected on a second cycle
	}{
		{name: "moves idle clients, at most the per-cycle cap", sessions: 6, active: 1, gap: 20, threshold: 5,
			perCycle: 2, destCap: 10, wantNeeded: true, wantMoved: 2, secondCycles: 2},
		{name: "never above the destination's capacity", sessions: 6, gap: 20, threshold: 5,
			perCycle: 5, destCap: 2, wantNeeded: true, wantMoved: 2, secondCycles: 0},
		{name: "nothing moves under the gap threshold", sessions: 4, gap: 3, threshold: 5,
			perCycle: 3, destCap: 10, wantNeeded: false, wantMoved: 0},
		{name: "active clients never move", sessions: 3, active: 3, gap: 20, threshold: 5,
			perCycle: 3, destCap: 10, wantNeeded: true, wantMoved: 0},
		{name: "rebalancing disabled", sessions: 4, gap: 20, threshold: 5,
			perCycle: 3, destCap: 10, disabled: true, wantMoved: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tg := shared(t)
			ctx := context.Background()
			cfg := testConfig(2, 1000, 20)
			cfg.Subscriptions[1].MaxClientsPerSub = tc.destCap
			cfg.Rebalancing.CostGapThreshold = tc.threshold
			cfg.Rebalancing.MaxClientsToMovePerCycle = tc.perCycle
			if tc.disabled {
				off := false
				cfg.Rebalancing.Enabled = &off
			}
			s := seed(t, tg, cfg, tc.sessions, tc.gap)
			idle()
			active := s.sessions[:tc.active]
			for _, sid := range active {
				if _, err := s.p.Allocate(ctx, sid, pool.PriorityNormal); err != nil {
					t.Fatal(err)
				}
			}
			var rec recorder
			loops, err := NewLoops(LoopsParams{Pool: s.p, Reporter: &rec})
			if err != nil {
				t.Fatal(err)
			}
			epoch, _ := s.p.NextEpoch(ctx)

			res, err := loops.Cycle(ctx, epoch)
			if err != nil {
				t.Fatal(err)
			}
			r := res.Rebalance
			if res.RebalancingEnabled == tc.disabled || r.Needed != tc.wantNeeded || r.Moved != tc.wantMoved {
				t.Fatalf("cycle = %+v; want needed=%v moved=%d", res, tc.wantNeeded, tc.wantMoved)
			}
			if tc.wantNeeded && (r.From != "sub00" || r.To != "sub01" || r.Gap < tc.gap-0.01) {
				t.Fatalf("rebalance = %+v; want sub00 -> sub01 with gap %.2f", r, tc.gap)
			}
			if len(rec.cycles) != 1 || rec.cycles[0].Rebalance != r {
				t.Fatalf("reported cycles = %+v", rec.cycles)
			}

			// Every move has its rotation event and the session's next
			// request goes to its new subscription.
			var moved []string
			for _, sid := range s.sessions {
				if s.subOf(t, sid) == "sub01" {
					moved = append(moved, sid)
				}
			}
			if len(moved) != tc.wantMoved {
				t.Fatalf("sessions on sub01 = %v, want %d", moved, tc.wantMoved)
			}
			for _, sid := range active {
				if slices.Contains(moved, sid) {
					t.Fatalf("active session %s moved", sid)
				}
			}
			rots := s.rotations(t)
			if len(rots) != len(moved) {
				t.Fatalf("%d rotation events for %d moves", len(rots), len(moved))
			}
			for _, e := range rots {
				if e["subscriptionId"] != "sub00" {
					t.Fatalf("rotation event %v", e)
				}
			}
			for _, sid := range moved {
				a, err := s.p.Allocate(ctx, sid, pool.PriorityNormal)
				if err != nil || a.Subscription.ID != "sub01" || a.Kind != pool.Resumed {
					t.Fatalf("next allocate of moved %s = %+v, %v; want resumed on sub01", sid, a, err)
				}
			}

			// A second cycle moves more only while the gap, the idle
			// clients and the destination's room allow.
			res2, err := loops.Cycle(ctx, epoch)
			if err != nil || res2.Rebalance.Moved != tc.secondCycles {
				t.Fatalf("second cycle = %+v, %v; want %d moved", res2, err, tc.secondCycles)
			}
			st, err := s.p.Status(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, sub := range st.Subscriptions {
				if sub.ID == "sub01" && sub.Clients > tc.destCap {
					t.Fatalf("sub01 has %d clients, over its cap %d", sub.Clients, tc.destCap)
				}
			}
		})
	}
}

// A leader holding an old epoch cannot move clients: the fenced calls
// return ErrNotLeader and the pool is unchanged.
func TestCycleWithStaleEpochChangesNothing(t *testing.T) {
	tg := shared(t)
	ctx := context.Background()
	cfg := testConfig(2, 1000, 20)
	s := seed(t, tg, cfg, 4, 20)
	idle()
	var rec recorder
	loops, err := NewLoops(LoopsParams{Pool: s.p, Reporter: &rec, Interval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	old, _ := s.p.NextEpoch(ctx)
	current, _ := s.p.NextEpoch(ctx) // a new leader took over

	if _, err := loops.Cycle(ctx, old); !errors.Is(err, pool.ErrNotLeader) {
		t.Fatalf("cycle with old epoch: %v, want ErrNotLeader", err)
	}
	if err := loops.Run(ctx, old); !errors.Is(err, pool.ErrNotLeader) {
		t.Fatalf("run with old epoch returned %v, want ErrNotLeader at once", err)
	}
	for _, sid := range s.sessions {
		if sub := s.subOf(t, sid); sub != "sub00" {
			t.Fatalf("session %s moved to %s under a stale epoch", sid, sub)
		}
	}
	if n := len(s.rotations(t)); n != 0 {
		t.Fatalf("%d rotation events under a stale epoch", n)
	}
	for _, c := range rec.cycles {
		if !errors.Is(c.Err, pool.ErrNotLeader) || c.Rebalance.Moved != 0 {
			t.Fatalf("reported cycle %+v, want a fenced refusal", c)
		}
	}
	// The same pool moves clients for the current leader.
	if res, err := loops.Cycle(ctx, current); err != nil || res.Rebalance.Moved == 0 {
		t.Fatalf("cycle with the current epoch = %+v, %v", res, err)
	}
}

// Run cycles every interval until its context ends.
func TestRunCyclesUntilCancelled(t *testing.T) {
	tg := shared(t)
	cfg := testConfig(2, 1000, 20)
	cfg.Rebalancing.MaxClientsToMovePerCycle = 1
	s := seed(t, tg, cfg, 3, 20)
	idle()
	var rec recorder
	loops, err := NewLoops(LoopsParams{Pool: s.p, Reporter: &rec, Interval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	epoch, _ := s.p.NextEpoch(ctx)
	done := make(chan error, 1)
	go func() { done <- loops.Run(ctx, epoch) }()
	// The gap is in cost, which moving clients does not change: each cycle
	// moves one more client until none is left.
	testutil.Eventually(t, 3*time.Second, "three moves", func() bool { return rec.moved() == 3 })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run returned %v after cancel, want nil", err)
	}
}
