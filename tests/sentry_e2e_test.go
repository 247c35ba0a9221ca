package tests

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/authpool/authpool/internal/sentrytest"
	"github.com/authpool/authpool/internal/testutil"
)

// TestSentryReportsBackendFailure (issue 5): with SENTRY_DSN set, a CLI that
// crashes (printing its token on stderr) makes one Sentry event tagged with
// the request and subscription ids; no token or client key leaves the
// gateway.
func TestSentryReportsBackendFailure(t *testing.T) {
	sink := sentrytest.New(t)
	c := startCluster(t, clusterOpts{replicas: 1, modes: map[string]string{"sub1": "crash"},
		env: []string{"SENTRY_DSN=" + sink.DSN(), "SENTRY_ENVIRONMENT=e2e"}})

	resp, body := c.post(0, `{"messages":[{"role":"user","content":"hi"}],"session_id":"sentry-1"}`,
		"X-Request-ID", "req-sentry-1", "Authorization", "Bearer "+clientKey)
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("status = %d (%s), want 502", resp.StatusCode, body)
	}
	var events []map[string]any
	var raw string
	testutil.Poll(10*time.Second, 100*time.Millisecond, func() bool {
		raw, events = sink.Snapshot()
		return len(events) > 0
	})
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
		if strings.Contains(raw, secret) {
			t.Errorf("a Sentry envelope carries the secret %q", secret)
		}
	}
}
