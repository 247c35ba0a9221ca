package main

import (
	"errors"
	"flag"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/authpool/authpool/pkg/pool"
)

func env(kv map[string]string) func(string) string {
	return func(k string) string { return kv[k] }
}

func TestLoadConfig(t *testing.T) {
	for _, tc := range []struct {
		name    string
		env     map[string]string
		args    []string
		wantErr []string // substrings of the error; nil: no error
		check   func(t *testing.T, c *config)
	}{
		{name: "defaults", env: map[string]string{"REDIS_URL": "redis://127.0.0.1:6379"},
			check: func(t *testing.T, c *config) {
				if c.Addr != ":3001" || c.LockTTL != 10*time.Second || c.ShutdownTimeout != 10*time.Second ||
					c.ClaimIdle != 0 || c.ReplicaID == "" {
					t.Fatalf("defaults: %+v", c)
				}
			}},
		{name: "environment", env: map[string]string{"REDIS_ADDRS": "a:1, b:2", "REDIS_MASTER_NAME": "m",
			"PORT": "4000", "LEADER_LOCK_TTL": "2s", "NOTIFY_CLAIM_IDLE": "3", "REPLICA_ID": "pod-1",
			"AUTH_POOL_CONFIG": "/etc/p.json", "LOG_LEVEL": "debug", "LOG_FORMAT": "json"},
			check: func(t *testing.T, c *config) {
				if c.Addr != ":4000" || c.LockTTL != 2*time.Second || c.ClaimIdle != 3*time.Second ||
					c.ReplicaID != "pod-1" || len(c.Redis.Addrs) != 2 || c.Redis.Addrs[1] != "b:2" ||
					c.Pool.ConfigPath != "/etc/p.json" || !c.Telemetry.Log.JSON || c.Telemetry.Log.Level != slog.LevelDebug {
					t.Fatalf("env: %+v", c)
				}
			}},
		{name: "flags override the environment", env: map[string]string{"REDIS_URL": "redis://x", "PORT": "4000",
			"LEADER_LOCK_TTL": "2s"},
			args: []string{"-port", "5000", "-lock-ttl", "4s", "-replica-id", "r2", "-config", "/c.json",
				"-log-format", "json"},
			check: func(t *testing.T, c *config) {
				if c.Addr != ":5000" || c.LockTTL != 4*time.Second || c.ReplicaID != "r2" || c.Pool.ConfigPath != "/c.json" {
					t.Fatalf("flags: %+v", c)
				}
				if !c.Telemetry.Log.JSON {
					t.Fatalf("the logger does not get -log-format json: %+v", c.Telemetry.Log)
				}
			}},
		{name: "pool variables", env: map[string]string{"REDIS_URL": "redis://x", "WEEKLY_BUDGET": "250",
			"AUTH_POOL_REBALANCING_ENABLED": "0", "NODE_ENV": "production"},
			check: func(t *testing.T, c *config) {
				want := pool.Overrides{WeeklyBudget: "250", RebalancingEnabled: "0"}
				if c.Pool.ConfigPath != "config/auth-pool.json" || !c.Pool.Enabled || c.Pool.Overrides != want {
					t.Fatalf("pool: %+v", c.Pool)
				}
				if c.Telemetry.Sentry.Environment != "production" || c.Telemetry.Log.Level != slog.LevelInfo {
					t.Fatalf("telemetry: %+v", c.Telemetry)
				}
			}},
		{name: "a bad log flag beats a good variable", env: map[string]string{"REDIS_URL": "redis://x", "LOG_LEVEL": "info"},
			args: []string{"-log-level", "chatty"}, wantErr: []string{`LOG_LEVEL "chatty"`}},
		{name: "redis is required", env: map[string]string{},
			wantErr: []string{"REDIS_URL or REDIS_ADDRS is required"}},
		{name: "every problem at once", env: map[string]string{"REDIS_URL": "redis://x", "REDIS_ADDRS": "a:1",
			"PORT": "http", "LEADER_LOCK_TTL": "100ms", "NOTIFY_CLAIM_IDLE": "1ms", "REPLICA_ID": "a b",
			"LOG_LEVEL": "loud", "LOG_FORMAT": "xml", "SHUTDOWN_TIMEOUT": "soon", "AUTH_POOL_ENABLED": "perhaps"},
			wantErr: []string{"not both", "PORT", "LEADER_LOCK_TTL", "NOTIFY_CLAIM_IDLE", "REPLICA_ID",
				"LOG_LEVEL", "LOG_FORMAT", "SHUTDOWN_TIMEOUT", "AUTH_POOL_ENABLED"}},
		{name: "stray arguments", env: map[string]string{"REDIS_URL": "redis://x"}, args: []string{"serve"},
			wantErr: []string{"unexpected arguments: serve"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := loadConfig(tc.args, env(tc.env), io.Discard)
			if tc.wantErr == nil {
				if err != nil {
					t.Fatal(err)
				}
				tc.check(t, c)
				return
			}
			if err == nil {
				t.Fatalf("no error, want %v", tc.wantErr)
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestHelpIsNotAnError(t *testing.T) {
	var out strings.Builder
	_, err := loadConfig([]string{"-h"}, env(nil), &out)
	if !errors.Is(err, flag.ErrHelp) || !strings.Contains(out.String(), "-lock-ttl") {
		t.Fatalf("err = %v, usage:\n%s", err, out.String())
	}
}

// Secrets never reach the start-up log line.
func TestConfigStringMasksSecrets(t *testing.T) {
	c, err := loadConfig(nil, env(map[string]string{"REDIS_URL": "redis://:hunter2@db:6379/0",
		"REDIS_PASSWORD": "pw-secret", "WEBHOOK_SECRET": "whsec-secret", "SENTRY_DSN": "https://dsnkey@sentry.example.com/1"}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	s := c.String()
	for _, secret := range []string{"hunter2", "pw-secret", "whsec-secret", "db:6379", "dsnkey"} {
		if strings.Contains(s, secret) {
			t.Fatalf("String() shows %q: %s", secret, s)
		}
	}
	if !strings.Contains(s, "webhookSecret=set") || !strings.Contains(s, "redisPassword=set") || !strings.Contains(s, "sentry=set") {
		t.Fatalf("String() = %s", s)
	}
}
