// Package pooltest builds pool configs for tests, so the tests of every
// package describe a pool the same way and change only what they are about.
// It is imported by tests only.
package pooltest

import (
	"fmt"

	"github.com/authpool/authpool/pkg/pool"
)

// Config returns a valid config of n subscriptions sub00..sub(n-1), each
// with weeklyBudget budget (USD), under a pool-wide client cap of
// maxClients and the default admission threshold 0.85. Pool is empty (the
// default name): a test on a shared Redis sets it to its target's Pool.
func Config(n int, budget float64, maxClients int) *pool.Config {
	cfg := &pool.Config{MaxClientsPerSubscription: maxClients, WeeklyBudgetThreshold: pool.DefaultWeeklyBudgetThreshold}
	for i := 0; i < n; i++ {
		cfg.Subscriptions = append(cfg.Subscriptions, pool.SubscriptionConfig{
			ID: fmt.Sprintf("sub%02d", i), Email: fmt.Sprintf("u%d@example.com", i), Type: "claude-pro",
			ConfigDir: fmt.Sprintf("/tmp/claude-sub%02d", i), WeeklyBudget: budget,
		})
	}
	return cfg
}

// WithRules adds an enabled usage_threshold rule (channel log) for each
// threshold and returns cfg.
func WithRules(cfg *pool.Config, thresholds ...float64) *pool.Config {
	for _, t := range thresholds {
		cfg.Notifications.Rules = append(cfg.Notifications.Rules,
			pool.NotificationRule{Type: "usage_threshold", Threshold: t, Channels: []string{"log"}, Enabled: true})
	}
	return cfg
}
