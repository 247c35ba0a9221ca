// Command rebalancer is the authpool rebalancer (DESIGN §6). Several
// replicas run against one Redis: one leads (a redsync lock with a fencing
// epoch) and every intervalSeconds drops stale clients, restores limited
// subscriptions and moves idle clients from the most to the least used
// subscription; all of them deliver notifications from the events stream
// through one consumer group. It only wires: configuration, the Redis
// client, the pool, the notify Deliverer, the rebalance Component,
// telemetry (logs, metrics, traces, Sentry), the /health, /ready, /leader
// and /metrics endpoints and a graceful shutdown that resigns leadership
// first.
//
// Environment (flags override; see -h): REDIS_URL or REDIS_ADDRS (required;
// + REDIS_MASTER_NAME for Sentinel, REDIS_PASSWORD), AUTH_POOL_CONFIG,
// WEEKLY_BUDGET, AUTH_POOL_REBALANCING_ENABLED, WEBHOOK_SECRET, PORT (3001),
// LEADER_LOCK_TTL (10s), REPLICA_ID (host name and pid), NOTIFY_CLAIM_IDLE
// (30s), SHUTDOWN_TIMEOUT (10s), LOG_LEVEL, LOG_FORMAT,
// OTEL_EXPORTER_OTLP_ENDPOINT, SENTRY_DSN.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/authpool/authpool/internal/runenv"
	"github.com/authpool/authpool/pkg/notify"
	"github.com/authpool/authpool/pkg/pool"
	"github.com/authpool/authpool/pkg/rebalance"
	"github.com/authpool/authpool/pkg/telemetry"
)

// version is the release reported to Sentry and in the start-up line; the
// build sets it with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Getenv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "rebalancer:", err)
		os.Exit(1)
	}
}

// run serves until ctx ends (a signal), then shuts down: resign leadership
// (a standby takes over at once), stop delivering (an event in flight stays
// pending for another replica), stop the HTTP server.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	cfg, err := loadConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	log := telemetry.NewLogger(cfg.Telemetry.Log, stderr, "rebalancer").With("replica", cfg.ReplicaID)
	if !cfg.Pool.Enabled {
		return errors.New("AUTH_POOL_ENABLED=false: there is no pool to rebalance; do not run the rebalancer")
	}
	pcfg, err := cfg.Pool.Load()
	if err != nil {
		return err
	}
	log.Info("starting", "version", version, "config", cfg.String(), "pool", pcfg.Pool,
		"subscriptions", len(pcfg.Subscriptions), "rebalancingEnabled", pcfg.RebalancingEnabled(),
		"intervalSeconds", pcfg.Rebalancing.IntervalSeconds)

	tel, err := telemetry.Start(ctx, cfg.Telemetry, "authpool-rebalancer", version, log)
	if err != nil {
		return err
	}
	defer tel.Close()
	metrics := tel.Metrics

	rdb, err := cfg.Redis.Open()
	if err != nil {
		return err
	}
	defer func() { _ = rdb.Close() }()
	if err := telemetry.InstrumentRedis(rdb); err != nil {
		return err
	}
	p := pool.New(rdb, pcfg, pool.Options{})

	deliverer, err := notify.New(notify.Options{Events: p.Events(), Consumer: cfg.ReplicaID,
		Config: pcfg.Notifications, WebhookSecret: []byte(cfg.WebhookSecret), ClaimIdle: cfg.ClaimIdle,
		Logger: notify.SlogLogger(telemetry.Module(log, "notify")), Metrics: metrics})
	if err != nil {
		return err
	}
	comp, err := rebalance.New(rebalance.Params{Pool: p, Client: rdb, Holder: cfg.ReplicaID, LockTTL: cfg.LockTTL,
		Deliverer: deliverer, Reporter: rebalance.Reporters(rebalance.SlogReporter(log),
			rebalance.MetricsReporter(metrics))})
	if err != nil {
		return err
	}

	var synced atomic.Bool
	ep := &endpoints{replica: cfg.ReplicaID, leader: comp, pool: p, synced: &synced}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.Addr, err)
	}
	hs := &http.Server{Handler: ep.handler(metrics.Handler()), ReadHeaderTimeout: 5 * time.Second,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	serveErr := make(chan error, 1)
	go func() { serveErr <- hs.Serve(ln) }()
	log.Info("listening", "addr", ln.Addr().String())

	shutdown := func() error {
		sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
		defer cancel()
		err := comp.Shutdown(sctx)
		if herr := hs.Shutdown(sctx); herr != nil {
			err = errors.Join(err, fmt.Errorf("http shutdown: %w", herr))
		}
		log.Info("stopped")
		return err
	}

	if err := runenv.SyncPool(ctx, p, log, 0); err != nil {
		_ = shutdown()
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	synced.Store(true)
	log.Info("pool synced", "pool", pcfg.Pool, "configVersion", pcfg.Version().Short())
	// The rebalancing pass reads the pool's config in force, so a reload
	// reaches it at the next interval; the notification rules are handed to
	// the deliverer.
	w := runenv.NewWatcher(runenv.WatcherParams{Paths: []string{cfg.Pool.ConfigPath},
		Reload: func(ctx context.Context, cause string) {
			// The config check covers the notification rules and webhook;
			// the deliverer takes them once the pool has taken the config.
			if runenv.ReloadPool(ctx, p, cfg.Pool, log, cause, nil) {
				runenv.TakeNotifications(p, deliverer.SetConfig, log)
			}
		},
		OnError: func(err error) { log.Warn("config watch failed; SIGHUP still reloads", "error", err.Error()) }})
	w.Start(ctx)
	defer w.Shutdown()
	// The component stops through Shutdown, in order, not through ctx.
	if err := comp.Start(context.WithoutCancel(ctx)); err != nil {
		_ = shutdown()
		return err
	}

	select {
	case err := <-serveErr:
		_ = shutdown()
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down: resigning leadership", "leader", comp.IsLeader())
	return shutdown()
}
