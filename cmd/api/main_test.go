package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/authpool/authpool/internal/redistest"
	"github.com/authpool/authpool/internal/testutil"
	"github.com/authpool/authpool/pkg/pool"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestLoadEnv(t *testing.T) {
	tests := []struct {
		name     string
		env      map[string]string
		wantErr  string
		wantAddr string
		check    func(t *testing.T, c *config)
	}{
		{name: "defaults", env: map[string]string{}, wantAddr: "127.0.0.1:3000", check: func(t *testing.T, c *config) {
			if c.RateLimitPerMinute != 60 || c.ClaudeBin != "claude" || c.BackendsPath != "config/backends.json" ||
				c.BackendsExplicit || !c.Pool.Enabled || c.Pool.ConfigPath != "config/auth-pool.json" ||
				c.ShutdownTimeout != 30*time.Second || c.Telemetry.Log.Level != slog.LevelInfo || c.Telemetry.Log.JSON ||
				c.Telemetry.Sentry.Environment != "development" {
				t.Errorf("config = %+v", c)
			}
		}},
		{name: "keys listen everywhere", env: map[string]string{"API_KEYS": "a, b,", "PORT": "8080"}, wantAddr: ":8080",
			check: func(t *testing.T, c *config) {
				if len(c.APIKeys) != 2 || c.APIKeys[1] != "b" {
					t.Errorf("keys = %q", c.APIKeys)
				}
			}},
		{name: "listen addr with keys", env: map[string]string{"API_KEYS": "a", "LISTEN_ADDR": "0.0.0.0:9000"}, wantAddr: "0.0.0.0:9000"},
		{name: "loopback listen addr without keys", env: map[string]string{"LISTEN_ADDR": "::1"}, wantAddr: "[::1]:3000"},
		{name: "public listen addr without keys", env: map[string]string{"LISTEN_ADDR": "0.0.0.0"}, wantErr: "API_KEYS"},
		{name: "production without keys", env: map[string]string{"APP_ENV": "production"}, wantErr: "production requires API_KEYS"},
		{name: "NODE_ENV production without keys", env: map[string]string{"NODE_ENV": "production"}, wantErr: "production requires API_KEYS"},
		{name: "production with keys", env: map[string]string{"NODE_ENV": "production", "API_KEYS": "k", "ADMIN_TOKEN": "t"}, wantAddr: ":3000"},
		{name: "production without admin token", env: map[string]string{"NODE_ENV": "production", "API_KEYS": "k"}, wantErr: "production requires ADMIN_TOKEN"},
		{name: "admin addr", env: map[string]string{"ADMIN_ADDR": "127.0.0.1:3002"}, wantAddr: "127.0.0.1:3000",
			check: func(t *testing.T, c *config) {
				if c.AdminAddr != "127.0.0.1:3002" {
					t.Errorf("admin addr = %q", c.AdminAddr)
				}
			}},
		{name: "bad admin addr", env: map[string]string{"ADMIN_ADDR": "3002"}, wantErr: "ADMIN_ADDR"},
		{name: "rate limit off", env: map[string]string{"RATE_LIMIT_PER_MINUTE": "0"}, wantAddr: "127.0.0.1:3000",
			check: func(t *testing.T, c *config) {
				if c.RateLimitPerMinute != 0 {
					t.Errorf("rate limit = %d", c.RateLimitPerMinute)
				}
			}},
		{name: "bad rate limit", env: map[string]string{"RATE_LIMIT_PER_MINUTE": "-1"}, wantErr: "RATE_LIMIT_PER_MINUTE"},
		{name: "bad port", env: map[string]string{"PORT": "http"}, wantErr: "PORT"},
		{name: "bad pool switch", env: map[string]string{"AUTH_POOL_ENABLED": "maybe"}, wantErr: "AUTH_POOL_ENABLED"},
		{name: "pool and telemetry read once", env: map[string]string{"AUTH_POOL_CONFIG": "/etc/p.json", "AUTH_POOL_ENABLED": "0",
			"WEEKLY_BUDGET": "500", "AUTH_POOL_REBALANCING_ENABLED": "false", "LOG_LEVEL": "debug", "LOG_FORMAT": "json",
			"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "SENTRY_DSN": "https://k@sentry.example.com/1",
			"API_KEYS": "k", "ADMIN_TOKEN": "t", "APP_ENV": "Production"}, wantAddr: ":3000",
			check: func(t *testing.T, c *config) {
				want := pool.Overrides{WeeklyBudget: "500", RebalancingEnabled: "false"}
				if c.Pool.ConfigPath != "/etc/p.json" || c.Pool.Enabled || c.Pool.Overrides != want || !c.Production {
					t.Errorf("pool = %+v, production %v", c.Pool, c.Production)
				}
				if c.Telemetry.Log.Level != slog.LevelDebug || !c.Telemetry.Log.JSON || !c.Telemetry.Trace.Exporting() ||
					c.Telemetry.Sentry.Environment != "production" {
					t.Errorf("telemetry = %+v", c.Telemetry)
				}
			}},
		{name: "bad log settings, both listed", env: map[string]string{"LOG_LEVEL": "loud", "LOG_FORMAT": "xml"},
			wantErr: "LOG_LEVEL \"loud\": want debug, info, warn or error\n  telemetry: bad log configuration: LOG_FORMAT"},
		{name: "both redis settings", env: map[string]string{"REDIS_URL": "redis://x", "REDIS_ADDRS": "a:1"}, wantErr: "not both"},
		{name: "shutdown timeout in seconds", env: map[string]string{"SHUTDOWN_TIMEOUT": "5"}, wantAddr: "127.0.0.1:3000",
			check: func(t *testing.T, c *config) {
				if c.ShutdownTimeout != 5*time.Second {
					t.Errorf("shutdown = %v", c.ShutdownTimeout)
				}
			}},
		{name: "every problem at once", env: map[string]string{"APP_ENV": "production", "PORT": "x", "RATE_LIMIT_PER_MINUTE": "y"},
			wantErr: "production requires API_KEYS or API_KEYS_FILE\n  APP_ENV/NODE_ENV=production requires ADMIN_TOKEN (it guards /admin/v1, /status and /debug)\n  RATE_LIMIT_PER_MINUTE"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := loadEnv(env(tc.env))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Addr != tc.wantAddr {
				t.Errorf("addr = %q, want %q", c.Addr, tc.wantAddr)
			}
			if tc.check != nil {
				tc.check(t, c)
			}
		})
	}
}

func TestConfigStringMasksSecrets(t *testing.T) {
	c, err := loadEnv(env(map[string]string{"API_KEYS": "sk-client-1", "ADMIN_TOKEN": "adm1n-s3cret",
		"ANTHROPIC_API_KEY": "sk-ant-xyz", "REDIS_URL": "redis://:hunter2@redis:6379/0", "REDIS_PASSWORD": "pw-secret",
		"WEBHOOK_SECRET": "whsec-secret", "SENTRY_DSN": "https://dsnkey@sentry.example.com/1"}))
	if err != nil {
		t.Fatal(err)
	}
	s := c.String()
	for _, secret := range []string{"sk-client-1", "adm1n-s3cret", "sk-ant-xyz", "hunter2", "pw-secret", "whsec-secret", "dsnkey"} {
		if strings.Contains(s, secret) {
			t.Errorf("config string %q shows %q", s, secret)
		}
	}
	for _, want := range []string{"adminToken=set", "redisPassword=set", "webhookSecret=set", "sentry=set", "fallbackKey=set"} {
		if !strings.Contains(s, want) {
			t.Errorf("config string %q lacks %q", s, want)
		}
	}
}

// TestOAuthTokens: the gateway reads the variables the subscriptions name,
// and only those, and passes the tokens down by subscription id.
func TestOAuthTokens(t *testing.T) {
	subs := []pool.SubscriptionConfig{{ID: "a", OAuthTokenEnv: "TOKEN_A"}, {ID: "b"}, {ID: "c", OAuthTokenEnv: "TOKEN_UNSET"}}
	got := oauthTokens(env(map[string]string{"TOKEN_A": "tok-a", "TOKEN_B": "tok-b"}), subs)
	if len(got) != 1 || got["a"] != "tok-a" {
		t.Errorf("tokens = %v, want only a's", got)
	}
}

// TestRunEmbedded: with no Redis configured the gateway starts on the
// embedded one, serves, and stops cleanly when its context ends; its
// buffered log loses no line on that shutdown (issue 14), and PPROF=1
// serves the profiles on the admin surface.
func TestRunEmbedded(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "auth-pool.json")
	cfg := fmt.Sprintf(`{"subscriptions":[{"id":"sub1","email":"a@example.com","type":"claude-pro","configDir":%q,"weeklyBudget":100}]}`,
		filepath.Join(dir, "sub1"))
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	port, err := redistest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	logs := &testutil.Buffer{}
	go func() {
		done <- run(ctx, env(map[string]string{"PORT": strconv.Itoa(port), "AUTH_POOL_CONFIG": cfgPath,
			"BACKENDS_CONFIG": "", "LOG_LEVEL": "info", "LOG_FORMAT": "json", "PPROF": "1"}), logs)
	}()
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	testutil.Eventually(t, 10*time.Second, "/ready", func() bool {
		r, err := http.Get(base + "/ready")
		if err != nil {
			return false
		}
		r.Body.Close()
		return r.StatusCode == 200
	})
	r, err := http.Get(base + "/debug/auth-pool")
	if err != nil || r.StatusCode != 200 {
		t.Fatalf("/debug/auth-pool: %v", err)
	}
	var body struct{ Status []map[string]any }
	_ = json.NewDecoder(r.Body).Decode(&body)
	if len(body.Status) != 1 || body.Status[0]["id"] != "sub1" {
		t.Errorf("status = %v", body.Status)
	}
	r, err = http.Get(base + "/debug/pprof/heap?debug=1")
	if err != nil || r.StatusCode != 200 {
		t.Fatalf("/debug/pprof/heap: %v %v", r, err)
	}
	r.Body.Close()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after cancel")
	}
	// Every line written before the shutdown is out, the last one included.
	out := logs.String()
	for _, want := range []string{`"path":"/debug/auth-pool"`, `"path":"/debug/pprof/:name"`, `"message":"stopped"`} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s after a clean shutdown:\n%s", want, out)
		}
	}
}

func TestRunRefusesProductionWithoutKeys(t *testing.T) {
	err := run(context.Background(), env(map[string]string{"NODE_ENV": "production"}), io.Discard)
	if err == nil || !strings.Contains(err.Error(), "API_KEYS") {
		t.Errorf("run = %v", err)
	}
}
