package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/authpool/authpool/internal/ids"
	"github.com/authpool/authpool/internal/runenv"
	"github.com/authpool/authpool/pkg/rebalance"
	"github.com/authpool/authpool/pkg/telemetry"
)

// config is the rebalancer's environment, with flags overriding it where an
// operator may want to (never for secrets: flags show in ps). Secrets are
// kept for wiring and masked by String.
type config struct {
	// Addr is where /health, /ready and /leader listen: ":PORT"
	// (PORT, -port; default 3001).
	Addr string
	// Redis (REDIS_URL, or REDIS_ADDRS + REDIS_MASTER_NAME for Sentinel;
	// REDIS_PASSWORD when the URL carries none) is required.
	Redis runenv.Redis
	// Pool is AUTH_POOL_CONFIG (-config; default config/auth-pool.json),
	// AUTH_POOL_ENABLED and the overrides WEEKLY_BUDGET and
	// AUTH_POOL_REBALANCING_ENABLED.
	Pool runenv.Pool
	// WebhookSecret (WEBHOOK_SECRET) keys the X-AuthPool-Signature HMAC.
	WebhookSecret string
	// LockTTL (LEADER_LOCK_TTL, -lock-ttl) is the leader lock's expiry,
	// extended every third of it. Default 10 s.
	LockTTL time.Duration
	// ReplicaID (REPLICA_ID, -replica-id) names this replica as the lock
	// holder and as the notification consumer. Default host name and pid.
	ReplicaID string
	// ClaimIdle (NOTIFY_CLAIM_IDLE, -notify-claim-idle) is how long a
	// notification held by a silent replica waits before another takes it
	// over. Default 30 s.
	ClaimIdle time.Duration
	// ShutdownTimeout (SHUTDOWN_TIMEOUT, -shutdown-timeout) bounds the
	// graceful shutdown. Default 10 s.
	ShutdownTimeout time.Duration
	// Telemetry is LOG_LEVEL (-log-level: debug|info|warn|error, default
	// info), LOG_FORMAT (-log-format: json|text, default text),
	// OTEL_EXPORTER_OTLP_* and SENTRY_* (SENTRY_ENVIRONMENT defaults from
	// APP_ENV/NODE_ENV).
	Telemetry telemetry.Config
}

// Defaults of config.
const (
	defaultPort            = "3001"
	defaultShutdownTimeout = 10 * time.Second
	minLockTTL             = time.Second
	maxLockTTL             = 5 * time.Minute
	minClaimIdle           = 100 * time.Millisecond
)

// loadConfig reads the environment, then the flags in args, and lists every
// problem at once: the rebalancer's one read of its environment. A -h
// yields flag.ErrHelp after the usage went to out.
func loadConfig(args []string, getenv func(string) string, out io.Writer) (*config, error) {
	c := &config{Redis: runenv.RedisFromEnv(getenv), WebhookSecret: getenv("WEBHOOK_SECRET"),
		ReplicaID: getenv("REPLICA_ID")}
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	var err error
	if c.Pool, err = runenv.PoolFromEnv(getenv); err != nil {
		bad("%v", err)
	}
	tel := runenv.TelemetryFromEnv(getenv, runenv.Production(getenv))
	dur := func(name string, def time.Duration) time.Duration {
		v := getenv(name)
		if v == "" {
			return def
		}
		d, err := runenv.Duration(v)
		if err != nil {
			bad("%s: want a duration such as 10s, got %q", name, v)
			return def
		}
		return d
	}
	port := getenv("PORT")
	if port == "" {
		port = defaultPort
	}
	c.LockTTL = dur("LEADER_LOCK_TTL", rebalance.DefaultLockTTL)
	c.ClaimIdle = dur("NOTIFY_CLAIM_IDLE", 0)
	c.ShutdownTimeout = dur("SHUTDOWN_TIMEOUT", defaultShutdownTimeout)

	fs := flag.NewFlagSet("rebalancer", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprintln(out, "Usage: rebalancer [flags]\n\nThe authpool rebalancer: leader election, maintenance, rebalancing and")
		fmt.Fprintln(out, "notification delivery. Environment: REDIS_URL or REDIS_ADDRS (required), REDIS_MASTER_NAME,")
		fmt.Fprintln(out, "REDIS_PASSWORD, AUTH_POOL_CONFIG, WEBHOOK_SECRET, PORT, LEADER_LOCK_TTL, REPLICA_ID,")
		fmt.Fprintln(out, "NOTIFY_CLAIM_IDLE, SHUTDOWN_TIMEOUT, LOG_LEVEL, LOG_FORMAT, OTEL_EXPORTER_OTLP_ENDPOINT,")
		fmt.Fprintln(out, "SENTRY_DSN. Flags override them:")
		fs.PrintDefaults()
	}
	fs.StringVar(&port, "port", port, "`PORT` of /health, /ready and /leader")
	fs.StringVar(&c.Pool.ConfigPath, "config", c.Pool.ConfigPath, "pool config file (AUTH_POOL_CONFIG)")
	fs.DurationVar(&c.LockTTL, "lock-ttl", c.LockTTL, "leader lock expiry (LEADER_LOCK_TTL)")
	fs.StringVar(&c.ReplicaID, "replica-id", c.ReplicaID, "this replica's id (REPLICA_ID; default host name and pid)")
	fs.DurationVar(&c.ClaimIdle, "notify-claim-idle", c.ClaimIdle, "take over notifications held this long by a silent replica (NOTIFY_CLAIM_IDLE; 0: 30s)")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", c.ShutdownTimeout, "graceful shutdown bound (SHUTDOWN_TIMEOUT)")
	fs.StringVar(&tel.LogLevel, "log-level", tel.LogLevel, "debug, info, warn or error (LOG_LEVEL; default info)")
	fs.StringVar(&tel.LogFormat, "log-format", tel.LogFormat, "json or text (LOG_FORMAT; default text)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		bad("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}

	if !c.Redis.Configured() {
		bad("REDIS_URL or REDIS_ADDRS is required: the rebalancer coordinates replicas through Redis (the embedded single-process mode is cmd/api's)")
	} else if p := c.Redis.Check(); p != "" {
		bad("%s", p)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		bad("PORT: want 0 to 65535, got %q", port)
	}
	c.Addr = ":" + port
	if c.LockTTL < minLockTTL || c.LockTTL > maxLockTTL {
		bad("LEADER_LOCK_TTL: want %s to %s, got %s", minLockTTL, maxLockTTL, c.LockTTL)
	}
	if c.ClaimIdle != 0 && c.ClaimIdle < minClaimIdle {
		bad("NOTIFY_CLAIM_IDLE: want at least %s, got %s", minClaimIdle, c.ClaimIdle)
	}
	if c.ShutdownTimeout <= 0 {
		bad("SHUTDOWN_TIMEOUT: want a positive duration, got %s", c.ShutdownTimeout)
	}
	if c.ReplicaID == "" {
		c.ReplicaID = ids.ProcessName("", "rebalancer") // the pod name under Kubernetes
	} else if !rebalance.ValidHolder(c.ReplicaID) {
		bad("REPLICA_ID: want 1 to 128 characters of A-Z a-z 0-9 _ . : @ -, got %q", c.ReplicaID)
	}
	if c.Pool.ConfigPath == "" {
		bad("-config: want a file name")
	}
	if c.Telemetry, err = tel.Config(); err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			bad("%s", line)
		}
	}
	if len(problems) > 0 {
		return nil, errors.New("configuration:\n  " + strings.Join(problems, "\n  "))
	}
	return c, nil
}

// String describes the configuration with every secret masked; a Redis URL
// may carry a password, so only its presence shows.
func (c *config) String() string {
	redisMode := c.Redis.Describe()
	claim := "default"
	if c.ClaimIdle > 0 {
		claim = c.ClaimIdle.String()
	}
	return fmt.Sprintf("addr=%s replica=%s redis=%s redisPassword=%s config=%s webhookSecret=%s sentry=%s lockTTL=%s notifyClaimIdle=%s shutdownTimeout=%s",
		c.Addr, c.ReplicaID, redisMode, runenv.Mask(c.Redis.Password), c.Pool.ConfigPath, runenv.Mask(c.WebhookSecret),
		runenv.Mask(c.Telemetry.Sentry.DSN), c.LockTTL, claim, c.ShutdownTimeout)
}
