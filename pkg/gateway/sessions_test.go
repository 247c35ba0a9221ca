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

// TestTurnInFlightLease (issue 8, finding 6; issue 14): while the backend
// runs, the session is active in Redis: its client-set score ("active
// until") is its turn's lease, after now; the settle of a turn and the end
// of a failed one move it on to the idle age from the end, and nothing is
// kept per turn.
func TestTurnInFlightLease(t *testing.T) {
	h := newHarness(t, harnessOpts{subs: 1})
	ctx := context.Background()
	clients := h.keys().Clients("sub1")
	var during, nowDuring float64
	h.subs["sub1"].setAnswer(func(n int, _ backend.Target, req backend.Request) (*backend.Result, error) {
		during, _ = h.tg.Client.ZScore(ctx, clients, "long").Result()
		tm, _ := h.tg.Client.Time(ctx).Result()
		nowDuring = float64(tm.UnixMilli())
		time.Sleep(2 * time.Millisecond) // the turn's end is later than its start
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
		if during <= nowDuring {
			t.Errorf("turn %d: not active while the backend ran (active until %.0f, now %.0f)", i+1, during, nowDuring)
		}
		if after, _ := h.tg.Client.ZScore(ctx, clients, "long").Result(); after <= during {
			t.Errorf("turn %d: its end not recorded (active until %.0f, during the turn %.0f)", i+1, after, during)
		}
		fields, _ := h.tg.Client.HKeys(ctx, h.keys().Session("long")).Result()
		for _, f := range fields {
			if strings.HasPrefix(f, "inflight:") || f == "lastActive" {
				t.Errorf("turn %d: session keeps %s", i+1, f)
			}
		}
	}
}

// TestHeartbeatRefreshesLease (issue 14: the heartbeat is a timer now): a
// turn that outlasts a third of the lease has its lease pushed forward
// while it runs. The lease is the session's client-set score ("active
// until"), so the lease here is longer than the idle age, or the turn's
// start would already hold a later time than any heartbeat.
func TestHeartbeatRefreshesLease(t *testing.T) {
	h := newHarness(t, harnessOpts{subs: 1, idleAfter: 1, poolOpts: pool.Options{TurnLease: 1200 * time.Millisecond}})
	ctx := context.Background()
	clients := h.keys().Clients("sub1")
	var first, later float64
	h.subs["sub1"].setAnswer(func(int, backend.Target, backend.Request) (*backend.Result, error) {
		first, _ = h.tg.Client.ZScore(ctx, clients, "beating").Result()
		time.Sleep(900 * time.Millisecond)
		later, _ = h.tg.Client.ZScore(ctx, clients, "beating").Result()
		return &backend.Result{Text: "ok", CLISessionID: "cli-1", StopReason: "end_turn", CostUSD: 0.01}, nil
	})
	if r, _, ae := h.chat(map[string]any{"session_id": "beating", "messages": msgs(user("hi"))}); r.StatusCode != 200 {
		t.Fatalf("turn: %d %+v", r.StatusCode, ae)
	}
	if first == 0 || later <= first {
		t.Errorf("lease until %v at the start, %v 900 ms later: not refreshed", first, later)
	}
	h.settled()
	if end, _ := h.tg.Client.ZScore(ctx, clients, "beating").Result(); end < later {
		t.Errorf("the turn's end moved its lease back: %v, was %v", end, later)
	}
}
