package tests

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/authpool/authpool/internal/testutil"
)

// addSub rewrites host's auth-pool.json with one more subscription (its
// config dir under host) and returns the new file's bytes.
func addSub(t *testing.T, host, id string) {
	t.Helper()
	path := filepath.Join(host, "auth-pool.json")
	cfg := readJSON(t, path)
	dir := filepath.Join(host, "claude-"+id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	cfg["subscriptions"] = append(cfg["subscriptions"].([]any), map[string]any{"id": id,
		"email": id + "@example.com", "type": "claude-max", "configDir": dir, "weeklyBudget": 100})
	// An editor's save: write a temporary file, rename it over the config.
	tmp := path + ".tmp"
	writeJSON(t, tmp, cfg)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// readyBody is replica i's /ready answer.
func (c *cluster) readyBody(i int) map[string]any {
	c.t.Helper()
	resp, err := http.Get(c.replicas[i].url + "/ready")
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&body)
	if resp.StatusCode != http.StatusOK {
		c.t.Fatalf("/ready of replica %d: %d %v", i, resp.StatusCode, body)
	}
	return body
}

// turn sends one turn of session sid to replica i and returns the
// subscription its session is bound to afterwards.
func (c *cluster) turn(i int, sid string) string {
	c.t.Helper()
	resp, body := c.post(i, `{"model":"sonnet","messages":[{"role":"user","content":"hi"}]}`,
		"Authorization", "Bearer "+clientKey, "X-Session-Id", sid)
	if resp.StatusCode != http.StatusOK {
		c.t.Fatalf("turn %s on replica %d: %d %s", sid, i, resp.StatusCode, body)
	}
	return c.session(sid)["sub"]
}

// TestConfigReload (issue 12, "must show" 1): two replicas, each with its
// own config file. A subscription added on one by SIGHUP serves sessions
// there while the other, on the older config, says it is behind, never
// binds to it, moves a session bound there instead of failing it, and does
// not remove it on a reload of its old file. Editing the other's file adds
// it there too, and both bind sessions to it. An invalid edit changes
// nothing and writes config_reload_failed.
func TestConfigReload(t *testing.T) {
	c := startCluster(t, clusterOpts{replicas: 2, perReplica: true})
	host0, host1 := filepath.Join(c.dir, "host0"), filepath.Join(c.dir, "host1")
	// The existing subscriptions carry usage, so a fresh one ranks first.
	for i := range 4 {
		c.turn(i%2, fmt.Sprintf("warm%d", i))
	}

	// Each host's file differs (its own config dirs), so the replica that
	// started last wrote its version as a reload already.
	reloads := len(c.events("config_reloaded"))
	time.Sleep(5 * time.Millisecond) // a later load time than the running config
	addSub(t, host0, "sub3")
	if err := c.replicas[0].cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if !testutil.Poll(10*time.Second, 50*time.Millisecond, func() bool {
		return strings.Contains(c.replicas[0].logs.String(), `"message":"config reloaded"`)
	}) {
		t.Fatal("timed out: " + "replica 0 reloads on SIGHUP")
	}
	if got := c.readyBody(1)["behind"]; got != true {
		t.Fatalf("replica 1 on the old config: /ready behind = %v, want true", got)
	}
	if got := c.readyBody(0)["behind"]; got != false {
		t.Fatalf("replica 0: /ready behind = %v, want false", got)
	}
	if n := len(c.events("subscription_added")); n != 1 {
		t.Errorf("subscription_added events = %d, want 1", n)
	}
	if n := len(c.events("config_reloaded")); n != reloads+1 {
		t.Errorf("config_reloaded events = %d, want %d", n, reloads+1)
	}

	// A SIGHUP of the old replica (its file unchanged) removes nothing.
	_ = c.replicas[1].cmd.Process.Signal(syscall.SIGHUP)
	var onSub3 string
	for i := range 6 {
		if c.turn(0, fmt.Sprintf("new%d", i)) == "sub3" && onSub3 == "" {
			onSub3 = fmt.Sprintf("new%d", i)
		}
		if sub := c.turn(1, fmt.Sprintf("old%d", i)); sub == "sub3" {
			t.Fatalf("the replica on the old config bound a session to sub3")
		}
	}
	if onSub3 == "" {
		t.Fatal("no session went to the new subscription on replica 0")
	}
	if st := c.debugStatus(0)["sub3"]["status"]; st == "removed" {
		t.Fatal("the old replica removed the new subscription")
	}
	// The old replica gets the next turn of a session bound to sub3: moved.
	if sub := c.turn(1, onSub3); sub == "sub3" || sub == "" {
		t.Fatalf("session %s on the old replica: bound to %q, want moved to a subscription it knows", onSub3, sub)
	}
	if len(c.readCalls(filepath.Join(host0, "claude-sub3"))) == 0 {
		t.Fatal("sub3 ran no turn on replica 0")
	}

	// Editing replica 1's file reloads it (directory watch, rename-write).
	addSub(t, host1, "sub3")
	if !testutil.Poll(10*time.Second, 50*time.Millisecond, func() bool {
		return c.readyBody(1)["behind"] == false
	}) {
		t.Fatal("timed out: " + "replica 1 reloads on the file change")
	}
	for i := range 8 {
		c.turn(1, fmt.Sprintf("later%d", i))
	}
	if len(c.readCalls(filepath.Join(host1, "claude-sub3"))) == 0 {
		t.Fatal("sub3 ran no turn on replica 1 after its reload")
	}

	// An invalid edit: nothing changes, one config_reload_failed.
	bad := filepath.Join(host0, "auth-pool.json")
	b, _ := os.ReadFile(bad)
	if err := os.WriteFile(bad, []byte(strings.Replace(string(b), `"weeklyBudget": 100`, `"weeklyBudget": -1`, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if !testutil.Poll(10*time.Second, 50*time.Millisecond, func() bool { return len(c.events("config_reload_failed")) == 1 }) {
		t.Fatal("timed out: " + "config_reload_failed")
	}
	if !strings.Contains(c.replicas[0].logs.String(), `"path":"subscriptions[0].weeklyBudget"`) {
		t.Errorf("the failed reload's log does not name the JSON path:\n%s", c.replicas[0].logs)
	}
	if n := len(c.events("subscription_removed")); n != 0 {
		t.Errorf("subscription_removed events = %d after an invalid edit", n)
	}
	if c.turn(0, "after-bad") == "" {
		t.Fatal("replica 0 stopped serving after an invalid edit")
	}
}

// A reloaded modelMap is in force for the next request: a name the gateway
// refused before the reload is served after it, and listed.
func TestReloadTakesTheModelMap(t *testing.T) {
	c := startCluster(t, clusterOpts{replicas: 1})
	body := `{"model":"team-default","messages":[{"role":"user","content":"hi"}]}`
	if resp, b := c.post(0, body, "Authorization", "Bearer "+clientKey); resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), "unknown model") {
		t.Fatalf("before the reload: %d %s, want 400 unknown model", resp.StatusCode, b)
	}

	path := filepath.Join(c.dir, "auth-pool.json")
	cfg := readJSON(t, path)
	cfg["modelMap"] = map[string]any{"team-default": "sonnet"}
	writeJSON(t, path, cfg)
	if err := c.replicas[0].cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if !testutil.Poll(10*time.Second, 50*time.Millisecond, func() bool {
		return strings.Contains(c.replicas[0].logs.String(), `"message":"config reloaded"`)
	}) {
		t.Fatal("timed out: the replica reloads on SIGHUP")
	}
	if resp, b := c.post(0, body, "Authorization", "Bearer "+clientKey); resp.StatusCode != http.StatusOK {
		t.Fatalf("after the reload: %d %s, want 200", resp.StatusCode, b)
	}
	list, _ := io.ReadAll(get(t, c.replicas[0].url+"/v1/models", clientKey).Body)
	if !strings.Contains(string(list), `"team-default"`) {
		t.Fatalf("/v1/models after the reload does not list the mapped name: %s", list)
	}
}
