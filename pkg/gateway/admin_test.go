package gateway

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/authpool/authpool/internal/testutil"
)

func TestDebugAuthPool(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	if r, _, _ := h.chat(map[string]any{"session_id": "s", "messages": msgs(user("x"))}); r.StatusCode != 200 {
		t.Fatal(r.StatusCode)
	}
	r := h.do("GET", "/debug/auth-pool", nil)
	var body struct {
		Status []map[string]any `json:"status"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || r.StatusCode != 200 {
		t.Fatalf("%d %v", r.StatusCode, err)
	}
	if len(body.Status) != 2 {
		t.Fatalf("status = %v", body.Status)
	}
	// The seeds' fields, as numbers where the seeds have numbers.
	clients := 0.0
	for _, st := range body.Status {
		for _, k := range []string{"weeklyUsed", "weeklyBudget", "currentBlockCost", "assignedClients", "healthScore", "burnRate"} {
			if _, ok := st[k].(float64); !ok {
				t.Errorf("%s.%s = %#v, want a number", st["id"], k, st[k])
			}
		}
		for _, k := range []string{"id", "email", "status"} {
			if _, ok := st[k].(string); !ok {
				t.Errorf("%s.%s = %#v, want a string", st["id"], k, st[k])
			}
		}
		clients += st["assignedClients"].(float64)
	}
	if clients != 1 {
		t.Errorf("assigned clients = %v, want 1", clients)
	}
}

func TestDebugMemory(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	var m map[string]any
	r := h.do("GET", "/debug/memory", nil)
	if err := json.NewDecoder(r.Body).Decode(&m); err != nil || r.StatusCode != 200 {
		t.Fatalf("%d %v", r.StatusCode, err)
	}
	if v, ok := m["heapAllocMB"].(float64); !ok || v <= 0 {
		t.Errorf("memory = %v", m)
	}
}

func TestModels(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	var list ModelList
	r := h.do("GET", "/v1/models", nil)
	if err := json.NewDecoder(r.Body).Decode(&list); err != nil || r.StatusCode != 200 {
		t.Fatalf("%d %v", r.StatusCode, err)
	}
	ids := map[string]bool{}
	for _, m := range list.Data {
		ids[m.ID] = true
	}
	if list.Object != "list" || list.Data[0].ID != "opus" || !ids["haiku"] || !ids["claude-sonnet-4-5"] {
		t.Errorf("models = %+v", list)
	}
	// The Anthropic SDKs send anthropic-version: their list shape.
	r = h.do("GET", "/v1/models", nil, "anthropic-version", "2023-06-01")
	var al struct {
		Data    []struct{ ID, Type string } `json:"data"`
		HasMore bool                        `json:"has_more"`
	}
	if err := json.NewDecoder(r.Body).Decode(&al); err != nil || len(al.Data) != len(list.Data) || al.Data[0].Type != "model" {
		t.Errorf("anthropic models = %+v %v", al, err)
	}
}

func TestDeleteSession(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	if r, _, _ := h.chat(map[string]any{"session_id": "done-soon", "messages": msgs(user("x"))}); r.StatusCode != 200 {
		t.Fatal(r.StatusCode)
	}
	r := h.do("DELETE", "/v1/sessions/done-soon", nil)
	var body map[string]any
	_ = json.NewDecoder(r.Body).Decode(&body)
	if r.StatusCode != 200 || body["deleted"] != true || body["subscription"] == "" {
		t.Errorf("%d %v", r.StatusCode, body)
	}
	if _, err := h.pool.Session(context.Background(), "done-soon"); err == nil {
		t.Error("session still there")
	}
	for _, st := range h.snapshot() {
		if st.Clients != 0 {
			t.Errorf("%s keeps %d clients", st.ID, st.Clients)
		}
	}
	for path, want := range map[string]int{"/v1/sessions/done-soon": 404, "/v1/sessions/bad%20id": 400} {
		r := h.do("DELETE", path, nil)
		var ae apiError
		_ = json.NewDecoder(r.Body).Decode(&ae)
		if r.StatusCode != want || ae.Error.Type == "" {
			t.Errorf("DELETE %s = %d %+v, want %d", path, r.StatusCode, ae, want)
		}
	}
}

func TestReady(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	if r := h.do("GET", "/ready", nil); r.StatusCode != 200 {
		t.Errorf("/ready = %d", r.StatusCode)
	}
	// The probe only reads: a Redis that lost the scripts, or the scripts
	// and the pool, is reported and left as it is (the healer, not started
	// here, and the next allocation write them back).
	keys := h.tg.Mini.Keys()
	h.tg.Client.ScriptFlush(context.Background())
	if r := h.do("GET", "/ready", nil); r.StatusCode != 503 || r.Header.Get("Retry-After") == "" {
		t.Errorf("/ready after a script flush = %d, want 503 with Retry-After", r.StatusCode)
	}
	if after := h.tg.Mini.Keys(); len(after) != len(keys) {
		t.Errorf("/ready changed the keys: %v -> %v", keys, after)
	}
	h.tg.Mini.FlushAll()
	h.tg.Client.ScriptFlush(context.Background())
	if r := h.do("GET", "/ready", nil); r.StatusCode != 503 {
		t.Errorf("/ready after a flush = %d, want 503", r.StatusCode)
	}
	if n := len(h.tg.Mini.Keys()); n != 0 {
		t.Errorf("/ready wrote %d keys", n)
	}
	if r, _, ae := h.chat(map[string]any{"session_id": "s", "messages": msgs(user("x"))}); r.StatusCode != 200 {
		t.Errorf("chat after the flush = %d %+v", r.StatusCode, ae)
	}
	if r := h.do("GET", "/ready", nil); r.StatusCode != 200 {
		t.Errorf("/ready after the resync = %d", r.StatusCode)
	}
}

// TestHealerRestoresAnUnreadyReplica: a replica that is unready gets no
// traffic, so no allocation re-syncs it; its healer writes back the
// scripts (a restart with persistence) and the subscriptions (one
// without), and it turns ready on its own.
func TestHealerRestoresAnUnreadyReplica(t *testing.T) {
	h := newHarness(t, harnessOpts{opts: Options{HealInterval: 20 * time.Millisecond}})
	h.srv.Start()
	t.Cleanup(func() { _ = h.srv.Shutdown(context.Background()) })
	ready := func() bool { return h.do("GET", "/ready", nil).StatusCode == 200 }

	h.tg.Client.ScriptFlush(context.Background())
	keys := len(h.tg.Mini.Keys())
	if !testutil.Within(2*time.Second, ready) {
		t.Fatal("not ready 2 s after a script flush")
	}
	if n := len(h.tg.Mini.Keys()); n != keys {
		t.Errorf("loading the scripts changed the keys: %d -> %d", keys, n)
	}

	h.tg.Mini.FlushAll()
	h.tg.Client.ScriptFlush(context.Background())
	if !testutil.Within(2*time.Second, ready) {
		t.Fatal("not ready 2 s after Redis lost the pool")
	}
	if r, _, ae := h.chat(map[string]any{"session_id": "s", "messages": msgs(user("x"))}); r.StatusCode != 200 {
		t.Errorf("chat after healing = %d %+v", r.StatusCode, ae)
	}
}
