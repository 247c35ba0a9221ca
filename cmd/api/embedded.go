package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/authpool/authpool/internal/ids"
	"github.com/authpool/authpool/internal/runenv"
	"github.com/authpool/authpool/pkg/notify"
	"github.com/authpool/authpool/pkg/pool"
	"github.com/authpool/authpool/pkg/rebalance"
	"github.com/authpool/authpool/pkg/telemetry"
)

// startEmbeddedRebalancer runs, in this process, what cmd/rebalancer does
// against a shared Redis: maintenance, rebalancing and notification delivery.
// With the embedded Redis this process is the only replica, so there is no
// election. The returned functions stop it and put the notification rules
// of the config the pool has in force (after a reload) in force.
func startEmbeddedRebalancer(ctx context.Context, p *pool.Pool, webhookSecret string,
	log *slog.Logger, metrics *telemetry.Metrics) (func(), func(), error) {
	d, err := notify.New(notify.Options{Events: p.Events(), Consumer: ids.ProcessName("api-", "api"),
		Config: p.Config().Notifications, WebhookSecret: []byte(webhookSecret),
		Logger: notify.SlogLogger(telemetry.Module(log, "notify")), Metrics: metrics})
	if err != nil {
		return nil, nil, fmt.Errorf("embedded notifier: %w", err)
	}
	comp, err := rebalance.New(rebalance.Params{Pool: p, InProcess: true, Deliverer: d,
		Reporter: rebalance.Reporters(rebalance.SlogReporter(telemetry.Module(log, "rebalancer")),
			rebalance.MetricsReporter(metrics))})
	if err != nil {
		return nil, nil, fmt.Errorf("embedded rebalancer: %w", err)
	}
	if err := comp.Start(ctx); err != nil {
		return nil, nil, fmt.Errorf("embedded rebalancer: %w", err)
	}
	stop := func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := comp.Shutdown(sctx); err != nil {
			log.Warn("embedded rebalancer shutdown", "error", err)
		}
	}
	return stop, func() { runenv.TakeNotifications(p, d.SetConfig, log) }, nil
}
