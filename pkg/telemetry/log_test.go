package telemetry

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

func env(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

// newLogger is what a binary does with its LOG_LEVEL and LOG_FORMAT:
// parse them once, then build the logger.
func newLogger(getenv func(string) string, w io.Writer, module string) (*slog.Logger, error) {
	c, err := ParseLogConfig(getenv("LOG_LEVEL"), getenv("LOG_FORMAT"))
	if err != nil {
		return nil, err
	}
	return NewLogger(c, w, module), nil
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func jsonLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("not a JSON line: %q: %v", l, err)
		}
		lines = append(lines, m)
	}
	return lines
}

func TestJSONLinesHaveTheSeedsShape(t *testing.T) {
	var buf bytes.Buffer
	l, err := newLogger(env("LOG_FORMAT", "json"), &buf, "api")
	if err != nil {
		t.Fatal(err)
	}
	Module(l, "AllocationBalancer").Info("Allocated session", "clientId", "client-123", "subscriptionId", "prod-sub2")

	// The seeds' line, key order included.
	exact := regexp.MustCompile(`^\{"timestamp":"[^"]+","level":"INFO","module":"AllocationBalancer","message":"Allocated session",` +
		`"context":\{"clientId":"client-123","subscriptionId":"prod-sub2"\}\}\n$`)
	if !exact.MatchString(buf.String()) {
		t.Errorf("line %q is not the seeds' shape", buf.String())
	}
	line := jsonLines(t, buf.String())[0]
	if len(line) != 5 {
		t.Errorf("top-level keys %v, want exactly timestamp level module message context", keys(line))
	}
	ts, _ := line["timestamp"].(string)
	if !regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$`).MatchString(ts) {
		t.Errorf("timestamp %q, want RFC 3339 UTC with milliseconds", ts)
	}
	want := map[string]any{"level": "INFO", "module": "AllocationBalancer", "message": "Allocated session",
		"context": map[string]any{"clientId": "client-123", "subscriptionId": "prod-sub2"}}
	for k, v := range want {
		if fmt.Sprint(line[k]) != fmt.Sprint(v) {
			t.Errorf("%s = %v, want %v", k, line[k], v)
		}
	}
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestJSONContextKeepsWithAttrsAndGroups(t *testing.T) {
	var buf bytes.Buffer
	l, err := newLogger(env("LOG_FORMAT", "json", "LOG_LEVEL", "debug"), &buf, "rebalancer")
	if err != nil {
		t.Fatal(err)
	}
	l = l.With("pool", "default").WithGroup("move").With("from", "sub1")
	l.Debug("Rebalancing needed", "to", "sub2", slog.Int("clients", 2))
	l.Warn("slow")

	lines := jsonLines(t, buf.String())
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2", len(lines))
	}
	got, _ := json.Marshal(lines[0]["context"])
	if want := `{"move":{"clients":2,"from":"sub1","to":"sub2"},"pool":"default"}`; string(got) != want {
		t.Errorf("context %s, want %s", got, want)
	}
	if lines[0]["level"] != "DEBUG" || lines[1]["level"] != "WARN" || lines[0]["module"] != "rebalancer" {
		t.Errorf("level/module: %v %v %v", lines[0]["level"], lines[1]["level"], lines[0]["module"])
	}
}

func TestLevelsAndFormats(t *testing.T) {
	tests := []struct {
		name      string
		env       func(string) string
		wantErr   bool
		debugSeen bool
		infoSeen  bool
		json      bool
	}{
		{"defaults: info, text", env(), false, false, true, false},
		{"debug", env("LOG_LEVEL", "debug"), false, true, true, false},
		{"warn hides info", env("LOG_LEVEL", "WARN"), false, false, false, false},
		{"error hides info", env("LOG_LEVEL", "error", "LOG_FORMAT", "json"), false, false, false, true},
		{"json", env("LOG_FORMAT", "json"), false, false, true, true},
		{"bad level", env("LOG_LEVEL", "verbose"), true, false, false, false},
		{"bad format", env("LOG_FORMAT", "xml"), true, false, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			l, err := newLogger(tt.env, &buf, "api")
			if tt.wantErr {
				if !errors.Is(err, ErrLogConfig) {
					t.Fatalf("err %v, want ErrLogConfig", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			l.Debug("debug-line")
			l.Info("info-line")
			out := buf.String()
			if strings.Contains(out, "debug-line") != tt.debugSeen || strings.Contains(out, "info-line") != tt.infoSeen {
				t.Errorf("output %q: debug seen %v, info seen %v", out, tt.debugSeen, tt.infoSeen)
			}
			if tt.infoSeen && strings.HasPrefix(out, "{") != tt.json {
				t.Errorf("output %q: json %v", out, tt.json)
			}
			if tt.infoSeen && !tt.json && !strings.Contains(out, "module=api") {
				t.Errorf("text output %q lacks module=api", out)
			}
		})
	}
}

// The secrets a process holds, each logged the careless way it might be.
const (
	anthropicKey = "sk-ant-api03-Zx9fakeAPIkeyValue_1234567890abcdef"
	oauthToken   = "sk-ant-oat01-FakeOAuthTokenFromSetupToken_abcdef123"
	adminToken   = "adm-7f3c9e1b5d2a4c6e8f0a1b2c3d4e5f60"
	webhookSec   = "whsec-5e8b1c9d2f7a4b6c0d3e9f1a2b4c6d8e"
	clientKey    = "client-key-0a1b2c3d4e5f67890abcdef"
	redisPass    = "r3disPassw0rdValue"
	sentryKey    = "0123456789abcdef0123456789abcdef"
)

func logSecrets(l *slog.Logger) {
	l.Info("config", "ANTHROPIC_API_KEY", anthropicKey, "ADMIN_TOKEN", adminToken, "WEBHOOK_SECRET", webhookSec)
	l.Info("cli env", "CLAUDE_CODE_OAUTH_TOKEN", oauthToken, slog.Group("headers", "Authorization", "Bearer "+clientKey, "X-Api-Key", clientKey))
	l.With("apiKey", clientKey).Info("request", "redis", "redis://default:"+redisPass+"@redis:6379/0",
		"sentry_dsn", "https://"+sentryKey+"@o1.ingest.sentry.io/1")
	l.Error("backend failed", "err", fmt.Errorf("claude: exit 1: invalid x-api-key %s", anthropicKey))
	l.Warn("auth header was Bearer " + clientKey + " and key " + oauthToken)
	l.Info("settings", "cfg", map[string]any{"adminToken": adminToken, "nested": map[string]any{"password": redisPass}},
		"args", []string{"--token", "Bearer " + clientKey})
	l.Info("incoming", "headers", http.Header{"Authorization": {"Bearer " + clientKey}, "X-Api-Key": {clientKey},
		"Cookie": {"s=" + adminToken}, "X-Request-Id": {"req-42"}}, "query", url.Values{"api_key": {clientKey}})
	l.WithGroup("env").Info("secret env", "webhookSecret", webhookSec, "oauthTokenEnv", "CLAUDE_TOKEN_SUB1")
}

func TestSecretsNeverReachTheLog(t *testing.T) {
	secrets := []string{anthropicKey, oauthToken, adminToken, webhookSec, clientKey, redisPass, sentryKey}
	for _, format := range []string{"json", "text"} {
		t.Run(format, func(t *testing.T) {
			var buf bytes.Buffer
			l, err := newLogger(env("LOG_FORMAT", format), &buf, "api")
			if err != nil {
				t.Fatal(err)
			}
			logSecrets(l)
			out := buf.String()
			for _, s := range secrets {
				if strings.Contains(out, s) {
					t.Errorf("secret %q leaked:\n%s", s, out)
				}
			}
			if n := strings.Count(out, Redacted); n < 16 {
				t.Errorf("%d redactions, want every secret marked:\n%s", n, out)
			}
			// What is not a secret stays readable.
			for _, keep := range []string{"backend failed", "redis:6379", "claude: exit 1", "req-42"} {
				if !strings.Contains(out, keep) {
					t.Errorf("%q was lost:\n%s", keep, out)
				}
			}
		})
	}
}

func TestTokenCountsAreNotSecrets(t *testing.T) {
	var buf bytes.Buffer
	l, err := newLogger(env("LOG_FORMAT", "json"), &buf, "gateway")
	if err != nil {
		t.Fatal(err)
	}
	l.Info("settled", "tokens", 1234, "prompt_tokens", 1000, "subscriptionId", "sub1")
	ctx := jsonLines(t, buf.String())[0]["context"].(map[string]any)
	if ctx["tokens"] != float64(1234) || ctx["prompt_tokens"] != float64(1000) {
		t.Errorf("token counts redacted: %v", ctx)
	}
}

func TestRedactString(t *testing.T) {
	tests := []struct{ in, want string }{
		{"Authorization: Bearer abcdefgh12345678", "Authorization: Bearer " + Redacted},
		{"bearer token required", "bearer token required"},
		{"key " + anthropicKey + " rejected", "key " + Redacted + " rejected"},
		{"redis://:" + redisPass + "@10.0.0.1:6379", "redis://:" + Redacted + "@10.0.0.1:6379"},
		{"https://example.com/path", "https://example.com/path"},
		{"plain text", "plain text"},
	}
	for _, tt := range tests {
		if got := RedactString(tt.in); got != tt.want {
			t.Errorf("RedactString(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestSensitiveKey(t *testing.T) {
	for key, want := range map[string]bool{
		"ADMIN_TOKEN": true, "WEBHOOK_SECRET": true, "api_key": true, "X-Api-Key": true, "apiKey": true,
		"Authorization": true, "SENTRY_DSN": true, "Cookie": true, "password": true, "CLAUDE_CODE_OAUTH_TOKEN": true,
		"subscriptionId": false, "clientId": false, "model": false, "sessionId": false,
	} {
		if got := SensitiveKey(key); got != want {
			t.Errorf("SensitiveKey(%q) = %v, want %v", key, got, want)
		}
	}
}

// BenchmarkAccessLine is the cost of one access log line (issue 14).
func BenchmarkAccessLine(b *testing.B) {
	log := NewLogger(LogConfig{JSON: true}, io.Discard, "gateway")
	ctx := b.Context()
	b.ReportAllocs()
	for b.Loop() {
		log.LogAttrs(ctx, slog.LevelInfo, "request", slog.String("request_id", "6b8a4a13-c696-476f-b14e-7b2edc271e55"),
			slog.String("method", "POST"), slog.String("path", "/v1/chat/completions"),
			slog.String("client_ip", "127.0.0.1"), slog.Int("status", 200), slog.Float64("duration_ms", 4.2),
			slog.String("allocation", "subscription"), slog.String("subscription", "sub1"))
	}
}
