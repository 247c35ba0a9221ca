package runenv

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/authpool/authpool/pkg/pool"
	"github.com/authpool/authpool/pkg/telemetry"
)

// Pool is the pool part of the environment, the same for both binaries.
type Pool struct {
	// ConfigPath (AUTH_POOL_CONFIG) is the config file. Default
	// pool.DefaultConfigPath, relative to the working directory.
	ConfigPath string
	// Enabled (AUTH_POOL_ENABLED: true, false, 1 or 0) is false when every
	// request goes to the fallback backend. Default true.
	Enabled bool
	// Overrides are WEEKLY_BUDGET and AUTH_POOL_REBALANCING_ENABLED, checked
	// by pool.LoadConfig together with the file.
	Overrides pool.Overrides
}

// PoolFromEnv reads the pool variables; the error is AUTH_POOL_ENABLED's.
func PoolFromEnv(getenv func(string) string) (Pool, error) {
	p := Pool{ConfigPath: getenv("AUTH_POOL_CONFIG"), Overrides: pool.Overrides{
		WeeklyBudget:       getenv("WEEKLY_BUDGET"),
		RebalancingEnabled: getenv("AUTH_POOL_REBALANCING_ENABLED"),
	}}
	if p.ConfigPath == "" {
		p.ConfigPath = pool.DefaultConfigPath
	}
	var err error
	p.Enabled, err = pool.PoolEnabled(getenv("AUTH_POOL_ENABLED"))
	return p, err
}

// Load loads the config file with the overrides.
func (p Pool) Load() (*pool.Config, error) { return pool.LoadConfig(p.ConfigPath, p.Overrides) }

// Production reports APP_ENV=production or its seeds' alias NODE_ENV=production
// (any case): the one comparison both binaries and Sentry's tag use.
func Production(getenv func(string) string) bool {
	return strings.EqualFold(strings.TrimSpace(getenv("APP_ENV")), "production") ||
		strings.EqualFold(strings.TrimSpace(getenv("NODE_ENV")), "production")
}

// Telemetry is the telemetry part of the environment as read: the log
// settings stay text until Config parses them, so a binary's flags can
// replace them first.
type Telemetry struct {
	// LogLevel (LOG_LEVEL: debug|info|warn|error, default info) and
	// LogFormat (LOG_FORMAT: json|text, default text).
	LogLevel, LogFormat string
	// Trace is OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
	// OTEL_EXPORTER_OTLP_PROTOCOL and OTEL_EXPORTER_OTLP_TRACES_PROTOCOL.
	Trace telemetry.TraceConfig
	// Sentry is SENTRY_DSN and SENTRY_ENVIRONMENT (default production when
	// Production, else development).
	Sentry telemetry.SentryConfig
}

// TelemetryFromEnv reads the telemetry variables; production is the
// binary's Production.
func TelemetryFromEnv(getenv func(string) string, production bool) Telemetry {
	t := Telemetry{LogLevel: getenv("LOG_LEVEL"), LogFormat: getenv("LOG_FORMAT"),
		Trace: telemetry.TraceConfig{
			Endpoint:       getenv("OTEL_EXPORTER_OTLP_ENDPOINT"),
			TracesEndpoint: getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
			Protocol:       getenv("OTEL_EXPORTER_OTLP_PROTOCOL"),
			TracesProtocol: getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"),
		},
		Sentry: telemetry.SentryConfig{DSN: getenv("SENTRY_DSN"), Environment: strings.TrimSpace(getenv("SENTRY_ENVIRONMENT"))}}
	if t.Sentry.Environment == "" {
		t.Sentry.Environment = "development"
		if production {
			t.Sentry.Environment = "production"
		}
	}
	return t
}

// Config parses the log settings, the one place they are parsed.
func (t Telemetry) Config() (telemetry.Config, error) {
	log, err := telemetry.ParseLogConfig(t.LogLevel, t.LogFormat)
	return telemetry.Config{Log: log, Trace: t.Trace, Sentry: t.Sentry}, err
}

// Mask shows whether a secret is set, never its value.
func Mask(secret string) string {
	if secret == "" {
		return "unset"
	}
	return "set"
}

// Sync backoff: first wait and cap.
const (
	syncFirstWait = 500 * time.Millisecond
	syncMaxWait   = 5 * time.Second
	syncTimeout   = 5 * time.Second
)

// SyncPool writes the configured subscriptions into Redis (idempotent),
// retrying with backoff while Redis is unreachable, since a replica may start
// before Redis does. It gives up after giveUp (0: only when ctx ends) with
// the last error.
func SyncPool(ctx context.Context, p *pool.Pool, log *slog.Logger, giveUp time.Duration) error {
	var deadline time.Time
	if giveUp > 0 {
		deadline = time.Now().Add(giveUp)
	}
	wait := syncFirstWait
	for {
		sctx, cancel := context.WithTimeout(ctx, syncTimeout)
		err := p.Sync(sctx)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !deadline.IsZero() && time.Now().After(deadline) {
			return fmt.Errorf("sync pool with Redis: %w", err)
		}
		log.Warn("Redis not ready; retrying the pool sync", "error", err.Error(), "retryIn", wait.String())
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, syncMaxWait)
	}
}
