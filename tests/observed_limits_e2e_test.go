package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// setRateLimits makes the fake CLI of s print these rate_limit_event infos
// after its init line, as the real CLI does on every turn.
func (c *cluster) setRateLimits(s sub, infos ...map[string]any) {
	c.t.Helper()
	var b strings.Builder
	for _, info := range infos {
		line, err := json.Marshal(map[string]any{"type": "rate_limit_event", "rate_limit_info": info})
		if err != nil {
			c.t.Fatal(err)
		}
		b.Write(line)
		b.WriteByte('\n')
	}
	if err := os.WriteFile(filepath.Join(s.dir, "fake-rate-limits.jsonl"), []byte(b.String()), 0o600); err != nil {
		c.t.Fatal(err)
	}
}

// window is one window of a subscription in /debug/auth-pool.
func window(st map[string]any, name string) map[string]any {
	ws, _ := st["windows"].(map[string]any)
	w, _ := ws[name].(map[string]any)
	return w
}

// A rejected five_hour reading with a reset an hour away, on a turn whose
// error text names another time (two hours): the request is served by
// another subscription, the limited one shows the reading's reset, one
// limit_reached event names the window, no new session goes there, and
// once the window has reset it is recovered.
func TestObservedRejectionServedElsewhere(t *testing.T) {
	c := startCluster(t, clusterOpts{modes: map[string]string{"sub1": "limit-epoch 7200"}})
	reset := time.Now().Add(time.Hour).Truncate(time.Second)
	c.setRateLimits(c.sub("sub1"), map[string]any{"status": "rejected", "resetsAt": reset.Unix(),
		"rateLimitType": "five_hour", "unifiedWindows": map[string]any{
			"five_hour": map[string]any{"utilization": 1, "resetsAt": reset.Unix()},
			"seven_day": map[string]any{"utilization": 0.4, "resetsAt": time.Now().Add(72 * time.Hour).Unix()}}})

	cc, hr, err := ask(t, c.replicas[0].client(clientKey), "first", "hello")
	if err != nil {
		t.Fatalf("request: %v", err)
	}
	if cc.Choices[0].Message.Content != "echo: hello" || hr.Header.Get("X-AuthPool-Allocation") != "subscription" {
		t.Errorf("answer %q via %q", cc.Choices[0].Message.Content, hr.Header.Get("X-AuthPool-Allocation"))
	}
	if n := len(c.calls("sub1")); n != 1 {
		t.Fatalf("sub1 calls = %d, want the one that was rejected", n)
	}
	if got := c.session("first")["sub"]; got != "sub2" {
		t.Errorf("session on %q, want sub2", got)
	}
	st := c.debugStatus(1)["sub1"]
	until, err := time.Parse(time.RFC3339Nano, fmt.Sprint(st["until"]))
	if st["status"] != "limited" || err != nil || !until.Equal(reset) {
		t.Fatalf("sub1 = %v until %v, want limited until the reading's reset %v (not the text's two hours)",
			st["status"], st["until"], reset)
	}
	w5 := window(st, "five_hour")
	if w5["status"] != "rejected" || w5["utilization"] != 1.0 || w5["source"] != "observed" ||
		w5["reset"] != reset.UTC().Format(time.RFC3339) {
		t.Errorf("five_hour window = %v", w5)
	}
	if w7 := window(st, "seven_day"); w7["utilization"] != 0.4 || w7["source"] != "observed" {
		t.Errorf("seven_day window = %v", w7)
	}
	if age, ok := w5["ageSeconds"].(float64); !ok || age < 0 || age > 60 {
		t.Errorf("five_hour age = %v", w5["ageSeconds"])
	}
	ev := c.events("limit_reached")
	if len(ev) != 1 || ev[0]["subscriptionId"] != "sub1" ||
		!strings.Contains(fmt.Sprint(ev[0]["message"]), "five_hour usage limit; resets at "+reset.UTC().Format(time.RFC3339)) {
		t.Fatalf("limit_reached events = %v, want one naming five_hour and its reset", ev)
	}
	for i := 0; i < 4; i++ {
		if _, _, err := ask(t, c.replicas[i%2].client(clientKey), fmt.Sprintf("later-%d", i), "hi"); err != nil {
			t.Fatalf("later request %d: %v", i, err)
		}
	}
	if n := len(c.calls("sub1")); n != 1 {
		t.Errorf("sub1 got %d more calls while limited", n-1)
	}

	// An hour passes. The gateway reads Redis' clock, which a test cannot
	// move on a real redis-server, so the stored times move back instead:
	// the limit's until and the window's reset are now in the past, and so
	// is the time at which the allocation ranking looks at sub1 again.
	ctx := context.Background()
	past := time.Now().Add(-time.Second).UnixMilli()
	if err := c.rdb.HSet(ctx, c.keys.Sub("sub1"), "until", past, "w:five_hour:reset", past).Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.rdb.ZAdd(ctx, c.keys.RankAt(), redis.Z{Score: float64(past), Member: "sub1"}).Err(); err != nil {
		t.Fatal(err)
	}
	c.setMode(c.sub("sub1"), "ok")
	c.setRateLimits(c.sub("sub1"), map[string]any{"status": "allowed", "rateLimitType": "five_hour",
		"utilization": 0.01, "resetsAt": time.Now().Add(5 * time.Hour).Unix()})
	if _, _, err := ask(t, c.replicas[0].client(clientKey), "after-reset", "hi"); err != nil {
		t.Fatalf("after the reset: %v", err)
	}
	if got := c.session("after-reset")["sub"]; got != "sub1" {
		t.Errorf("new session after the reset on %q, want sub1 (its window is fresh)", got)
	}
	if ev := c.events("recovered"); len(ev) != 1 || ev[0]["subscriptionId"] != "sub1" {
		t.Errorf("recovered events = %v, want one for sub1", ev)
	}
	st = c.debugStatus(0)["sub1"]
	if w5 := window(st, "five_hour"); st["status"] != "available" || w5["utilization"] != 0.01 || w5["status"] != "allowed" {
		t.Errorf("after the reset sub1 = %v, five_hour %v", st["status"], w5)
	}
}

// An allowed_warning reading with seven_day utilization 0.9 makes its
// subscription approaching; new sessions go to the others first.
func TestObservedWarningSendsNewSessionsElsewhere(t *testing.T) {
	c := startCluster(t, clusterOpts{})
	c.setRateLimits(c.sub("sub1"), map[string]any{"status": "allowed_warning", "rateLimitType": "seven_day",
		"utilization": 0.9, "resetsAt": time.Now().Add(48 * time.Hour).Unix()})
	if _, _, err := ask(t, c.replicas[0].client(clientKey), "first", "hello"); err != nil {
		t.Fatal(err)
	}
	if got := c.session("first")["sub"]; got != "sub1" {
		t.Fatalf("first session on %q, want sub1 (a fresh pool's first)", got)
	}
	st := c.debugStatus(1)["sub1"]
	w7 := window(st, "seven_day")
	if st["status"] != "approaching" || w7["utilization"] != 0.9 || w7["status"] != "allowed_warning" ||
		st["weeklySource"] != "observed" || math.Abs(st["weeklyPercent"].(float64)-90) > 1e-9 {
		t.Fatalf("sub1 = %v (%v %v%%), seven_day %v; want approaching at the observed 90%%", st["status"],
			st["weeklySource"], st["weeklyPercent"], w7)
	}
	for i := 0; i < 4; i++ {
		sid := fmt.Sprintf("new-%d", i)
		if _, _, err := ask(t, c.replicas[i%2].client(clientKey), sid, "hi"); err != nil {
			t.Fatal(err)
		}
		if got := c.session(sid)["sub"]; got != "sub2" {
			t.Errorf("%s on %q, want sub2 first", sid, got)
		}
	}
}

// A five_hour utilization of 0.95 (over blockAdmissionThreshold 0.9): no
// new session binds there, and the session already there continues on it.
func TestObservedFiveHourPacing(t *testing.T) {
	c := startCluster(t, clusterOpts{})
	c.setRateLimits(c.sub("sub1"), map[string]any{"status": "allowed", "rateLimitType": "five_hour",
		"resetsAt": time.Now().Add(2 * time.Hour).Unix(), "unifiedWindows": map[string]any{
			"five_hour": map[string]any{"utilization": 0.95, "resetsAt": time.Now().Add(2 * time.Hour).Unix()},
			"seven_day": map[string]any{"utilization": 0.2, "resetsAt": time.Now().Add(96 * time.Hour).Unix()}}})
	if _, _, err := ask(t, c.replicas[0].client(clientKey), "stay", "one"); err != nil {
		t.Fatal(err)
	}
	if got := c.session("stay")["sub"]; got != "sub1" {
		t.Fatalf("first session on %q, want sub1", got)
	}
	for i := 0; i < 3; i++ {
		sid := fmt.Sprintf("new-%d", i)
		if _, _, err := ask(t, c.replicas[i%2].client(clientKey), sid, "hi"); err != nil {
			t.Fatal(err)
		}
		if got := c.session(sid)["sub"]; got != "sub2" {
			t.Errorf("%s on %q, want sub2: sub1's 5-hour window is at 95%%", sid, got)
		}
	}
	before := len(c.calls("sub1"))
	cc, _, err := ask(t, c.replicas[1].client(clientKey), "stay", "two")
	if err != nil {
		t.Fatal(err)
	}
	if got := c.session("stay")["sub"]; got != "sub1" || len(c.calls("sub1")) != before+1 ||
		cc.Choices[0].Message.Content != "echo: two" {
		t.Errorf("the bound session moved to %q (sub1 calls %d → %d)", got, before, len(c.calls("sub1")))
	}
	if w5 := window(c.debugStatus(0)["sub1"], "five_hour"); w5["utilization"] != 0.95 {
		t.Errorf("five_hour window = %v", w5)
	}
}

// A login that is gone: each refusal, on either replica, is served by the
// other subscription and cools the refused one down for 5, 10, then 20
// minutes (Redis' state), with one auth_failed event; its first successful
// turn says recovered.
func TestAuthFailuresAcrossReplicas(t *testing.T) {
	c := startCluster(t, clusterOpts{modes: map[string]string{"sub1": "auth"}})
	ctx := context.Background()
	key := c.keys.Sub("sub1")
	for i, want := range []time.Duration{5 * time.Minute, 10 * time.Minute, 20 * time.Minute} {
		before := time.Now()
		sid := fmt.Sprintf("try-%d", i)
		cc, _, err := ask(t, c.replicas[i%2].client(clientKey), sid, "hello")
		if err != nil || cc.Choices[0].Message.Content != "echo: hello" {
			t.Fatalf("request %d: %v", i, err)
		}
		if n := len(c.calls("sub1")); n != i+1 {
			t.Fatalf("sub1 calls = %d, want %d: each try after a cooldown runs there first", n, i+1)
		}
		h := c.rdb.HGetAll(ctx, key).Val()
		var ms int64
		fmt.Sscan(h["until"], &ms)
		got := time.UnixMilli(ms).Sub(before)
		if h["status"] != "cooldown" || h["statusReason"] != "auth" || got < want-3*time.Second || got > want+3*time.Second {
			t.Fatalf("refusal %d: %s (%s) for %v, want cooldown (auth) for %v", i+1, h["status"], h["statusReason"], got, want)
		}
		// The cooldown ends (its until moved into the past: a real
		// redis-server's clock cannot be moved).
		c.rdb.HSet(ctx, key, "until", time.Now().Add(-time.Second).UnixMilli())
	}
	ev := c.events("auth_failed")
	if len(ev) != 1 || ev[0]["severity"] != "critical" || !strings.Contains(fmt.Sprint(ev[0]["message"]), "setup-token") {
		t.Fatalf("auth_failed events = %v, want one, critical, saying what to do", ev)
	}
	if ev := c.events("recovered"); len(ev) != 0 {
		t.Fatalf("recovered before any success: %v", ev)
	}
	c.setMode(c.sub("sub1"), "ok")
	if _, _, err := ask(t, c.replicas[1].client(clientKey), "works", "hello"); err != nil {
		t.Fatal(err)
	}
	if got := c.session("works")["sub"]; got != "sub1" {
		t.Fatalf("session on %q, want sub1", got)
	}
	if ev := c.events("recovered"); len(ev) != 1 || ev[0]["subscriptionId"] != "sub1" {
		t.Errorf("recovered events = %v, want one for sub1", ev)
	}
	if h := c.rdb.HGetAll(ctx, key).Val(); h["authFailures"] != "" || h["status"] != "available" {
		t.Errorf("after a success: %v", h)
	}
}
