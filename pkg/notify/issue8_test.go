package notify

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/authpool/authpool/internal/redistest"
	"github.com/authpool/authpool/internal/testutil"
	"github.com/authpool/authpool/pkg/pool"
)

// TestExhaustedEventReachesTheWebhook: an operator can route the pool's
// exhausted event (fallback off, a session refused) like any other: the
// config accepts the rule type, the router sends it to the webhook, and
// the payload names it. Before, "exhausted" was no known type.
func TestExhaustedEventReachesTheWebhook(t *testing.T) {
	redistest.EachParallel(t, func(t *testing.T, tg *redistest.Target) {
		ctx := context.Background()
		rc := newReceiver(t, nil)
		off := false
		cfg := &pool.Config{MaxClientsPerSubscription: 5, WeeklyBudgetThreshold: 0.85, FallbackWhenExhausted: &off,
			Rebalancing: pool.RebalancingConfig{IntervalSeconds: 300, CostGapThreshold: 5, MaxClientsToMovePerCycle: 3},
			Pool:        tg.Pool, IdleAfterSeconds: 300, StaleAfterSeconds: 3600,
			Notifications: pool.NotificationsConfig{WebhookURL: rc.srv.URL, AllowInsecureWebhooks: true,
				Rules: []pool.NotificationRule{{Type: "exhausted", Channels: []string{ChannelWebhook}, Enabled: true}}}}
		for _, id := range []string{"sub1", "sub2"} {
			cfg.Subscriptions = append(cfg.Subscriptions, pool.SubscriptionConfig{ID: id, Email: id + "@example.com",
				Type: "claude-max", ConfigDir: "/srv/claude-" + id, WeeklyBudget: 100})
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("config with an exhausted rule: %v", err)
		}
		p := pool.New(tg.Client, cfg, pool.Options{})
		if err := p.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		start(t, testOptions(tg.Client, tg.Pool, "c1", cfg.Notifications, &recLogger{}))

		a, err := p.Allocate(ctx, "s1", pool.PriorityNormal)
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range []string{"sub1", "sub2"} {
			if _, err := p.Mark(ctx, id, pool.StatusLimited, "usage_limit", time.Now().Add(time.Hour)); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := p.Allocate(ctx, "s1", pool.PriorityNormal); !errors.Is(err, pool.ErrPoolExhausted) {
			t.Fatalf("allocate = %v, want pool exhausted", err)
		}

		var got Payload
		testutil.Eventually(t, 3*time.Second, "exhausted delivered", func() bool {
			rc.mu.Lock()
			defer rc.mu.Unlock()
			for _, pl := range rc.payloads {
				got = pl
				return true
			}
			return false
		})
		if got.Type != "exhausted" || got.Severity != SeverityCritical || got.SubscriptionID != a.Subscription.ID ||
			!strings.Contains(got.Message, "s1") {
			t.Errorf("payload = %+v", got)
		}
		if requests, _, _ := rc.stats(); requests != 1 {
			t.Errorf("webhook requests = %d, want 1 (only the exhausted rule routes there)", requests)
		}
	})
}
