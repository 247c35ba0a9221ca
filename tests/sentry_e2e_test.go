package tests

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// sentrySink is a local Sentry endpoint: it keeps every envelope the SDK
// posts, raw, and the events in them.
type sentrySink struct {
	mu     sync.Mutex
	raw    []string
	events []map[string]any
}

func (s *sentrySink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.raw = append(s.raw, string(b))
	lines := bytes.Split(b, []byte("\n")) // header, then item header / payload pairs
	for i := 1; i+1 < len(lines); i += 2 {
		var ih struct {
			Type string `json:"type"`
		}
		var ev map[string]any
		if json.Unmarshal(lines[i], &ih) == nil && ih.Type == "event" && json.Unmarshal(lines[i+1], &ev) == nil {
			s.events = append(s.events, ev)
		}
	}
	_, _ = w.Write([]byte(`{}`))
}

func (s *sentrySink) snapshot() ([]string, []map[string]any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.raw...), append([]map[string]any(nil), s.events...)
}

// TestSentryReportsBackendFailure (issue 5): with SENTRY_DSN set, a CLI that
// crashes (printing its token on stderr) makes one Sentry event tagged with
// the request and subscription ids; no token or client key leaves the
// gateway.
func TestSentryReportsBackendFailure(t *testing.T) {
	sink := &sentrySink{}
	srv := httptest.NewServer(sink)
	t.Cleanup(srv.Close)
	dsn := "http://publickey@" + strings.TrimPrefix(srv.URL, "http://") + "/42"
	c := startCluster(t, clusterOpts{replicas: 1, modes: map[string]string{"sub1": "crash"},
		env: []string{"SENTRY_DSN=" + dsn, "SENTRY_ENVIRONMENT=e2e"}})

	resp, body := c.post(0, `{"messages":[{"role":"user","content":"hi"}],"session_id":"sentry-1"}`,
		"X-Request-ID", "req-sentry-1", "Authorization", "Bearer "+clientKey)
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("status = %d (%s), want 502", resp.StatusCode, body)
	}
	var events []map[string]any
	var raw []string
	deadline := time.Now().Add(10 * time.Second)
	for len(events) == 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		raw, events = sink.snapshot()
	}
	if len(events) != 1 {
		t.Fatalf("sentry events = %d, want 1", len(events))
	}
	tags, _ := events[0]["tags"].(map[string]any)
	if tags["request_id"] != "req-sentry-1" || tags["subscription_id"] != "sub1" {
		t.Errorf("event tags = %v, want request_id req-sentry-1 and subscription_id sub1", tags)
	}
	if events[0]["environment"] != "e2e" {
		t.Errorf("environment = %v", events[0]["environment"])
	}
	for _, secret := range []string{tokenValue, clientKey} {
		for _, r := range raw {
			if strings.Contains(r, secret) {
				t.Errorf("a Sentry envelope carries the secret %q", secret)
			}
		}
	}
}
