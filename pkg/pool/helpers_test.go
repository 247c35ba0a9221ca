package pool_test

import (
	"context"
	"testing"
	"time"

	"github.com/authpool/authpool/internal/redistest"

	. "github.com/authpool/authpool/pkg/pool"
)

// newPool is a synced pool of cfg on tg, in tg's key space unless cfg names
// a pool (cfg takes that name, so further replicas built from it share it).
func newPool(t testing.TB, tg *redistest.Target, cfg *Config) *Pool {
	t.Helper()
	if cfg.Pool == "" {
		cfg.Pool = tg.Pool
	}
	p := New(tg.Client, cfg, Options{})
	if err := p.Sync(context.Background()); err != nil {
		t.Fatalf("sync: %v", err)
	}
	return p
}

// clock pins miniredis' TIME (and so every script's clock) and moves it.
type clock struct {
	tg  *redistest.Target
	now time.Time
}

func newClock(tg *redistest.Target, start time.Time) *clock {
	c := &clock{tg: tg, now: start}
	tg.Mini.SetTime(start)
	return c
}

func (c *clock) advance(d time.Duration) {
	c.now = c.now.Add(d)
	c.tg.Mini.SetTime(c.now)
	c.tg.Mini.FastForward(d)
}

func events(t testing.TB, tg *redistest.Target, p *Pool, typ string) []map[string]any {
	t.Helper()
	msgs, err := tg.Client.XRange(context.Background(), p.Keys().Events(), "-", "+").Result()
	if err != nil {
		t.Fatalf("xrange: %v", err)
	}
	var out []map[string]any
	for _, m := range msgs {
		if m.Values["type"] == typ {
			out = append(out, m.Values)
		}
	}
	return out
}

func mustAllocate(t testing.TB, p *Pool, sid string, pr Priority) Allocation {
	t.Helper()
	a, err := p.Allocate(context.Background(), sid, pr)
	if err != nil {
		t.Fatalf("allocate %s: %v", sid, err)
	}
	return a
}

func mustSettle(t testing.TB, p *Pool, u Usage) Settlement {
	t.Helper()
	s, err := p.Settle(context.Background(), u)
	if err != nil {
		t.Fatalf("settle %s: %v", u.RequestID, err)
	}
	return s
}

func subStatus(t testing.TB, p *Pool, id string) SubscriptionStatus {
	t.Helper()
	snap, err := p.Status(context.Background())
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	for _, s := range snap.Subscriptions {
		if s.ID == id {
			return s
		}
	}
	t.Fatalf("no subscription %s in status", id)
	return SubscriptionStatus{}
}
