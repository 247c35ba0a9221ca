package gateway

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/authpool/authpool/internal/testutil"
	"github.com/authpool/authpool/pkg/backend"
	"github.com/authpool/authpool/pkg/pool"
)

// TestAccessLogHoldsNoSessionID (issue 8, finding 4): the access log names
// the route pattern, as the traces and metrics do, never the raw path with
// its session id.
func TestAccessLogHoldsNoSessionID(t *testing.T) {
	var logs testutil.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	h := newHarness(t, harnessOpts{opts: Options{Logger: log}})
	const sid = "secret-session-4711"
	if r, _, ae := h.chat(map[string]any{"session_id": sid, "messages": msgs(user("hi"))}); r.StatusCode != 200 {
		t.Fatalf("turn: %d %+v", r.StatusCode, ae)
	}
	for _, path := range []string{"/v1/sessions/" + sid, "/v1/sessions/" + sid + "-unknown"} {
		r := h.do("DELETE", path, nil)
		_ = r.Body.Close()
	}
	r := h.do("GET", "/v1/sessions/"+sid+"/nothing-here", nil) // no route: not its path either
	_ = r.Body.Close()
	out := logs.String()
	if strings.Contains(out, sid) {
		t.Errorf("the log holds the session id:\n%s", out)
	}
	if !strings.Contains(out, `"path":"/v1/sessions/:id"`) {
		t.Errorf("the access log does not name the route pattern:\n%s", out)
	}
}

// TestSessionOwnedByItsKey (issue 8, finding 4): another key finds no such
// session, for a turn and for DELETE; the owner's key carries on.
func TestSessionOwnedByItsKey(t *testing.T) {
	h := newHarness(t, harnessOpts{opts: Options{APIKeys: []string{"key-a", "key-b"}}})
	a, b := []string{"Authorization", "Bearer key-a"}, []string{"Authorization", "Bearer key-b"}
	body := map[string]any{"session_id": "mine", "messages": msgs(user("hi"))}
	if r, _, ae := h.chat(body, a...); r.StatusCode != 200 {
		t.Fatalf("key A: %d %+v", r.StatusCode, ae)
	}
	calls := len(h.callsSoFar())
	if r, _, ae := h.chat(body, b...); r.StatusCode != 404 || ae.Error.Code != "session_not_found" {
		t.Errorf("key B's turn: %d %+v", r.StatusCode, ae)
	}
	if r := h.do("DELETE", "/v1/sessions/mine", nil, b...); r.StatusCode != 404 {
		t.Errorf("key B's DELETE: %d", r.StatusCode)
	}
	if n := len(h.callsSoFar()); n != calls {
		t.Errorf("key B's turn ran a backend")
	}
	if r, _, ae := h.chat(body, a...); r.StatusCode != 200 {
		t.Errorf("key A's second turn: %d %+v", r.StatusCode, ae)
	}
	if r := h.do("DELETE", "/v1/sessions/mine", nil, a...); r.StatusCode != 200 {
		t.Errorf("key A's DELETE: %d", r.StatusCode)
	}
}

// TestTurnInFlightLease (issue 8, finding 6): while the backend runs, the
// session has a turn in flight in Redis (refreshed by the heartbeat); the
// settle of a turn and the end of a failed one clear it.
func TestTurnInFlightLease(t *testing.T) {
	h := newHarness(t, harnessOpts{subs: 1})
	ctx := context.Background()
	inflight := h.keys().Inflight()
	var during float64
	h.subs["sub1"].setAnswer(func(n int, _ backend.Target, req backend.Request) (*backend.Result, error) {
		during, _ = h.tg.Client.ZScore(ctx, inflight, "long").Result()
		if n == 1 {
			return nil, backend.ErrBackend
		}
		return &backend.Result{Text: "ok", CLISessionID: "cli-1", StopReason: "end_turn", CostUSD: 0.01}, nil
	})
	for i, want := range []int{200, 502} {
		during = 0
		r, _, ae := h.chat(map[string]any{"session_id": "long", "messages": msgs(user("hi"))})
		if r.StatusCode != want {
			t.Fatalf("turn %d: %d %+v", i+1, r.StatusCode, ae)
		}
		if during == 0 {
			t.Errorf("turn %d: no turn in flight while the backend ran", i+1)
		}
		if n, _ := h.tg.Client.ZCard(ctx, inflight).Result(); n != 0 {
			t.Errorf("turn %d: still in flight after it ended", i+1)
		}
		fields, _ := h.tg.Client.HKeys(ctx, h.keys().Session("long")).Result()
		for _, f := range fields {
			if strings.HasPrefix(f, "inflight:") {
				t.Errorf("turn %d: session keeps %s", i+1, f)
			}
		}
	}
}

// TestHeartbeatRefreshesLease (issue 14: the heartbeat is a timer now): a
// turn that outlasts a third of the lease has its lease pushed forward
// while it runs, and cleared when it ends.
func TestHeartbeatRefreshesLease(t *testing.T) {
	h := newHarness(t, harnessOpts{subs: 1, poolOpts: pool.Options{TurnLease: 300 * time.Millisecond}})
	ctx := context.Background()
	inflight := h.keys().Inflight()
	var first, later float64
	h.subs["sub1"].setAnswer(func(int, backend.Target, backend.Request) (*backend.Result, error) {
		first, _ = h.tg.Client.ZScore(ctx, inflight, "beating").Result()
		time.Sleep(450 * time.Millisecond)
		later, _ = h.tg.Client.ZScore(ctx, inflight, "beating").Result()
		return &backend.Result{Text: "ok", CLISessionID: "cli-1", StopReason: "end_turn", CostUSD: 0.01}, nil
	})
	if r, _, ae := h.chat(map[string]any{"session_id": "beating", "messages": msgs(user("hi"))}); r.StatusCode != 200 {
		t.Fatalf("turn: %d %+v", r.StatusCode, ae)
	}
	if first == 0 || later <= first {
		t.Errorf("lease %v at the start, %v 450 ms later: not refreshed", first, later)
	}
	if n, _ := h.tg.Client.ZCard(ctx, inflight).Result(); n != 0 {
		t.Errorf("still in flight after the turn ended")
	}
}
