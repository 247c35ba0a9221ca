package tests

import (
	"testing"
)

// TestRequestIDIsNotTheSettlementID (issue 8, finding 3): a client's
// X-Request-ID is correlation only. Five turns sent with one fixed id ran the
// CLI five times and must be counted five times; the server makes the
// settlement id of every turn.
func TestRequestIDIsNotTheSettlementID(t *testing.T) {
	c := startCluster(t, clusterOpts{replicas: 1, subs: 1})
	body := `{"model":"sonnet","session_id":"fixed-id-session","messages":[{"role":"user","content":"hi"}]}`
	for i := 0; i < 5; i++ {
		resp, data := c.post(0, body, "Authorization", "Bearer "+clientKey, "X-Request-ID", "fixed-id")
		if resp.StatusCode != 200 {
			t.Fatalf("turn %d: %d %s", i+1, resp.StatusCode, data)
		}
		if got := resp.Header.Get("X-Request-ID"); got != "fixed-id" {
			t.Errorf("turn %d: X-Request-ID echoed as %q", i+1, got)
		}
	}
	if n := len(c.calls("sub1")); n != 5 {
		t.Fatalf("the CLI ran %d times, want 5", n)
	}
	st := c.debugStatus(0)["sub1"]
	if got := st["requests"].(float64); got != 5 {
		t.Errorf("/debug/auth-pool counts %v requests for 5 turns with one X-Request-ID", got)
	}
	if got, want := st["weeklyUsed"].(float64), 5*0.0123; got < want-1e-9 || got > want+1e-9 {
		t.Errorf("weeklyUsed = %v, want %v", got, want)
	}
	if s := c.session("fixed-id-session"); s["requests"] != "5" {
		t.Errorf("session requests = %q, want 5", s["requests"])
	}
}
