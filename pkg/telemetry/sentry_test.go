package telemetry

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/authpool/authpool/internal/sentrytest"
)

func setupSentry(t *testing.T, c SentryConfig) func(time.Duration) bool {
	t.Helper()
	flush, _, err := SetupSentry(c, "authpool@test")
	if err != nil {
		t.Fatal(err)
	}
	// Leave the process hub silent for the tests that follow.
	t.Cleanup(func() { _, _, _ = SetupSentry(SentryConfig{}, "") })
	return flush
}

func failedRequest() *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/v1/chat/completions?api_key="+clientKey, strings.NewReader(`{"messages":[]}`))
	r.Header.Set("Authorization", "Bearer "+clientKey)
	r.Header.Set("X-Api-Key", clientKey)
	r.Header.Set("Cookie", "session="+adminToken)
	r.Header.Set("X-Request-ID", "req-42")
	return r
}

func TestCaptureErrorSendsTagsAndNoCredentials(t *testing.T) {
	sink := sentrytest.New(t)
	flush := setupSentry(t, SentryConfig{DSN: sink.DSN(), Environment: "production"})

	ctx := WithRequest(context.Background(), failedRequest())
	CaptureError(ctx, errors.New("backend: claude exited 1 (key "+oauthToken+")"),
		map[string]string{TagRequestID: "req-42", TagSubscriptionID: "sub1"})
	if !flush(5 * time.Second) {
		t.Fatal("flush timed out")
	}

	raw, events := sink.Snapshot()
	if len(events) != 1 {
		t.Fatalf("%d events received, want 1:\n%s", len(events), raw)
	}
	ev := events[0]
	tags, _ := ev["tags"].(map[string]any)
	if tags[TagRequestID] != "req-42" || tags[TagSubscriptionID] != "sub1" {
		t.Errorf("tags %v, want request_id=req-42 subscription_id=sub1", tags)
	}
	if ev["release"] != "authpool@test" || ev["environment"] != "production" {
		t.Errorf("release %v environment %v", ev["release"], ev["environment"])
	}
	if !strings.Contains(raw, "claude exited 1") {
		t.Errorf("the error message is missing:\n%s", raw)
	}
	req, _ := ev["request"].(map[string]any)
	headers, _ := req["headers"].(map[string]any)
	if url, _ := req["url"].(string); !strings.HasSuffix(url, "/v1/chat/completions") || headers["X-Request-Id"] != "req-42" {
		t.Errorf("the failed request is not attached with its harmless headers: %v", ev["request"])
	}
	if headers["Authorization"] != Redacted && headers["Authorization"] != nil {
		t.Errorf("Authorization header %v", headers["Authorization"])
	}
	for _, secret := range []string{clientKey, adminToken, oauthToken, `{"messages":[]}`} {
		if strings.Contains(raw, secret) {
			t.Errorf("payload carries %q:\n%s", secret, raw)
		}
	}
}

func TestCapturePanicIsReported(t *testing.T) {
	sink := sentrytest.New(t)
	flush := setupSentry(t, SentryConfig{DSN: sink.DSN()})

	func() {
		defer func() {
			CapturePanic(context.Background(), recover(), map[string]string{TagRequestID: "req-7"})
		}()
		panic("rebalance loop: index out of range")
	}()
	if !flush(5 * time.Second) {
		t.Fatal("flush timed out")
	}
	raw, events := sink.Snapshot()
	if len(events) != 1 || !strings.Contains(raw, "index out of range") {
		t.Fatalf("want one event with the panic value:\n%s", raw)
	}
	if tags, _ := events[0]["tags"].(map[string]any); tags[TagRequestID] != "req-7" {
		t.Errorf("tags %v", tags)
	}
}

func TestWithoutDSNNothingIsSent(t *testing.T) {
	sink := sentrytest.New(t)
	// Enabled first, then configured without SENTRY_DSN: silence wins.
	setupSentry(t, SentryConfig{DSN: sink.DSN()})
	flush, enabled, err := SetupSentry(SentryConfig{}, "authpool@test")
	if err != nil || enabled {
		t.Fatalf("SetupSentry without DSN: enabled %v, err %v", enabled, err)
	}
	CaptureError(context.Background(), errors.New("lost"), map[string]string{TagRequestID: "r"})
	CaptureError(WithRequest(context.Background(), failedRequest()), errors.New("lost too"), nil)
	CapturePanic(context.Background(), "boom", nil)
	flush(time.Second)
	time.Sleep(200 * time.Millisecond) // an asynchronous send would land by now
	if raw, _ := sink.Snapshot(); raw != "" {
		t.Fatalf("sent without SENTRY_DSN:\n%s", raw)
	}
}

func TestBadDSNIsRejectedWithoutEchoingIt(t *testing.T) {
	_, enabled, err := SetupSentry(SentryConfig{DSN: "not a dsn " + sentryKey}, "")
	if !errors.Is(err, ErrSentryConfig) || enabled {
		t.Fatalf("err %v enabled %v, want ErrSentryConfig", err, enabled)
	}
	if strings.Contains(err.Error(), sentryKey) {
		t.Errorf("error echoes the DSN: %v", err)
	}
}
