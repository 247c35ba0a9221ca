package tests

import (
	"io"
	"net/http"
	"strings"
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

// TestSessionsBelongToTheirKey (issue 8, finding 4): a session belongs to
// the API key that created it. For another key it does not exist: a turn and
// a DELETE both answer 404 session_not_found, and the owner carries on.
func TestSessionsBelongToTheirKey(t *testing.T) {
	c := startCluster(t, clusterOpts{replicas: 2})
	const sid = "owned-by-a"
	turn := `{"model":"sonnet","session_id":"` + sid + `","messages":[{"role":"user","content":"hi"}]}`
	if resp, data := c.post(0, turn, "Authorization", "Bearer "+clientKey); resp.StatusCode != 200 {
		t.Fatalf("key A, turn 1: %d %s", resp.StatusCode, data)
	}
	owner := c.session(sid)["owner"]
	if owner == "" || strings.Contains(owner, clientKey) {
		t.Errorf("session owner = %q: want a key id, never the key", owner)
	}
	before := len(c.calls(c.session(sid)["sub"]))

	// Key B, on either replica: no such session, for a turn and for DELETE.
	for i := range c.replicas {
		resp, data := c.post(i, turn, "Authorization", "Bearer "+otherKey)
		if resp.StatusCode != 404 || !strings.Contains(string(data), `"session_not_found"`) {
			t.Errorf("replica %d, key B's turn on key A's session: %d %s", i, resp.StatusCode, data)
		}
		resp, data = c.deleteSession(i, sid, otherKey)
		if resp.StatusCode != 404 || !strings.Contains(string(data), `"session_not_found"`) {
			t.Errorf("replica %d, key B's DELETE of key A's session: %d %s", i, resp.StatusCode, data)
		}
	}
	s := c.session(sid)
	if s["sub"] == "" || s["requests"] != "1" {
		t.Fatalf("key B changed key A's session: %v", s)
	}
	if got := len(c.calls(s["sub"])); got != before {
		t.Errorf("key B's turn ran the CLI (%d calls, want %d)", got, before)
	}

	// Key A still continues it, on the other replica, and may end it.
	if resp, data := c.post(1, turn, "Authorization", "Bearer "+clientKey); resp.StatusCode != 200 {
		t.Fatalf("key A, turn 2: %d %s", resp.StatusCode, data)
	}
	if got := c.session(sid)["requests"]; got != "2" {
		t.Errorf("session requests after key A's second turn = %q, want 2", got)
	}
	if resp, data := c.deleteSession(0, sid, clientKey); resp.StatusCode != 200 {
		t.Fatalf("key A's DELETE: %d %s", resp.StatusCode, data)
	}
	if n := len(c.session(sid)); n != 0 {
		t.Errorf("session still there after its owner's DELETE: %v", c.session(sid))
	}
	// The access log names the route, never the session id.
	for i, r := range c.replicas {
		if strings.Contains(r.logs.String(), sid) {
			t.Errorf("replica %d logged the session id", i)
		}
	}
}

// deleteSession sends DELETE /v1/sessions/<sid> with key to replica i.
func (c *cluster) deleteSession(i int, sid, key string) (*http.Response, []byte) {
	c.t.Helper()
	req, err := http.NewRequest("DELETE", c.replicas[i].url+"/v1/sessions/"+sid, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp, data
}
