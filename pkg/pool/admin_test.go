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

func act(t *testing.T, p *Pool, action, sub string) AdminResult {
	t.Helper()
	r, err := p.SubscriptionAction(context.Background(), action, sub, "admin")
	if err != nil {
		t.Fatalf("%s %s: %v", action, sub, err)
	}
	return r
}

// A drained subscription keeps its active session, sends new ones
// elsewhere, and loses the session once it comes back idle.
func TestDrainKeepsActiveSessionsOnly(t *testing.T) {
	tg := redistest.Mini(t)
	clk := newClock(tg, time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC))
	cfg := pooltest.Config(2, 100, 5)
	p := newPool(t, tg, cfg)
	a := mustAllocate(t, p, "s1", PriorityNormal)
	from := a.Subscription.ID
	if r := act(t, p, ActionDrain, from); !r.Changed || r.Status != StatusDraining {
		t.Fatalf("drain = %+v", r)
	}
	if got := subStatus(t, p, from).Status; got != StatusDraining {
		t.Fatalf("status after drain = %s", got)
	}
	if b := mustAllocate(t, p, "s1", PriorityNormal); b.Kind != Resumed || b.Subscription.ID != from {
		t.Fatalf("active session on a draining subscription = %+v, want resumed on %s", b, from)
	}
	if c := mustAllocate(t, p, "s2", PriorityNormal); c.Subscription.ID == from {
		t.Fatalf("new session bound to the draining %s", from)
	}
	clk.advance(time.Duration(p.Config().IdleAfterSeconds+1) * time.Second)
	if b := mustAllocate(t, p, "s1", PriorityNormal); b.Subscription.ID == from || b.Reason != StatusDraining {
		t.Fatalf("idle session on a draining subscription = %+v, want moved (draining)", b)
	}
	if n := len(events(t, tg, p, "admin_action")); n != 1 {
		t.Fatalf("admin_action events = %d, want 1", n)
	}
	if r := act(t, p, ActionEnable, from); !r.Changed || r.Status != StatusAvailable {
		t.Fatalf("enable = %+v", r)
	}
}

func TestDisableResetMoveEnd(t *testing.T) {
	redistest.Each(t, func(t *testing.T, tg *redistest.Target) {
		ctx := context.Background()
		p := newPool(t, tg, pooltest.Config(2, 100, 1))
		a := mustAllocate(t, p, "s1", PriorityNormal)
		from := a.Subscription.ID
		act(t, p, ActionDisable, from)
		if b := mustAllocate(t, p, "s1", PriorityNormal); b.Subscription.ID == from {
			t.Fatalf("session stayed on disabled %s", from)
		}
		act(t, p, ActionEnable, from)

		// Reset ends a limit now; a reset of a usable one changes nothing.
		if _, err := p.Mark(ctx, from, StatusLimited, "usage_limit", time.Now().Add(3*time.Hour)); err != nil {
			t.Fatal(err)
		}
		if r := act(t, p, ActionReset, from); !r.Changed || r.Previous != StatusLimited || r.Status != StatusAvailable {
			t.Fatalf("reset = %+v", r)
		}
		if r := act(t, p, ActionReset, from); r.Changed {
			t.Fatalf("second reset = %+v, want unchanged", r)
		}

		// s1 is on the other subscription (cap 1): a move there is refused
		// for capacity, s2 moves to the free one, and ends.
		s1, _ := p.Session(ctx, "s1")
		s2 := mustAllocate(t, p, "s2", PriorityNormal)
		if s2.Subscription.ID != from {
			t.Fatalf("s2 on %s, want %s", s2.Subscription.ID, from)
		}
		if _, err := p.MoveSession(ctx, "s2", s1.Subscription, "admin"); !errors.Is(err, ErrRefused) {
			t.Fatalf("move onto a full subscription err = %v, want ErrRefused", err)
		}
		if _, err := p.EndSession(ctx, "s1", "admin"); err != nil {
			t.Fatal(err)
		}
		if r, err := p.MoveSession(ctx, "s2", s1.Subscription, "admin"); err != nil || r.Status != s1.Subscription {
			t.Fatalf("move = %+v, %v", r, err)
		}
		if got := len(events(t, tg, p, "rotation")); got < 2 {
			t.Fatalf("rotation events = %d", got)
		}
		if _, err := p.EndSession(ctx, "s1", "admin"); !errors.Is(err, ErrSessionNotFound) {
			t.Fatalf("second end err = %v", err)
		}
		if _, err := p.SubscriptionAction(ctx, ActionDrain, "nope", "admin"); !errors.Is(err, ErrSubscriptionNotFound) {
			t.Fatalf("drain of an unknown subscription err = %v", err)
		}
		if got := len(events(t, tg, p, "admin_action")); got != 5 {
			t.Fatalf("admin_action events = %d, want 5 (disable, enable, reset, end, move)", got)
		}
	})
}

func TestReportSumsSettledUsage(t *testing.T) {
	redistest.Each(t, func(t *testing.T, tg *redistest.Target) {
		ctx := context.Background()
		p := newPool(t, tg, pooltest.Config(2, 1000, 5))
		var value, fallback int64 // micro-USD
		for i := 0; i < 30; i++ {
			sid := fmt.Sprintf("s%d", i%4)
			owner := []string{"key-a", "key-b"}[i%2]
			a, err := p.AllocateTurn(ctx, TurnRequest{SessionID: sid, Owner: owner})
			if err != nil {
				t.Fatal(err)
			}
			cost := int64(10_000 + i*3_337) // odd amounts: cents must not drift
			u := Usage{RequestID: fmt.Sprintf("r%d", i), SessionID: sid, CostUSD: float64(cost) / 1e6, InputTokens: 10, OutputTokens: 5}
			if i%5 == 4 {
				fallback += cost
			} else {
				u.SubscriptionID = a.Subscription.ID
				value += cost
			}
			mustSettle(t, p, u)
		}
		rep, err := p.Report(ctx, "1d")
		if err != nil {
			t.Fatal(err)
		}
		if rep.Total.ValueMicros != value || rep.Total.FallbackMicros != fallback || rep.Total.Requests != 30 || rep.Total.Tokens != 450 {
			t.Fatalf("total = %+v, want value %d fallback %d", rep.Total, value, fallback)
		}
		var kv, kf int64
		for _, k := range rep.Keys {
			kv, kf = kv+k.ValueMicros, kf+k.FallbackMicros
			if k.ID != "key-a" && k.ID != "key-b" {
				t.Errorf("unexpected key row %q", k.ID)
			}
		}
		if kv != value || kf != fallback {
			t.Fatalf("per-key sums %d/%d, want %d/%d", kv, kf, value, fallback)
		}
		if _, err := p.Report(ctx, "30d"); !errors.Is(err, ErrInvalidWindow) {
			t.Fatalf("30d err = %v", err)
		}
	})
}

// An operator's drain outlives a limit that hits the subscription: when the
// limit ends (by its time, a reset, or an auth cooldown's first success)
// the subscription goes back to draining, not to taking new sessions;
// enable ends the drain.
func TestDrainOutlivesALimit(t *testing.T) {
	tg := redistest.Mini(t)
	clk := newClock(tg, time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC))
	ctx := context.Background()
	p := newPool(t, tg, pooltest.Config(2, 100, 5))
	from := mustAllocate(t, p, "s1", PriorityNormal).Subscription.ID
	act(t, p, ActionDrain, from)

	// A limit on the draining subscription, then its end by time.
	if _, err := p.Mark(ctx, from, StatusLimited, "usage_limit", clk.now.Add(10*time.Minute)); err != nil {
		t.Fatal(err)
	}
	clk.advance(11 * time.Minute)
	mustAllocate(t, p, "s2", PriorityNormal) // restores what is due
	if got := subStatus(t, p, from).Status; got != StatusDraining {
		t.Fatalf("after the limit ended: %s, want draining", got)
	}

	// Drained while limited: the limit stays, draining once it is reset.
	if _, err := p.Mark(ctx, from, StatusLimited, "usage_limit", clk.now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if r := act(t, p, ActionDrain, from); r.Status != StatusLimited {
		t.Fatalf("drain of a limited subscription = %+v, want the limit kept", r)
	}
	if r := act(t, p, ActionReset, from); r.Status != StatusDraining {
		t.Fatalf("reset of a drained, limited subscription = %+v, want draining", r)
	}

	// An auth cooldown that ends with a successful turn.
	for i := 0; i < 3; i++ {
		if _, err := p.AuthFailed(ctx, from); err != nil {
			t.Fatal(err)
		}
	}
	if got := subStatus(t, p, from).Status; got != StatusCooldown {
		t.Fatalf("after refused logins: %s, want cooldown", got)
	}
	if err := p.Succeeded(ctx, from); err != nil {
		t.Fatal(err)
	}
	if got := subStatus(t, p, from).Status; got != StatusDraining {
		t.Fatalf("after the login works again: %s, want draining", got)
	}

	if r := act(t, p, ActionEnable, from); !r.Changed || r.Status != StatusAvailable {
		t.Fatalf("enable = %+v, want available", r)
	}
	clk.advance(time.Minute)
	if _, err := p.Mark(ctx, from, StatusLimited, "usage_limit", clk.now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	clk.advance(2 * time.Minute)
	mustAllocate(t, p, "s3", PriorityNormal)
	if got := subStatus(t, p, from).Status; got == StatusDraining {
		t.Fatal("a limit after enable ended in draining: the drain outlived enable")
	}
}
