package pool_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/authpool/authpool/internal/redistest"
	"github.com/authpool/authpool/pkg/lua"

	"github.com/authpool/authpool/internal/pooltest"
	. "github.com/authpool/authpool/pkg/pool"
)

// The gap rule lives in rebalance.lua alone: the highest weekly usage (first
// in id order on a tie) against the lowest (fewer live clients on a tie),
// a move only when the gap exceeds the threshold.
func TestRebalancePairIsTheScripts(t *testing.T) {
	tg := redistest.Mini(t)
	c := newClock(tg, time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC))
	ctx := context.Background()
	cfg := pooltest.Config(3, 1000, 10)
	cfg.IdleAfterSeconds, cfg.StaleAfterSeconds = 300, 3600
	cfg.Rebalancing.CostGapThreshold, cfg.Rebalancing.MaxClientsToMovePerCycle = 5, 1
	p := newPool(t, tg, cfg)
	epoch, _ := p.NextEpoch(ctx)
	for i := 0; i < 3; i++ { // one session on each
		mustAllocate(t, p, fmt.Sprintf("s%d", i), PriorityNormal)
	}
	sessOn := func(sub string) string {
		for i := 0; i < 3; i++ {
			if s, _ := p.Session(ctx, fmt.Sprintf("s%d", i)); s.Subscription == sub {
				return s.ID
			}
		}
		t.Fatalf("no session on %s", sub)
		return ""
	}
	// Once sub00 has spent, a new session goes to sub01 (health ties, then
	// id): sub01 and sub02 tie on usage (0), and the destination is sub02,
	// the one with fewer clients.
	high := sessOn("sub00")
	mustSettle(t, p, Usage{RequestID: "big", SubscriptionID: "sub00", SessionID: high, CostUSD: 20})
	if a := mustAllocate(t, p, "extra", PriorityNormal); a.Subscription.ID != "sub01" {
		t.Fatalf("extra went to %s, want sub01", a.Subscription.ID)
	}
	c.advance(6 * time.Minute)

	r, err := p.Rebalance(ctx, epoch)
	if err != nil || !r.Needed || r.From != "sub00" || r.To != "sub02" || r.Moved != 1 || r.Gap != 20 {
		t.Fatalf("rebalance = %+v, %v; want 1 moved sub00 -> sub02 over a 20 USD gap", r, err)
	}

	// The caller's pair is only an expectation: when usage changed since
	// the script named it, the script names the new pair and moves nobody.
	mustSettle(t, p, Usage{RequestID: "more", SubscriptionID: "sub01", CostUSD: 50})
	got, err := lua.Rebalance(ctx, tg.Client, p.Keys(), p.SubSet(), lua.RebalanceArgs{Epoch: epoch,
		GapThreshold: "5", IdleMS: p.IdleMS(), StaleMS: p.StaleMS(), MaxMoves: 1, Admit: 0.95,
		From: "sub00", To: "sub02", Candidates: []string{high}})
	if err != nil || got.Code != lua.CodeNeedCandidates || got.From != "sub01" || got.Moved != 0 {
		t.Fatalf("stale pair: %+v, %v; want CodeNeedCandidates naming sub01 and no move", got, err)
	}
}
