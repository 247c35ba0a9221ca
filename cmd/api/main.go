// Command api is the authpool gateway: an OpenAI-compatible chat completions
// API in front of a pool of Claude subscriptions (DESIGN §1, §7). It only
// wires: configuration from the environment and config/auth-pool.json, the
// Redis client (or an embedded one), the backends, the HTTP server and a
// graceful shutdown.
//
// Environment:
//
//	AUTH_POOL_CONFIG      pool config file (default config/auth-pool.json)
//	AUTH_POOL_ENABLED     false: no pool, every request goes to the fallback backend
//	WEEKLY_BUDGET, AUTH_POOL_REBALANCING_ENABLED   overrides of the config file
//	REDIS_URL             redis:// or rediss:// URL of one Redis
//	REDIS_ADDRS           comma-separated addresses: Cluster, or Sentinel with
//	REDIS_MASTER_NAME     the Sentinel master; REDIS_PASSWORD its password
//	                      (none of them: an embedded in-memory Redis, one replica only,
//	                      with the rebalancer and notifications running in-process)
//	PORT                  listen port (default 3000)
//	LISTEN_ADDR           listen host or host:port (default all interfaces with
//	                      API_KEYS, 127.0.0.1 without; non-loopback needs API_KEYS)
//	API_KEYS              comma-separated client keys (Bearer or X-API-Key); this or
//	                      API_KEYS_FILE is required when APP_ENV or NODE_ENV is production
//	API_KEYS_FILE         JSON list of named keys with rateLimitPerMinute, weeklyBudget
//	                      and models; reloaded on SIGHUP or a change, like the config
//	ADMIN_TOKEN           guards /debug/*, /admin/v1 and /status (unset: loopback
//	                      clients only); required when APP_ENV or NODE_ENV is production
//	ADMIN_ADDR            serve /metrics and the admin surface on this host:port
//	                      only (e.g. 127.0.0.1:3002); default: the API's port
//	RATE_LIMIT_PER_MINUTE per client key (or IP without keys), burst the same; 0 off (default 60)
//	BACKENDS_CONFIG       backends file in the seeds' format (default config/backends.json,
//	                      optional: without it one claude-cli backend per subscription)
//	CLAUDE_BIN            the Claude Code CLI (default claude)
//	<oauthTokenEnv>       per subscription: a `claude setup-token` token passed to the
//	                      CLI as CLAUDE_CODE_OAUTH_TOKEN (the way to run several replicas)
//	ANTHROPIC_API_KEY     enables the anthropic-api fallback backend
//	ANTHROPIC_BASE_URL    the fallback's base URL (default https://api.anthropic.com,
//	                      or backends.json's baseUrl); http:// only to loopback
//	WEBHOOK_SECRET        signs webhooks sent by the embedded notifier
//	SHUTDOWN_TIMEOUT      wait for in-flight requests on SIGTERM (default 30s)
//	LOG_LEVEL, LOG_FORMAT debug|info|warn|error (info); json|text (text)
//	OTEL_EXPORTER_OTLP_ENDPOINT  export traces over OTLP (none exported without it)
//	SENTRY_DSN            report errors and recovered panics to Sentry
//	SERVER_TIMING         1: a Server-Timing header and a "request phases" log line per turn
//	PPROF                 1: net/http/pprof at /debug/pprof/ on the admin surface (guarded like /debug)
//
// Metrics are served at /metrics on the same port.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"

	"github.com/authpool/authpool/internal/runenv"
	"github.com/authpool/authpool/pkg/gateway"
	"github.com/authpool/authpool/pkg/pool"
	"github.com/authpool/authpool/pkg/telemetry"
)

// settleDrainFloor is the least time a shutdown gives failed settlements to
// land after the HTTP server stopped, even when requests used up
// SHUTDOWN_TIMEOUT (the chart leaves 5 s of its grace period for this).
const settleDrainFloor = 3 * time.Second

// version is the release reported to Sentry and in the start-up line; the
// build sets it with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Getenv, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "api:", err)
		os.Exit(1)
	}
}

// run serves until ctx ends (a signal), then shuts down gracefully: stop
// accepting, let in-flight requests finish up to the shutdown timeout, then
// cancel what remains so CLI children are killed.
func run(ctx context.Context, getenv func(string) string, stderr io.Writer) error {
	cfg, err := loadEnv(getenv)
	if err != nil {
		return err
	}
	// The log is buffered (a request's line costs no write of its own),
	// flushed every DefaultLogFlushInterval, at once after a warning or an
	// error, and when run returns.
	logOut := telemetry.NewBufferedWriter(stderr, telemetry.DefaultLogFlushInterval)
	defer func() { _ = logOut.Close() }()
	log := telemetry.NewLogger(cfg.Telemetry.Log, logOut, "api")
	log.Info("starting", "version", version, "config", cfg.String())
	tel, err := telemetry.Start(ctx, cfg.Telemetry, gateway.ServiceName, version, log)
	if err != nil {
		return err
	}
	defer tel.Close()
	metrics := tel.Metrics
	var clientKeys []gateway.ClientKey
	if cfg.APIKeysFile != "" {
		if clientKeys, err = gateway.LoadKeysFile(cfg.APIKeysFile); err != nil {
			return err // lists each problem with its path, never a key
		}
		log.Info("client keys loaded", "file", cfg.APIKeysFile, "keys", len(clientKeys))
	}
	if !cfg.authOn() {
		log.Warn("API_KEYS is not set: client authentication is off, listening on loopback only", "addr", cfg.Addr)
	}

	rdb, embedded, err := openRedis(cfg)
	if err != nil {
		return err
	}
	defer func() { _ = rdb.Close() }()
	// Without an exporter no span goes anywhere: no Redis hook, and no
	// tracing middleware in the gateway (each walks the stack per call).
	var tp trace.TracerProvider
	if cfg.Telemetry.Trace.Exporting() {
		if err := telemetry.InstrumentRedis(rdb); err != nil {
			return err
		}
		tp = otel.GetTracerProvider()
	}
	if embedded != nil {
		defer func() { _ = embedded.Close() }()
		log.Warn("REDIS_URL and REDIS_ADDRS are not set: using an embedded in-memory Redis; state is lost on exit and only one replica may run",
			"addr", embedded.Addr())
	}

	var p *pool.Pool
	var tokens map[string]string
	if cfg.Pool.Enabled {
		pcfg, err := cfg.Pool.Load()
		if err != nil {
			return err
		}
		tokens = oauthTokens(getenv, pcfg.Subscriptions)
		p = pool.New(rdb, pcfg, pool.Options{})
		if err := runenv.SyncPool(ctx, p, log, syncGiveUp); err != nil {
			return err
		}
		if err := metrics.ObserveSubscriptions(pool.Statuses(), subscriptionSamples(p)); err != nil {
			return err
		}
		if err := metrics.ObserveSavings(savingsSamples(p)); err != nil {
			return err
		}
		log.Info("pool synced", "pool", pcfg.Pool, "subscriptions", len(pcfg.Subscriptions),
			"fallbackWhenExhausted", pcfg.FallbackEnabled(), "configVersion", pcfg.Version().Short())
		if p.Behind() {
			log.Warn("config behind: Redis holds a newer config version; serving only the subscriptions this config knows",
				"configVersion", pcfg.Version().Short())
		}
	} else {
		log.Warn("AUTH_POOL_ENABLED=false: every request goes to the fallback backend")
	}

	backends, err := buildBackends(cfg, p, log)
	if err != nil {
		return err
	}
	if !cfg.Pool.Enabled && backends.Fallback == nil {
		return errors.New("AUTH_POOL_ENABLED=false needs a fallback backend: set ANTHROPIC_API_KEY")
	}

	srv, err := gateway.New(gateway.Options{Pool: p, Redis: rdb, Backends: backends, APIKeys: cfg.APIKeys, ClientKeys: clientKeys,
		AdminToken: cfg.AdminToken, SeparateAdmin: cfg.AdminAddr != "", RateLimitPerMinute: cfg.RateLimitPerMinute, TrustedProxies: cfg.TrustedProxies, OAuthTokens: tokens,
		Logger: telemetry.Module(log, "gateway"), Metrics: metrics, ModelMap: modelMap(p),
		TracerProvider: tp, ServerTiming: cfg.ServerTiming, Profiling: cfg.Profiling})
	if err != nil {
		return err
	}

	// Requests derive from base; cancelling it after the shutdown deadline
	// ends the turns still running and kills their CLI processes.
	base, cancelBase := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelBase()
	stopBG := func() {}
	// setNotifications puts a reloaded config's notification rules in force
	// in the embedded rebalancer's deliverer (nil: none in this process).
	var setNotifications func()
	if embedded != nil && p != nil {
		stop, setN, err := startEmbeddedRebalancer(base, p, cfg.WebhookSecret, log, metrics)
		if err != nil {
			return err
		}
		stopBG = sync.OnceFunc(stop)
		setNotifications = setN
		defer stopBG()
	}

	srv.Start()
	if p != nil || cfg.APIKeysFile != "" {
		w := runenv.NewWatcher(runenv.WatcherParams{Paths: []string{cfg.Pool.ConfigPath, cfg.APIKeysFile},
			Reload: func(ctx context.Context, cause string) {
				if p != nil {
					if runenv.ReloadPool(ctx, p, cfg.Pool, log, cause, func(next *pool.Config) error {
						return addBackends(cfg, srv, next, getenv, log)
					}) {
						srv.SetModelMap(p.Config().ModelMap)
						if setNotifications != nil {
							setNotifications()
						}
					}
				}
				if cfg.APIKeysFile != "" {
					reloadKeys(cfg.APIKeysFile, srv, log)
				}
			},
			OnError: func(err error) { log.Warn("config watch failed; SIGHUP still reloads", "error", err.Error()) }})
		w.Start(base)
		defer w.Shutdown()
	}

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.Addr, err)
	}
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
		BaseContext: func(net.Listener) context.Context { return base },
		ErrorLog:    slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	serveErr := make(chan error, 2)
	go func() { serveErr <- hs.Serve(ln) }()
	log.Info("listening", "addr", ln.Addr().String())
	// The admin surface and /metrics on a port of their own, so the
	// public one carries only the API.
	var adminHS *http.Server
	if cfg.AdminAddr != "" {
		aln, err := net.Listen("tcp", cfg.AdminAddr)
		if err != nil {
			_ = hs.Close()
			return fmt.Errorf("listen ADMIN_ADDR %s: %w", cfg.AdminAddr, err)
		}
		adminHS = &http.Server{Handler: srv.AdminHandler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
			BaseContext: func(net.Listener) context.Context { return base },
			ErrorLog:    slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
		go func() { serveErr <- adminHS.Serve(aln) }()
		log.Info("admin listening", "addr", aln.Addr().String())
	}

	select {
	case err := <-serveErr:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down: finishing in-flight requests", "timeout", cfg.ShutdownTimeout.String())
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if adminHS != nil {
		_ = adminHS.Shutdown(sctx)
	}
	err = hs.Shutdown(sctx)
	if errors.Is(err, context.DeadlineExceeded) {
		log.Warn("shutdown deadline passed: cancelling the remaining requests")
		cancelBase()
		_ = hs.Close()
		err = nil
	}
	cancelBase()
	// Usage whose settle failed is retried until it lands or the drain
	// deadline passes; what is left is logged as dropped.
	drainBy := time.Now().Add(settleDrainFloor)
	if d, ok := sctx.Deadline(); ok && d.After(drainBy) {
		drainBy = d
	}
	dctx, dcancel := context.WithDeadline(context.Background(), drainBy)
	if derr := srv.Shutdown(dctx); derr != nil {
		log.Error("shutdown: failed settlements still queued were dropped", "error", derr)
	}
	dcancel()
	stopBG()
	log.Info("stopped")
	return err
}

// reloadKeys re-reads API_KEYS_FILE; an invalid file keeps the keys in
// force, its problems logged with their paths (never a key).
func reloadKeys(path string, srv *gateway.Server, log *slog.Logger) {
	keys, err := gateway.LoadKeysFile(path)
	if err != nil {
		var ve *pool.ValidationError
		if errors.As(err, &ve) {
			for _, pr := range ve.Problems {
				log.Error("client keys reload: invalid", "path", pr.Path, "problem", pr.Message, "file", path)
			}
		} else {
			log.Error("client keys reload: cannot read the file", "file", path, "error", err.Error())
		}
		log.Warn("client keys reload failed: the keys in force stay")
		return
	}
	srv.SetClientKeys(keys)
	log.Info("client keys reloaded", "file", path, "keys", len(keys))
}

// syncGiveUp bounds the wait for Redis at start-up: a gateway that cannot
// reach it should fail where the operator looks, not hang.
const syncGiveUp = 30 * time.Second

// openRedis connects to REDIS_URL, or REDIS_ADDRS (+ REDIS_MASTER_NAME for
// Sentinel; several addresses without it for Cluster), or starts the
// embedded Redis when neither is set.
func openRedis(cfg *config) (redis.UniversalClient, *pool.Embedded, error) {
	if cfg.Redis.Configured() {
		rdb, err := cfg.Redis.Open()
		return rdb, nil, err
	}
	e, err := pool.NewEmbedded(time.Second)
	if err != nil {
		return nil, nil, fmt.Errorf("start embedded Redis: %w", err)
	}
	return e.Client, e, nil
}

// modelMap is the pool config's modelMap (none without a pool).
func modelMap(p *pool.Pool) map[string]string {
	if p == nil {
		return nil
	}
	return p.Config().ModelMap
}
