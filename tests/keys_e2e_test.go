package tests

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestClientKeyWeeklyBudget (issue 12, "must show" 2): a named key with a
// weeklyBudget of 0.05 USD and a CLI costing 0.02 per turn gets three turns
// (0.02, 0.04, 0.06 spent) and the fourth answers 429 quota_exceeded with
// Retry-After; its usage shows under its name. A key limited to one model
// gets 403 permission_error for another; a key given by its sha256 works.
func TestClientKeyWeeklyBudget(t *testing.T) {
	const alice, bob = "alice-key-0123456789", "bob-key-0123456789ab"
	bobSum := sha256.Sum256([]byte(bob))
	keysFile := filepath.Join(t.TempDir(), "keys.json")
	writeJSON(t, keysFile, []map[string]any{
		{"name": "alice", "key": alice, "weeklyBudget": 0.05},
		{"name": "bob", "sha256": hex.EncodeToString(bobSum[:]), "models": []string{"haiku"}},
	})
	c := startCluster(t, clusterOpts{replicas: 1, env: []string{"API_KEYS_FILE=" + keysFile}})
	for _, s := range c.subs {
		if err := os.WriteFile(filepath.Join(s.dir, "fake-cost"), []byte("0.02"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	turn := func(key, model string, i int) (*http.Response, []byte) {
		return c.post(0, fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"turn %d"}]}`, model, i),
			"Authorization", "Bearer "+key, "X-Session-Id", "alice-session")
	}
	for i := 1; i <= 3; i++ {
		if resp, body := turn(alice, "sonnet", i); resp.StatusCode != http.StatusOK {
			t.Fatalf("turn %d: %d %s", i, resp.StatusCode, body)
		}
	}
	resp, body := turn(alice, "sonnet", 4)
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("fourth turn: %d %s, want 429", resp.StatusCode, body)
	}
	var e struct {
		Error struct{ Type, Code, Message string } `json:"error"`
	}
	_ = json.Unmarshal(body, &e)
	if e.Error.Type != "quota_exceeded" || !strings.Contains(e.Error.Message, "resets at") {
		t.Errorf("fourth turn's error = %+v", e.Error)
	}
	if ra, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || ra < 3600 || ra > 7*24*3600 {
		t.Errorf("Retry-After = %q, want the time until the first turn leaves the week", resp.Header.Get("Retry-After"))
	}
	// No other door around the budget: the Messages API, and a request with
	// tools (which would go to a tool-capable backend), are refused too.
	for path, body := range map[string]string{
		"/v1/messages": `{"model":"sonnet","max_tokens":64,"messages":[{"role":"user","content":"turn 5"}]}`,
		"/v1/chat/completions": `{"model":"sonnet","messages":[{"role":"user","content":"turn 5"}],` +
			`"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}]}`,
	} {
		req, _ := http.NewRequest("POST", c.replicas[0].url+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+alice)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusTooManyRequests {
			t.Errorf("%s over the weekly budget: %d, want 429", path, resp.StatusCode)
		}
	}

	// Its usage, under its name, never its key.
	ctx := context.Background()
	h := c.rdb.HGetAll(ctx, c.keys.ClientKey("alice")).Val()
	if h["requests"] != "3" || h["cost"] != "0.060000" {
		t.Errorf("alice's usage = %v, want 3 requests, 0.06 USD", h)
	}
	entries := c.rdb.XRange(ctx, c.keys.Usage(), "-", "+").Val()
	named := 0
	for _, m := range entries {
		if m.Values["keyName"] == "alice" {
			named++
		}
	}
	if named != 3 {
		t.Errorf("usage entries named alice = %d, want 3", named)
	}
	keys := c.rdb.Keys(ctx, c.keys.Base()+":*").Val()
	for _, k := range keys {
		if strings.Contains(k, alice) || strings.Contains(k, bob) {
			t.Errorf("a key reached Redis: %s", k)
		}
	}
	if strings.Contains(c.replicas[0].logs.String(), alice) {
		t.Error("a key reached the log")
	}

	// bob: by its sha256, haiku only.
	resp, body = c.post(0, `{"model":"sonnet","messages":[{"role":"user","content":"x"}]}`, "Authorization", "Bearer "+bob)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), `"permission_error"`) {
		t.Errorf("bob with sonnet: %d %s, want 403 permission_error", resp.StatusCode, body)
	}
	resp, body = c.post(0, `{"model":"haiku","messages":[{"role":"user","content":"x"}]}`, "X-API-Key", bob)
	if resp.StatusCode != http.StatusOK {
		t.Errorf("bob with haiku: %d %s", resp.StatusCode, body)
	}
	// API_KEYS keep working.
	if resp, body := c.post(0, `{"model":"sonnet","messages":[{"role":"user","content":"x"}]}`, "Authorization", "Bearer "+clientKey); resp.StatusCode != http.StatusOK {
		t.Errorf("API_KEYS key: %d %s", resp.StatusCode, body)
	}

	// A reload of the file: alice gets a larger budget and is served again.
	writeJSON(t, keysFile, []map[string]any{{"name": "alice", "key": alice, "weeklyBudget": 1}})
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, body := turn(alice, "sonnet", 5)
		if resp.StatusCode == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after raising the budget: %d %s", resp.StatusCode, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// count_tokens is the model's service too: a key limited to haiku gets 403
// permission_error for sonnet there, as on every other route.
func TestCountTokensHoldsTheKeysModels(t *testing.T) {
	const bob = "bob-key-0123456789ab"
	keysFile := filepath.Join(t.TempDir(), "keys.json")
	writeJSON(t, keysFile, []map[string]any{{"name": "bob", "key": bob, "models": []string{"haiku"}}})
	api := newMessagesAPI(t)
	c := startCluster(t, clusterOpts{replicas: 1, subs: 1, fallbackURL: api.srv.URL, tools: true,
		env: []string{"API_KEYS_FILE=" + keysFile}})
	count := func(model string) (*http.Response, []byte) {
		return c.postTo(0, "/v1/messages/count_tokens",
			fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"hi"}]}`, model), "x-api-key", bob)
	}
	if resp, body := count("sonnet"); resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), `"permission_error"`) {
		t.Errorf("bob counting for sonnet: %d %s, want 403 permission_error", resp.StatusCode, body)
	}
	if resp, body := count("haiku"); resp.StatusCode != http.StatusOK {
		t.Errorf("bob counting for haiku: %d %s, want 200", resp.StatusCode, body)
	}
}
