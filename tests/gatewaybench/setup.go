package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/authpool/authpool/internal/redistest"
)

const benchKey = "bench-key"

// env is the running deployment and the two ways to reach the CLI.
type env struct {
	dir      string
	fake     string
	subDirs  []string
	urls     []string
	logs     []string // each replica's log file
	api      string   // the cmd/api binary
	cfgPath  string
	backends string
	procs    []*exec.Cmd
	cliMu    sync.Mutex
	cli      map[string][]float64 // the direct path's spawn, first_byte and exit (ms)
	redis    *redistest.Server
	client   *http.Client
	sessions int
}

// setup builds cmd/api and the fake CLI, starts redis-server and two
// replicas, and waits until both are ready.
func setup(o options) (*env, error) {
	root, err := moduleRoot()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "gatewaybench-")
	if err != nil {
		return nil, err
	}
	e := &env{dir: dir, fake: filepath.Join(dir, "claude"), sessions: o.sessions, cli: map[string][]float64{},
		client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: o.conc, MaxConnsPerHost: o.conc}}}
	api := filepath.Join(dir, "api")
	for out, pkg := range map[string]string{api: "./cmd/api", e.fake: "./tests/fakeclaude"} {
		cmd := exec.Command("go", "build", "-o", out, pkg)
		cmd.Dir = root
		if b, err := cmd.CombinedOutput(); err != nil {
			e.close()
			return nil, fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
		}
	}
	if e.redis, err = redistest.StartServer(); err != nil {
		e.close()
		return nil, err
	}
	e.api = api
	if e.cfgPath, e.backends, err = e.writeConfig(o); err != nil {
		e.close()
		return nil, err
	}
	if err := e.startReplicas(o.rateLimitCost); err != nil {
		e.close()
		return nil, err
	}
	return e, nil
}

// rateLimitOn is the rate limit of the second pair of replicas: far above
// the load, so that it costs its script and never refuses.
const rateLimitOn = 1_000_000

// startReplicas starts two replicas with the rate limit off and, with
// withLimit, two more with it on (rateLimitOn).
func (e *env) startReplicas(withLimit bool) error {
	e.stopReplicas()
	n := 2
	if withLimit {
		n = 4
	}
	for i := 0; i < n; i++ {
		rl := 0
		if i >= 2 {
			rl = rateLimitOn
		}
		if err := e.startReplica(i, rl); err != nil {
			return err
		}
	}
	return nil
}

func (e *env) stopReplicas() {
	for _, p := range e.procs {
		_ = p.Process.Signal(syscall.SIGTERM)
		_ = p.Wait()
	}
	e.procs, e.urls, e.logs = nil, nil, nil
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("run gatewaybench inside the repository")
	}
	return filepath.Dir(mod), nil
}

// writeConfig writes a pool of o.subs subscriptions with room for every
// session and budgets no run can reach, and one claude-cli backend each.
func (e *env) writeConfig(o options) (string, string, error) {
	var subs, backends []map[string]any
	for i := 1; i <= o.subs; i++ {
		d := filepath.Join(e.dir, fmt.Sprintf("claude-sub%d", i))
		if err := os.MkdirAll(d, 0o700); err != nil {
			return "", "", err
		}
		// The fake CLI paces its text deltas (10 ms apart by default) to
		// look like a model; here they come at once, on both paths, so the
		// difference measured is the gateway's.
		if err := os.WriteFile(filepath.Join(d, "fake-mode"), []byte("stream-slow 0"), 0o600); err != nil {
			return "", "", err
		}
		e.subDirs = append(e.subDirs, d)
		id := fmt.Sprintf("sub%d", i)
		subs = append(subs, map[string]any{"id": id, "email": id + "@example.com", "type": "claude-max",
			"configDir": d, "weeklyBudget": 100000})
		backends = append(backends, map[string]any{"name": "claude-cli-" + id, "type": "claude-cli",
			"configDir": d, "accountId": id, "maxConcurrent": o.conc, "timeoutSeconds": 60})
	}
	cfg := map[string]any{"subscriptions": subs, "maxClientsPerSubscription": max(15, o.sessions), "pool": "bench"}
	// The replicas watch the config file's directory: one of its own, not
	// the one their logs are written to.
	cfgDir := filepath.Join(e.dir, "config")
	if err := os.MkdirAll(cfgDir, 0o700); err != nil {
		return "", "", err
	}
	cfgPath, backendsPath := filepath.Join(cfgDir, "auth-pool.json"), filepath.Join(cfgDir, "backends.json")
	for path, v := range map[string]any{cfgPath: cfg, backendsPath: map[string]any{"backends": backends}} {
		b, _ := json.Marshal(v)
		if err := os.WriteFile(path, b, 0o600); err != nil {
			return "", "", err
		}
	}
	return cfgPath, backendsPath, nil
}

// startReplica starts replica i with Server-Timing and the profiler on;
// the profiler is served on loopback like every /debug view.
func (e *env) startReplica(i, rateLimit int) error {
	port, err := redistest.FreePort()
	if err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(e.dir, fmt.Sprintf("api-%d.log", i)))
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(e.api)
	cmd.Dir = e.dir
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + e.dir, "PORT=" + strconv.Itoa(port),
		"REDIS_URL=redis://" + e.redis.Addr + "/0", "AUTH_POOL_CONFIG=" + e.cfgPath, "BACKENDS_CONFIG=" + e.backends,
		"CLAUDE_BIN=" + e.fake, "API_KEYS=" + benchKey, "RATE_LIMIT_PER_MINUTE=" + strconv.Itoa(rateLimit),
		"LOG_FORMAT=json", "LOG_LEVEL=info", "FAKECLAUDE_COST=0.0001", "SERVER_TIMING=1", "PPROF=1"}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	e.procs = append(e.procs, cmd)
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if r, err := http.Get(url + "/ready"); err == nil {
			r.Body.Close()
			if r.StatusCode == 200 {
				e.urls = append(e.urls, url)
				e.logs = append(e.logs, logf.Name())
				return nil
			}
		}
		time.Sleep(25 * time.Millisecond)
	}
	return fmt.Errorf("replica %d not ready (log in %s)", i, logf.Name())
}

func (e *env) close() {
	e.stopReplicas()
	if e.redis != nil {
		e.redis.Stop()
	}
	_ = os.RemoveAll(e.dir)
}

func prompt(i int) string { return "ping " + strconv.Itoa(i) }

// direct runs the fake CLI as the gateway does for a new session: the same
// sandboxed stream-json arguments, prompt on stdin, the subscription's config
// dir, the stream read to its result line.
func (e *env) direct(i int) (time.Duration, error) {
	t0 := time.Now()
	cmd := exec.Command(e.fake, "-p", "--output-format", "stream-json", "--verbose", "--include-partial-messages",
		"--tools", "", "--strict-mcp-config", "--model", "sonnet")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + e.dir, "CLAUDE_CONFIG_DIR=" + e.subDirs[i%len(e.subDirs)],
		"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1"}
	cmd.Stdin = strings.NewReader(prompt(i))
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	started := time.Now()
	var out bytes.Buffer
	var first time.Time
	buf := make([]byte, 64<<10)
	for {
		n, rerr := pipe.Read(buf)
		if n > 0 && first.IsZero() {
			first = time.Now()
		}
		out.Write(buf[:n])
		if rerr != nil {
			break
		}
	}
	if err := cmd.Wait(); err != nil {
		return 0, err
	}
	exited := time.Now()
	if !first.IsZero() {
		e.cliMu.Lock()
		e.cli["spawn"] = append(e.cli["spawn"], msOf(started.Sub(t0)))
		e.cli["first_byte"] = append(e.cli["first_byte"], msOf(first.Sub(started)))
		e.cli["exit"] = append(e.cli["exit"], msOf(exited.Sub(first)))
		e.cliMu.Unlock()
	}
	lines := bytes.Split(bytes.TrimSpace(out.Bytes()), []byte("\n"))
	var r struct {
		Type    string `json:"type"`
		IsError bool   `json:"is_error"`
		Result  string `json:"result"`
	}
	if err := json.Unmarshal(lines[len(lines)-1], &r); err != nil || r.Type != "result" || r.IsError {
		return 0, fmt.Errorf("bad CLI output %q (%v)", out.Bytes(), err)
	}
	return 0, nil
}

func msOf(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// cliPhases takes the direct path's CLI phases recorded so far (ms, sorted).
func (e *env) cliPhases() map[string][]float64 {
	e.cliMu.Lock()
	defer e.cliMu.Unlock()
	out := e.cli
	e.cli = map[string][]float64{}
	for _, v := range out {
		slices.Sort(v)
	}
	return out
}

// gateway sends turns through replicas first and first+1 (alternating);
// each returns the replica's own time to the answer (Server-Timing's
// total).
func (e *env) gateway(first int) op {
	return func(i int) (time.Duration, error) { return e.turn(e.urls[first+i%2], i) }
}

func (e *env) turn(url string, i int) (time.Duration, error) {
	body, _ := json.Marshal(map[string]any{"model": "sonnet",
		"messages": []map[string]string{{"role": "user", "content": prompt(i)}}})
	req, err := http.NewRequest("POST", url+"/v1/chat/completions", bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+benchKey)
	req.Header.Set("Content-Type", "application/json")
	if e.sessions > 0 {
		req.Header.Set("X-Session-Id", "bench-"+strconv.Itoa(i%e.sessions))
	}
	resp, err := e.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != 200 {
		return 0, fmt.Errorf("status %d: %s", resp.StatusCode, data)
	}
	var cc struct {
		Choices []struct {
			Message struct{ Content string } `json:"message"`
		} `json:"choices"`
	}
	if err := json.Unmarshal(data, &cc); err != nil || len(cc.Choices) != 1 || cc.Choices[0].Message.Content != "echo: "+prompt(i) {
		return 0, fmt.Errorf("bad answer %s (%v)", data, err)
	}
	return serverTotal(resp.Header.Get("Server-Timing")), nil
}

// serverTotal reads "total;dur=<ms>" out of a Server-Timing header.
func serverTotal(h string) time.Duration {
	for _, m := range strings.Split(h, ",") {
		name, dur, ok := strings.Cut(strings.TrimSpace(m), ";dur=")
		if ok && name == "total" {
			if f, err := strconv.ParseFloat(dur, 64); err == nil {
				return time.Duration(f * float64(time.Millisecond))
			}
		}
	}
	return 0
}
