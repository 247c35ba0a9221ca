package gateway

import (
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/authpool/authpool/internal/testutil"
)

// TestTrustedProxies (finding 10): X-Forwarded-For is believed only from
// TRUSTED_PROXIES. Without it, two clients claiming different addresses
// from one peer share that peer's rate-limit bucket (a client cannot dodge
// its limit by naming another address); with the peer trusted, the clients
// behind it get a bucket each and the access log names them.
func TestTrustedProxies(t *testing.T) {
	tests := []struct {
		name        string
		trusted     []string
		wantSecond  int
		wantLogged  string
		wantMissing string
	}{
		{name: "none trusted: one bucket", wantSecond: 429, wantLogged: `"client_ip":"127.0.0.1"`, wantMissing: "203.0.113"},
		{name: "loopback trusted: a bucket per client", trusted: []string{"127.0.0.1/32"}, wantSecond: 200,
			wantLogged: `"client_ip":"203.0.113.2"`},
		{name: "a bare IP works too", trusted: []string{"10.0.0.1", "127.0.0.1"}, wantSecond: 200,
			wantLogged: `"client_ip":"203.0.113.2"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			logs := &testutil.Buffer{}
			h := newHarness(t, harnessOpts{opts: Options{RateLimitPerMinute: 1, TrustedProxies: tc.trusted,
				Logger: slog.New(slog.NewJSONHandler(logs, nil))}})
			first := h.do("GET", "/v1/models", nil, "X-Forwarded-For", "203.0.113.1")
			first.Body.Close()
			if first.StatusCode != 200 {
				t.Fatalf("first client = %d, want 200", first.StatusCode)
			}
			second := h.do("GET", "/v1/models", nil, "X-Forwarded-For", "203.0.113.2")
			second.Body.Close()
			if second.StatusCode != tc.wantSecond {
				t.Errorf("second client = %d, want %d", second.StatusCode, tc.wantSecond)
			}
			out := logs.String()
			if !strings.Contains(out, tc.wantLogged) {
				t.Errorf("access log lacks %s:\n%s", tc.wantLogged, out)
			}
			if tc.wantMissing != "" && strings.Contains(out, tc.wantMissing) {
				t.Errorf("access log names an untrusted forwarded address:\n%s", out)
			}
			for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
				if !json.Valid([]byte(line)) {
					t.Errorf("log line is not JSON: %s", line)
				}
			}
		})
	}
}

// TestTrustedProxiesRefusesBadEntries: a bad entry is an error at start-up,
// never a silently empty list.
func TestTrustedProxiesRefusesBadEntries(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	_, err := New(Options{Pool: h.pool, Backends: h.srv.backends, TrustedProxies: []string{"10.0.0.0/33"}})
	if !errors.Is(err, ErrInvalidOptions) || !strings.Contains(err.Error(), "10.0.0.0/33") {
		t.Fatalf("err = %v, want ErrInvalidOptions naming the entry", err)
	}
}

// TestTrustedProxyKeepsDebugLoopbackOnly: behind a proxy on this machine,
// the loopback check of /debug/* (no ADMIN_TOKEN) sees the client the proxy
// names, not the proxy: a remote client does not become loopback.
func TestTrustedProxyKeepsDebugLoopbackOnly(t *testing.T) {
	h := newHarness(t, harnessOpts{opts: Options{TrustedProxies: []string{"127.0.0.1"}}})
	remote := h.do("GET", "/debug/auth-pool", nil, "X-Forwarded-For", "203.0.113.9")
	remote.Body.Close()
	if remote.StatusCode != 403 {
		t.Errorf("remote client through the proxy = %d, want 403", remote.StatusCode)
	}
	local := h.do("GET", "/debug/auth-pool", nil)
	local.Body.Close()
	if local.StatusCode != 200 {
		t.Errorf("loopback client = %d, want 200", local.StatusCode)
	}
}
