package runenv

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/authpool/authpool/pkg/pool"
	"github.com/authpool/authpool/pkg/telemetry"
)

func envOf(kv map[string]string) func(string) string { return func(k string) string { return kv[k] } }

func TestPoolFromEnv(t *testing.T) {
	p, err := PoolFromEnv(envOf(nil))
	if err != nil || p.ConfigPath != pool.DefaultConfigPath || !p.Enabled || p.Overrides != (pool.Overrides{}) {
		t.Errorf("defaults: %+v, %v", p, err)
	}
	p, err = PoolFromEnv(envOf(map[string]string{"AUTH_POOL_CONFIG": "/etc/p.json", "AUTH_POOL_ENABLED": "False",
		"WEEKLY_BUDGET": "300", "AUTH_POOL_REBALANCING_ENABLED": "1"}))
	want := pool.Overrides{WeeklyBudget: "300", RebalancingEnabled: "1"}
	if err != nil || p.ConfigPath != "/etc/p.json" || p.Enabled || p.Overrides != want {
		t.Errorf("set: %+v, %v", p, err)
	}
	_, err = PoolFromEnv(envOf(map[string]string{"AUTH_POOL_ENABLED": "maybe"}))
	if !errors.Is(err, pool.ErrInvalidConfig) || !strings.Contains(err.Error(), "AUTH_POOL_ENABLED") {
		t.Errorf("bad switch: %v", err)
	}
}

// TestProduction: APP_ENV and its seeds' alias NODE_ENV, compared one way.
func TestProduction(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want bool
	}{
		{nil, false},
		{map[string]string{"APP_ENV": "production"}, true},
		{map[string]string{"NODE_ENV": "Production "}, true},
		{map[string]string{"APP_ENV": "staging", "NODE_ENV": "production"}, true},
		{map[string]string{"APP_ENV": "prod"}, false},
	} {
		if got := Production(envOf(tc.env)); got != tc.want {
			t.Errorf("%v: production %v, want %v", tc.env, got, tc.want)
		}
	}
}

func TestTelemetryFromEnv(t *testing.T) {
	c, err := TelemetryFromEnv(envOf(map[string]string{"LOG_LEVEL": "WARN", "LOG_FORMAT": "json",
		"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/t",
		"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
		"SENTRY_DSN": "https://k@s/1"}), true).Config()
	want := telemetry.Config{Log: telemetry.LogConfig{Level: slog.LevelWarn, JSON: true},
		Trace:  telemetry.TraceConfig{Endpoint: "http://c:4318", TracesEndpoint: "http://c:4318/t", Protocol: "grpc", TracesProtocol: "http/protobuf"},
		Sentry: telemetry.SentryConfig{DSN: "https://k@s/1", Environment: "production"}}
	if err != nil || c != want {
		t.Errorf("got %+v, %v\nwant %+v", c, err, want)
	}
	te := TelemetryFromEnv(envOf(map[string]string{"SENTRY_ENVIRONMENT": "staging"}), true)
	if te.Sentry.Environment != "staging" {
		t.Errorf("SENTRY_ENVIRONMENT does not win: %q", te.Sentry.Environment)
	}
	if te := TelemetryFromEnv(envOf(nil), false); te.Sentry.Environment != "development" {
		t.Errorf("default environment %q", te.Sentry.Environment)
	}
	_, err = TelemetryFromEnv(envOf(map[string]string{"LOG_LEVEL": "loud", "LOG_FORMAT": "xml"}), false).Config()
	if !errors.Is(err, telemetry.ErrLogConfig) || !strings.Contains(err.Error(), "LOG_LEVEL") || !strings.Contains(err.Error(), "LOG_FORMAT") {
		t.Errorf("both bad log settings must be named: %v", err)
	}
}

func TestMask(t *testing.T) {
	if Mask("") != "unset" || Mask("s3cret") != "set" {
		t.Error("Mask shows more than whether a secret is set")
	}
}

func testConfig() *pool.Config {
	return &pool.Config{Subscriptions: []pool.SubscriptionConfig{{ID: "a", Email: "a@example.com",
		Type: "claude-pro", ConfigDir: "/srv/a", WeeklyBudget: 100}}}
}

// TestSyncPool: it syncs when Redis answers; without Redis it gives up after
// its bound with the cause, or, unbounded, only when the context ends.
func TestSyncPool(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	e, err := pool.NewEmbedded(time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if err := SyncPool(t.Context(), pool.New(e.Client, testConfig(), pool.Options{}), quiet, time.Second); err != nil {
		t.Fatalf("sync on a live Redis: %v", err)
	}

	down := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	defer down.Close()
	p := pool.New(down, testConfig(), pool.Options{})
	err = SyncPool(t.Context(), p, quiet, 100*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "sync pool with Redis") {
		t.Errorf("bounded sync without Redis = %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 700*time.Millisecond)
	defer cancel()
	if err := SyncPool(ctx, p, quiet, 0); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("unbounded sync without Redis = %v, want the context's error", err)
	}
}
