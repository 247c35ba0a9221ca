package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/authpool/authpool/internal/redistest"
)

const adminToken = "e2e-admin-token"

// admin calls /admin/v1 on replica i with the admin token and decodes the
// answer into v (when not nil); it returns the status.
func (c *cluster) admin(i int, method, path, body string, v any) int {
	c.t.Helper()
	return adminCall(c.t, c.replicas[i].url, method, path, body, adminToken, v)
}

func adminCall(t *testing.T, base, method, path, body, token string, v any) int {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if v != nil && resp.StatusCode == 200 {
		if err := json.Unmarshal(data, v); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, data)
		}
	}
	return resp.StatusCode
}

// adminStatus reads every subscription's status through /admin/v1 on replica i.
func (c *cluster) adminStatus(i int) map[string]string {
	c.t.Helper()
	var body struct {
		Data []struct{ ID, Status string } `json:"data"`
	}
	if code := c.admin(i, "GET", "/admin/v1/subscriptions", "", &body); code != 200 {
		c.t.Fatalf("GET /admin/v1/subscriptions on %d: %d", i, code)
	}
	out := map[string]string{}
	for _, s := range body.Data {
		out[s.ID] = s.Status
	}
	return out
}

func (c *cluster) act(i int, sub, action string) {
	c.t.Helper()
	var r struct{ Changed bool }
	if code := c.admin(i, "POST", "/admin/v1/subscriptions/"+sub+"/"+action, "", &r); code != 200 || !r.Changed {
		c.t.Fatalf("%s %s on replica %d: %d changed=%v", action, sub, i, code, r.Changed)
	}
}

// TestAdminActionsAcrossReplicas: each operator action is taken on one
// replica, seen from the other, and changes where the other allocates.
func TestAdminActionsAcrossReplicas(t *testing.T) {
	const idle = 2 * time.Second
	c := startCluster(t, clusterOpts{env: []string{"ADMIN_TOKEN=" + adminToken},
		config: map[string]any{"idleAfterSeconds": int(idle / time.Second), "staleAfterSeconds": 600}})
	ctx := context.Background()
	costs := map[string]string{"sub1": "0.0137", "sub2": "0.0251"}
	for id, cost := range costs {
		if err := os.WriteFile(filepath.Join(c.sub(id).dir, "fake-cost"), []byte(cost), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	turns := map[string]int{}
	turn := func(i int, sid string) string {
		t.Helper()
		c.seedTurn(i, sid, "hello from "+sid, false)
		sub := c.session(sid)["sub"]
		turns[sub]++
		return sub
	}

	// Auth: no token, a wrong one, a client's API key: refused.
	for _, tok := range []string{"", "wrong", clientKey} {
		if code := adminCall(t, c.replicas[0].url, "GET", "/admin/v1/subscriptions", "", tok, nil); code != 403 {
			t.Errorf("token %q: %d, want 403", tok, code)
		}
	}

	// Drain on replica 1: the active session stays, a new one goes elsewhere.
	x := turn(0, "sess-a")
	y := map[string]string{"sub1": "sub2", "sub2": "sub1"}[x]
	c.act(1, x, "drain")
	if st := c.adminStatus(0); st[x] != "draining" {
		t.Fatalf("replica 0 sees %s as %q after a drain on replica 1", x, st[x])
	}
	if got := turn(0, "sess-a"); got != x {
		t.Fatalf("active session left the draining %s for %s", x, got)
	}
	if got := turn(0, "sess-b"); got != y {
		t.Fatalf("new session bound to %s, want %s (not the draining %s)", got, y, x)
	}
	// Once idle, the session moves on its next turn.
	time.Sleep(idle + 300*time.Millisecond)
	if got := turn(1, "sess-a"); got != y {
		t.Fatalf("idle session on the draining %s stayed (now %s)", x, got)
	}
	c.act(0, x, "enable")

	// Disable on replica 1: the next turn, on replica 0, moves.
	c.act(1, y, "disable")
	if st := c.adminStatus(0); st[y] != "disabled" {
		t.Fatalf("replica 0 sees %s as %q after a disable", y, st[y])
	}
	if got := turn(0, "sess-a"); got != x {
		t.Fatalf("session stayed on disabled %s (now %s)", y, got)
	}

	// Reset: x limited (as the provider said) and y still disabled: no
	// subscription takes a new session; a reset on replica 0 and replica 1
	// binds there again.
	if err := c.rdb.HSet(ctx, c.keys.Sub(x), "status", "limited", "statusReason", "usage_limit",
		"until", strconv.FormatInt(time.Now().Add(3*time.Hour).UnixMilli(), 10)).Err(); err != nil {
		t.Fatal(err)
	}
	if resp, body := c.post(1, `{"session_id":"sess-c","messages":[{"role":"user","content":"hi"}]}`,
		"Authorization", "Bearer "+clientKey); resp.StatusCode != 503 {
		t.Fatalf("with %s limited and %s disabled: %d %s", x, y, resp.StatusCode, body)
	}
	c.act(0, x, "reset")
	if st := c.adminStatus(1); st[x] != "available" {
		t.Fatalf("replica 1 sees %s as %q after a reset", x, st[x])
	}
	if got := turn(1, "sess-c"); got != x {
		t.Fatalf("after reset, new session on %q, want %s", got, x)
	}
	c.act(1, y, "enable")

	// Sessions: listed with owner and cost, paged by a numeric cursor.
	var page struct {
		Data []struct {
			ID, Subscription, Owner string
			Requests                int64
			CostUSD                 float64
		} `json:"data"`
		Next string `json:"next"`
	}
	if code := c.admin(0, "GET", "/admin/v1/sessions?subscription="+x, "", &page); code != 200 {
		t.Fatalf("sessions: %d", code)
	}
	listed := map[string]bool{}
	for _, s := range page.Data {
		listed[s.ID] = true
		if s.Subscription != x || s.Owner == "" || s.Requests == 0 {
			t.Errorf("listed session %+v", s)
		}
	}
	if !listed["sess-a"] || !listed["sess-c"] || listed["sess-b"] {
		t.Errorf("sessions on %s: %v", x, listed)
	}
	for _, bad := range []string{"?cursor=abc", "?subscription=a%20b", "?key=%7B"} {
		if code := c.admin(0, "GET", "/admin/v1/sessions"+bad, "", nil); code != 400 {
			t.Errorf("sessions%s: %d, want 400", bad, code)
		}
	}

	// Move (capacity-checked) on replica 1, end on replica 0.
	if code := c.admin(1, "POST", "/admin/v1/sessions/sess-b/move", `{"to":"`+x+`"}`, nil); code != 200 {
		t.Fatalf("move: %d", code)
	}
	if got := c.session("sess-b")["sub"]; got != x {
		t.Fatalf("moved session on %q", got)
	}
	if code := c.admin(1, "POST", "/admin/v1/sessions/sess-b/move", `{"to":"nope"}`, nil); code != 404 {
		t.Errorf("move to an unknown subscription: %d", code)
	}
	if code := c.admin(0, "DELETE", "/admin/v1/sessions/sess-b", "", nil); code != 200 {
		t.Fatalf("end: %d", code)
	}
	if len(c.session("sess-b")) != 0 {
		t.Fatal("ended session still stored")
	}

	// Events: every write is an admin_action naming the actor.
	var evs struct {
		Data []struct {
			Type string          `json:"type"`
			Data json.RawMessage `json:"data"`
		} `json:"data"`
	}
	if code := c.admin(1, "GET", "/admin/v1/events", "", &evs); code != 200 {
		t.Fatalf("events: %d", code)
	}
	actions := 0
	for _, e := range evs.Data {
		if e.Type == "admin_action" {
			actions++
			if !strings.Contains(string(e.Data), `"actor":"admin"`) {
				t.Errorf("admin_action without actor: %s", e.Data)
			}
		}
	}
	if actions != 7 { // drain, enable, disable, reset, enable, move, end
		t.Errorf("admin_action events = %d, want 7", actions)
	}

	// The report equals the settled usage, to the cent.
	assertReport(t, c, turns, costs)
}

// assertReport compares /admin/v1/report with the turns the script ran,
// each at its subscription's fake-cost, and with the usage stream.
func assertReport(t *testing.T, c *cluster, turns map[string]int, costs map[string]string) {
	t.Helper()
	var rep struct {
		Total struct {
			Requests         int64  `json:"requests"`
			APIEquivalentUSD string `json:"apiEquivalentUSD"`
			FallbackUSD      string `json:"fallbackUSD"`
		} `json:"total"`
		Subscriptions []struct {
			ID               string `json:"id"`
			Requests         int64  `json:"requests"`
			APIEquivalentUSD string `json:"apiEquivalentUSD"`
		} `json:"subscriptions"`
		Keys []struct {
			ID               string `json:"id"`
			APIEquivalentUSD string `json:"apiEquivalentUSD"`
		} `json:"keys"`
	}
	if code := c.admin(0, "GET", "/admin/v1/report?window=1d", "", &rep); code != 200 {
		t.Fatalf("report: %d", code)
	}
	cents := func(s string) int64 {
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			t.Fatalf("money %q: %v", s, err)
		}
		return int64(f*100 + 0.5)
	}
	var wantTotal float64
	var n int64
	for sub, k := range turns {
		cost, _ := strconv.ParseFloat(costs[sub], 64)
		want := cost * float64(k)
		wantTotal += want
		n += int64(k)
		found := false
		for _, r := range rep.Subscriptions {
			if r.ID == sub {
				found = true
				if r.Requests != int64(k) || cents(r.APIEquivalentUSD) != int64(want*100+0.5) {
					t.Errorf("%s: report %d requests $%s, want %d turns $%.4f", sub, r.Requests, r.APIEquivalentUSD, k, want)
				}
			}
		}
		if !found {
			t.Errorf("no report row for %s", sub)
		}
	}
	if rep.Total.Requests != n || cents(rep.Total.APIEquivalentUSD) != int64(wantTotal*100+0.5) || cents(rep.Total.FallbackUSD) != 0 {
		t.Errorf("total %+v, want %d requests $%.4f", rep.Total, n, wantTotal)
	}
	// The usage stream itself, summed independently.
	msgs, err := c.rdb.XRange(context.Background(), c.keys.Usage(), "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	var streamSum float64
	for _, m := range msgs {
		f, _ := strconv.ParseFloat(m.Values["cost"].(string), 64)
		streamSum += f
		if m.Values["key"] == "" {
			t.Errorf("usage entry %s without the owner key", m.ID)
		}
	}
	if int64(len(msgs)) != n || cents(fmt.Sprintf("%.6f", streamSum)) != cents(rep.Total.APIEquivalentUSD) {
		t.Errorf("usage stream: %d entries $%.6f; report %d $%s", len(msgs), streamSum, rep.Total.Requests, rep.Total.APIEquivalentUSD)
	}
	if len(rep.Keys) != 1 || cents(rep.Keys[0].APIEquivalentUSD) != cents(rep.Total.APIEquivalentUSD) {
		t.Errorf("per-key rows %+v, want one key with the whole value", rep.Keys)
	}
}

// TestAdminAddrSeparatesTheAdminSurface: with ADMIN_ADDR the public port
// serves the API only, the admin port /metrics and the operator surface.
func TestAdminAddrSeparatesTheAdminSurface(t *testing.T) {
	port, err := redistest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	adminURL := fmt.Sprintf("http://127.0.0.1:%d", port)
	c := startCluster(t, clusterOpts{replicas: 1, subs: 1,
		env: []string{"ADMIN_TOKEN=" + adminToken, "ADMIN_ADDR=127.0.0.1:" + strconv.Itoa(port)}})
	pub := c.replicas[0].url
	for _, path := range []string{"/admin/v1/subscriptions", "/metrics", "/status", "/debug/auth-pool"} {
		if code := adminCall(t, pub, "GET", path, "", adminToken, nil); code != 404 {
			t.Errorf("public port %s: %d, want 404", path, code)
		}
		if code := adminCall(t, adminURL, "GET", path, "", adminToken, nil); code != 200 {
			t.Errorf("admin port %s: %d, want 200", path, code)
		}
	}
	if code := adminCall(t, adminURL, "GET", "/v1/models", "", clientKey, nil); code != 404 {
		t.Errorf("admin port /v1/models: %d, want 404", code)
	}
	c.seedTurn(0, "", "hello", false)
}
