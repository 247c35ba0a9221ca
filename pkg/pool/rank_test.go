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
