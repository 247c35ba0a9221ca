package pool_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/authpool/authpool/internal/pooltest"
	"github.com/authpool/authpool/internal/redistest"
	. "github.com/authpool/authpool/pkg/pool"
)

// A subscription whose limit ends is restored by the next new binding and
// chosen when it is the best, though the ranking (issue 14) still holds it
// last and no maintain ran since: allocate examines every subscription
// whose until has come.
func TestRankRestoresAndChoosesDueSubscription(t *testing.T) {
	tg := redistest.Mini(t)
	ctx := context.Background()
	start := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	c := newClock(tg, start)
	p := newPool(t, tg, pooltest.Config(3, 100, 50))
	if _, err := p.Mark(ctx, "sub00", StatusLimited, "usage_limit", start.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 6; i++ {
		if a := mustAllocate(t, p, fmt.Sprintf("s%d", i), PriorityNormal); a.Subscription.ID == "sub00" {
			t.Fatalf("session %d bound to sub00 while it is limited", i)
		}
	}
	c.advance(61 * time.Minute)
	a := mustAllocate(t, p, "after", PriorityNormal)
	if a.Subscription.ID != "sub00" {
		t.Fatalf("after the limit's end the new session went to %s, want sub00 (restored, no clients)", a.Subscription.ID)
	}
	if st := subStatus(t, p, "sub00"); st.Status != StatusAvailable {
		t.Fatalf("sub00 = %s, want available", st.Status)
	}
	if ev := events(t, tg, p, "recovered"); len(ev) != 1 {
		t.Fatalf("recovered events: %v, want one", ev)
	}
}

// A turn that succeeds on a subscription in an auth cooldown ends it (its
// login works again), and its settle tells the allocation ranking, which
// held the subscription last: the next new binding, the cooldown's until
// still ahead, may choose it again.
func TestSettleEndingAuthCooldownRanksTheSubscriptionAgain(t *testing.T) {
	tg := redistest.Mini(t)
	ctx := context.Background()
	newClock(tg, time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC))
	p := newPool(t, tg, pooltest.Config(2, 100, 50))
	mustAllocate(t, p, "busy", PriorityNormal) // sub00 or sub01 gets a client
	for i := 0; i < 3; i++ {
		if _, err := p.AuthFailed(ctx, "sub00"); err != nil {
			t.Fatal(err)
		}
	}
	if st := subStatus(t, p, "sub00"); st.Status != StatusCooldown {
		t.Fatalf("sub00 = %s, want cooldown", st.Status)
	}
	// The same usage on sub01, so that neither has the idle bonus over the other.
	if _, err := p.Settle(ctx, Usage{RequestID: "ok-0", SubscriptionID: "sub01", CostUSD: 0.01, Succeeded: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Settle(ctx, Usage{RequestID: "ok-1", SubscriptionID: "sub00", CostUSD: 0.01, Succeeded: true}); err != nil {
		t.Fatal(err)
	}
	if st := subStatus(t, p, "sub00"); st.Status != StatusAvailable {
		t.Fatalf("sub00 after a successful turn = %s, want available", st.Status)
	}
	if at, err := tg.Client.ZScore(ctx, p.Keys().RankAt(), "sub00").Result(); err != nil || at != 0 {
		t.Fatalf("rank:at of sub00 = %v, %v; want 0 (to be scored by the next binding)", at, err)
	}
	seen := map[string]bool{}
	for i := 0; i < 4; i++ {
		seen[mustAllocate(t, p, fmt.Sprintf("n%d", i), PriorityNormal).Subscription.ID] = true
	}
	if !seen["sub00"] {
		t.Fatalf("no new session went to sub00 once its login worked again: %v", seen)
	}
}
