package tests

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"

	"github.com/authpool/authpool/internal/redistest"
	"github.com/authpool/authpool/internal/testutil"
)

// TestBadInputLeavesPoolUnchanged (issue 3, "must show" 4): each refused
// request has its status and an OpenAI-shaped error; no CLI runs and Redis
// holds no session, usage or counter afterwards.
func TestBadInputLeavesPoolUnchanged(t *testing.T) {
	c := startCluster(t, clusterOpts{rateLimit: 30})
	auth := []string{"Authorization", "Bearer " + clientKey}
	good := `{"messages":[{"role":"user","content":"hi"}]}`
	tests := []struct {
		name    string
		body    string
		headers []string
		status  int
		typ     string
	}{
		{"malformed JSON", `{"messages": [`, auth, 400, "invalid_request_error"},
		{"missing messages", `{"model":"sonnet"}`, auth, 400, "invalid_request_error"},
		{"empty messages", `{"messages":[]}`, auth, 400, "invalid_request_error"},
		{"unknown role", `{"messages":[{"role":"robot","content":"hi"}]}`, auth, 400, "invalid_request_error"},
		{"image content", `{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://x/y.png"}}]}]}`, auth, 400, "invalid_request_error"},
		{"tools", `{"tools":[{"type":"function","function":{"name":"f"}}],"messages":[{"role":"user","content":"hi"}]}`, auth, 400, "invalid_request_error"},
		{"unknown model", `{"model":"gpt-4","messages":[{"role":"user","content":"hi"}]}`, auth, 400, "invalid_request_error"},
		{"oversize body", `{"messages":[{"role":"user","content":"` + strings.Repeat("a", 1<<20) + `"}]}`, auth, 413, "invalid_request_error"},
		{"bad session id", `{"session_id":"no spaces allowed","messages":[{"role":"user","content":"hi"}]}`, auth, 400, "invalid_request_error"},
		{"bad session header", good, append([]string{"X-Session-Id", strings.Repeat("x", 200)}, auth...), 400, "invalid_request_error"},
		{"bad priority", `{"priority":"asap","messages":[{"role":"user","content":"hi"}]}`, auth, 400, "invalid_request_error"},
		{"missing API key", good, nil, 401, "authentication_error"},
		{"wrong API key", good, []string{"Authorization", "Bearer not-a-key"}, 401, "authentication_error"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := c.post(i%2, tc.body, tc.headers...)
			var e struct {
				Error struct{ Message, Type, Code string }
			}
			if err := json.Unmarshal(body, &e); err != nil {
				t.Fatalf("body %s: %v", body, err)
			}
			if resp.StatusCode != tc.status || e.Error.Type != tc.typ || e.Error.Message == "" || e.Error.Code == "" {
				t.Errorf("%d %+v, want %d %s", resp.StatusCode, e.Error, tc.status, tc.typ)
			}
		})
	}
	// The official client sees a wrong key as a typed 401.
	_, _, err := ask(t, c.replicas[0].client("wrong"), "", "hi")
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 401 || apiErr.Type != "authentication_error" {
		t.Errorf("openai client: %v", err)
	}

	for _, s := range c.subs {
		if n := len(c.calls(s.id)); n != 0 {
			t.Errorf("%s: the CLI ran %d times", s.id, n)
		}
		st := c.debugStatus(0)[s.id]
		if st["requests"].(float64) != 0 || st["assignedClients"].(float64) != 0 || st["status"] != "available" {
			t.Errorf("%s changed: %v", s.id, st)
		}
	}
	if n := c.sessionCount(); n != 0 {
		t.Errorf("%d sessions in Redis", n)
	}
	if n, _ := c.rdb.XLen(context.Background(), c.keys.Usage()).Result(); n != 0 {
		t.Errorf("%d usage entries", n)
	}

	// Rate limit: 30 a minute per key, shared by both replicas.
	for i := 0; i < 30; i++ {
		if r := get(t, c.replicas[i%2].url+"/v1/models", otherKey); r.StatusCode != 200 {
			t.Fatalf("request %d: %d", i, r.StatusCode)
		}
	}
	r := get(t, c.replicas[0].url+"/v1/models", otherKey)
	var e struct{ Error struct{ Type string } }
	_ = json.NewDecoder(r.Body).Decode(&e)
	ra, _ := strconv.Atoi(r.Header.Get("Retry-After"))
	if r.StatusCode != 429 || e.Error.Type != "rate_limit_error" || ra < 1 || ra > 3 {
		t.Errorf("31st request: %d %s Retry-After %q", r.StatusCode, e.Error.Type, r.Header.Get("Retry-After"))
	}
}

func get(t *testing.T, url, key string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// TestDisconnectKillsCLI (issue 3, "must show" 4): a client that goes away
// mid-stream leaves no CLI process behind.
func TestDisconnectKillsCLI(t *testing.T) {
	c := startCluster(t, clusterOpts{replicas: 1, modes: map[string]string{"sub1": "stream-slow 300", "sub2": "stream-slow 300"}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	body := `{"stream":true,"session_id":"leaver","messages":[{"role":"user","content":"one two three four five six seven eight nine ten eleven twelve"}]}`
	req, _ := http.NewRequestWithContext(ctx, "POST", c.replicas[0].url+"/v1/chat/completions", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+clientKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	rd := bufio.NewReader(resp.Body)
	for {
		line, err := rd.ReadString('\n')
		if err != nil {
			t.Fatalf("stream ended before any text: %v", err)
		}
		if strings.Contains(line, `"content":"echo:`) || strings.Contains(line, `"content":"echo: `) {
			break
		}
	}
	cancel()
	resp.Body.Close()

	sub := c.session("leaver")["sub"]
	calls := c.calls(sub)
	if len(calls) != 1 || calls[0].Pid == 0 {
		t.Fatalf("calls = %+v", calls)
	}
	pid := calls[0].Pid
	testutil.Eventually(t, 5*time.Second, fmt.Sprintf("the end of CLI process %d after the client left", pid),
		func() bool { return !alive(pid) })
	// Nothing was answered, so nothing was settled.
	if st := c.debugStatus(0)[sub]; st["requests"].(float64) != 0 {
		t.Errorf("%s settled %v requests", sub, st["requests"])
	}
}

func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }

// TestGracefulShutdown: SIGTERM lets the request in flight finish, then the
// process exits 0.
func TestGracefulShutdown(t *testing.T) {
	c := startCluster(t, clusterOpts{replicas: 1, modes: map[string]string{"sub1": "slow 1500", "sub2": "slow 1500"}})
	r := c.replicas[0]
	type result struct {
		text string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		cc, _, err := ask(t, r.client(clientKey), "", "still there?")
		if err != nil {
			done <- result{err: err}
			return
		}
		done <- result{text: cc.Choices[0].Message.Content}
	}()
	time.Sleep(400 * time.Millisecond) // the CLI is running
	if err := r.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	res := <-done
	if res.err != nil || res.text != "echo: still there?" {
		t.Errorf("in-flight request: %q %v", res.text, res.err)
	}
	select {
	case err := <-r.done:
		r.done <- err
		if err != nil {
			t.Errorf("exit: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no exit after SIGTERM")
	}
}

// TestFreshCheckoutStarts (issue 3, "must show" 5): in the repository, with
// no Redis configured, the gateway starts on the embedded Redis with the
// shipped config and answers /health and /debug/auth-pool.
func TestFreshCheckoutStarts(t *testing.T) {
	port, err := redistest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	logs := &testutil.Buffer{}
	cmd := exec.Command(apiBin)
	cmd.Dir = repoRoot
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "PORT=" + strconv.Itoa(port)}
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("exit after SIGTERM: %v", err)
			}
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			t.Error("no exit after SIGTERM")
		}
		if t.Failed() {
			t.Logf("log:\n%s", logs)
		}
	}()
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	testutil.Eventually(t, 15*time.Second, "/health", func() bool {
		resp, err := http.Get(base + "/health")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	resp, err := http.Get(base + "/debug/auth-pool")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("/debug/auth-pool: %v", err)
	}
	defer resp.Body.Close()
	var body struct {
		Status []map[string]any `json:"status"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, s := range body.Status {
		ids = append(ids, fmt.Sprint(s["id"]))
		if s["status"] != "available" || s["weeklyBudget"].(float64) != 456 {
			t.Errorf("subscription = %v", s)
		}
	}
	if strings.Join(ids, ",") != "sub1,sub2,sub3" {
		t.Errorf("subscriptions = %v, want the shipped config's", ids)
	}
	if !strings.Contains(logs.String(), "embedded in-memory Redis") {
		t.Errorf("no warning about the embedded Redis in:\n%s", logs)
	}
}
