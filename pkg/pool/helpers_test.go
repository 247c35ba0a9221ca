package pool

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/authpool/authpool/internal/redistest"
)

// testConfig returns a valid config of n subscriptions sub00..sub(n-1) with
// the given budget and client cap.
func testConfig(n int, budget float64, maxClients int) *Config {
	cfg := &Config{MaxClientsPerSubscription: maxClients, WeeklyBudgetThreshold: 0.85}
	for i := 0; i < n; i++ {
		cfg.Subscriptions = append(cfg.Subscriptions, SubscriptionConfig{
			ID: fmt.Sprintf("sub%02d", i), Email: fmt.Sprintf("u%d@example.com", i), Type: "claude-pro",
			ConfigDir: fmt.Sprintf("/tmp/claude-sub%02d", i), WeeklyBudget: budget,
		})
	}
	return cfg
}

func withRules(cfg *Config, thresholds ...float64) *Config {
	for _, t := range thresholds {
		cfg.Notifications.Rules = append(cfg.Notifications.Rules,
			NotificationRule{Type: "usage_threshold", Threshold: t, Channels: []string{"log"}, Enabled: true})
	}
	return cfg
}

func newPool(t testing.TB, tg *redistest.Target, cfg *Config) *Pool {
	t.Helper()
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
	msgs, err := tg.Client.XRange(context.Background(), p.keys.Events(), "-", "+").Result()
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
