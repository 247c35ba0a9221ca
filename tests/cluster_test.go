package tests

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/redis/go-redis/v9"

	"github.com/authpool/authpool/internal/redistest"
	"github.com/authpool/authpool/internal/testutil"
	"github.com/authpool/authpool/pkg/lua"
)

// Credentials the replicas are started with.
const (
	clientKey   = "test-key"
	otherKey    = "other-key"
	tokenVar    = "CLAUDE_TOKEN_SUB1" // sub1's oauthTokenEnv
	tokenValue  = "sk-ant-oat01-e2e-token-of-sub1"
	fallbackKey = "sk-ant-api03-e2e-fallback"
)

// clusterOpts shape one test's deployment.
type clusterOpts struct {
	replicas    int               // default 2
	subs        int               // default 2
	fallbackOff bool              // fallbackWhenExhausted: false
	fallbackURL string            // ANTHROPIC_BASE_URL; "" means no fallback backend
	rateLimit   int               // RATE_LIMIT_PER_MINUTE (0: off)
	modes       map[string]string // subscription id → fake-mode
	env         []string          // more environment for the replicas
	redisAddr   string            // a redis-server of the test's own; default the shared one
	redisPass   string            // its password (REDIS_PASSWORD)
	// perReplica gives each replica a host of its own, as two machines
	// would have: its own HOME, config dirs (the same subscriptions under
	// other paths), auth-pool.json, backends.json and state dir. The
	// cluster's subs are replica 0's; replicaSubs has every replica's.
	perReplica bool
	config     map[string]any // more top-level keys of auth-pool.json
	// tools lists an anthropic-api backend with supportsTools in
	// backends.json (its base URL is fallbackURL).
	tools bool
}

// sub is one subscription and its config dir.
type sub struct{ id, dir string }

// cluster is a pool on the shared redis-server, served by replicas.
type cluster struct {
	t           *testing.T
	dir         string
	subs        []sub
	replicaSubs [][]sub // per replica (perReplica), else each replica's is subs
	replicas    []*replica
	rdb         *redis.Client
	keys        lua.Keys
}

var poolSeq atomic.Int64

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9]`)

// startCluster writes the config files and starts the replicas; each test
// gets a pool name of its own on the shared redis-server.
func startCluster(t *testing.T, o clusterOpts) *cluster {
	t.Helper()
	needRedis(t)
	if o.replicas == 0 {
		o.replicas = 2
	}
	if o.subs == 0 {
		o.subs = 2
	}
	name := unsafeChars.ReplaceAllString(t.Name(), "")
	if len(name) > 40 {
		name = name[:40]
	}
	poolName := fmt.Sprintf("%s%d", name, poolSeq.Add(1))
	c := &cluster{t: t, dir: t.TempDir(), keys: lua.NewKeys(poolName)}
	addr := redisAddr
	if o.redisAddr != "" {
		addr = o.redisAddr
	}
	c.rdb = redis.NewClient(&redis.Options{Addr: addr, Password: o.redisPass})
	t.Cleanup(func() { _ = c.rdb.Close() })

	hosts := []string{c.dir}
	if o.perReplica {
		hosts = nil
		for i := 0; i < o.replicas; i++ {
			hosts = append(hosts, filepath.Join(c.dir, fmt.Sprintf("host%d", i)))
		}
	}
	type deployment struct{ cfgPath, backendsPath string }
	var deps []deployment
	for _, host := range hosts {
		subs, cfgPath, backendsPath := c.writeDeployment(host, poolName, o)
		c.replicaSubs = append(c.replicaSubs, subs)
		deps = append(deps, deployment{cfgPath, backendsPath})
	}
	c.subs = c.replicaSubs[0]

	for i := 0; i < o.replicas; i++ {
		host, dep := hosts[0], deps[0]
		if o.perReplica {
			host, dep = hosts[i], deps[i]
		} else if i > 0 {
			c.replicaSubs = append(c.replicaSubs, c.subs)
		}
		env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + host, "REDIS_URL=redis://" + addr + "/0",
			"AUTH_POOL_CONFIG=" + dep.cfgPath, "BACKENDS_CONFIG=" + dep.backendsPath, "CLAUDE_BIN=" + fakeBin,
			"API_KEYS=" + clientKey + "," + otherKey, "RATE_LIMIT_PER_MINUTE=" + strconv.Itoa(o.rateLimit),
			"LOG_FORMAT=json", "LOG_LEVEL=debug", "SHUTDOWN_TIMEOUT=10s", tokenVar + "=" + tokenValue,
			"AUTHPOOL_STATE_DIR=" + filepath.Join(host, "state")}
		if o.redisPass != "" {
			env = append(env, "REDIS_PASSWORD="+o.redisPass)
		}
		if o.fallbackURL != "" {
			env = append(env, "ANTHROPIC_API_KEY="+fallbackKey, "ANTHROPIC_BASE_URL="+o.fallbackURL)
		}
		env = append(env, o.env...)
		c.replicas = append(c.replicas, startReplica(t, host, env))
	}
	return c
}

// writeDeployment writes, under host, the subscriptions' config dirs,
// auth-pool.json and backends.json of pool poolName.
func (c *cluster) writeDeployment(host, poolName string, o clusterOpts) (subs []sub, cfgPath, backendsPath string) {
	t := c.t
	t.Helper()
	var subsJSON, backendsJSON []map[string]any
	for i := 1; i <= o.subs; i++ {
		s := sub{id: fmt.Sprintf("sub%d", i), dir: filepath.Join(host, fmt.Sprintf("claude-sub%d", i))}
		if err := os.MkdirAll(s.dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if m := o.modes[s.id]; m != "" {
			c.setMode(s, m)
		}
		subs = append(subs, s)
		sj := map[string]any{"id": s.id, "email": s.id + "@example.com", "type": "claude-max",
			"configDir": s.dir, "weeklyBudget": 100}
		if i == 1 {
			sj["oauthTokenEnv"] = tokenVar
		}
		subsJSON = append(subsJSON, sj)
		backendsJSON = append(backendsJSON, map[string]any{"name": "claude-cli-" + s.id, "type": "claude-cli",
			"configDir": s.dir, "accountId": s.id, "maxConcurrent": 8, "supportsTools": true, "timeoutSeconds": 30})
	}
	cfg := map[string]any{"subscriptions": subsJSON, "maxClientsPerSubscription": 15, "weeklyBudgetThreshold": 0.85,
		"fallbackWhenExhausted": !o.fallbackOff, "pool": poolName,
		"notifications": map[string]any{"rules": []map[string]any{
			{"type": "limit_reached", "channels": []string{"log"}, "enabled": true}}}}
	for k, v := range o.config {
		cfg[k] = v
	}
	cfgPath, backendsPath = filepath.Join(host, "auth-pool.json"), filepath.Join(host, "backends.json")
	writeJSON(t, cfgPath, cfg)
	if o.tools {
		backendsJSON = append(backendsJSON, map[string]any{"name": "anthropic-api", "type": "anthropic-api",
			"supportsTools": true, "timeoutSeconds": 30})
	}
	writeJSON(t, backendsPath, map[string]any{"backends": backendsJSON})

	return subs, cfgPath, backendsPath
}

func writeJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// readJSON reads a JSON object file (a config written by writeJSON).
func readJSON(t *testing.T, path string) map[string]any {
	t.Helper()
	var v map[string]any
	b, err := os.ReadFile(path)
	if err == nil {
		err = json.Unmarshal(b, &v)
	}
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// setMode tells the fake CLI of s how to answer from now on.
func (c *cluster) setMode(s sub, mode string) {
	c.t.Helper()
	if err := os.WriteFile(filepath.Join(s.dir, "fake-mode"), []byte(mode), 0o600); err != nil {
		c.t.Fatal(err)
	}
}

func (c *cluster) sub(id string) sub {
	for _, s := range c.subs {
		if s.id == id {
			return s
		}
	}
	c.t.Fatalf("no subscription %q", id)
	return sub{}
}

// replica is one running cmd/api.
type replica struct {
	url  string
	cmd  *exec.Cmd
	logs *testutil.Buffer
	done chan error
}

// startReplica runs cmd/api in dir with env plus a free PORT, waits until
// /ready answers, and stops it (SIGTERM) when the test ends; its log is
// printed when the test failed.
func startReplica(t *testing.T, dir string, env []string) *replica {
	t.Helper()
	port, err := redistest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	r := &replica{url: fmt.Sprintf("http://127.0.0.1:%d", port), logs: &testutil.Buffer{}, done: make(chan error, 1)}
	r.cmd = exec.Command(apiBin)
	r.cmd.Dir = dir
	r.cmd.Env = append(append([]string{}, env...), "PORT="+strconv.Itoa(port))
	r.cmd.Stdout, r.cmd.Stderr = r.logs, r.logs
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { r.done <- r.cmd.Wait() }()
	t.Cleanup(func() {
		r.stop(t)
		if t.Failed() {
			t.Logf("replica %s log:\n%s", r.url, r.logs)
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get(r.url + "/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return r
			}
		}
		select {
		case err := <-r.done:
			r.done <- err
			t.Fatalf("replica exited before ready: %v\n%s", err, r.logs)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica %s not ready: %v\n%s", r.url, err, r.logs)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// stop sends SIGTERM and waits for the exit (SIGKILL after 15 s).
func (r *replica) stop(t *testing.T) error {
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-r.done:
		r.done <- err
		return err
	case <-time.After(15 * time.Second):
		_ = r.cmd.Process.Kill()
		t.Errorf("replica %s ignored SIGTERM for 15 s", r.url)
		return <-r.done
	}
}

// client is the official OpenAI client pointed at the replica.
func (r *replica) client(key string) openai.Client {
	return openai.NewClient(option.WithBaseURL(r.url+"/v1/"), option.WithAPIKey(key),
		option.WithMaxRetries(0), option.WithRequestTimeout(60*time.Second))
}

// fakeCall is one line of fake-calls.jsonl: what the fake CLI saw.
type fakeCall struct {
	Args             []string `json:"args"`
	ConfigDir        string   `json:"configDir"`
	Cwd              string   `json:"cwd"`
	CwdEntries       int      `json:"cwdEntries"`
	OAuthTokenSet    bool     `json:"oauthTokenSet"`
	OAuthTokenSHA256 string   `json:"oauthTokenSHA256"`
	APIKeySet        bool     `json:"anthropicApiKeySet"`
	EnvNames         []string `json:"envNames"`
	Prompt           string   `json:"prompt"`
	Pid              int      `json:"pid"`
	ChildPid         int      `json:"childPid"`
	Mode             string   `json:"mode"`
}

// flag returns the value after name in the call's argv, or "".
func (f fakeCall) flag(name string) string {
	for i, a := range f.Args {
		if a == name && i+1 < len(f.Args) {
			return f.Args[i+1]
		}
	}
	return ""
}

func (f fakeCall) has(name string) bool {
	for _, a := range f.Args {
		if a == name {
			return true
		}
	}
	return false
}

// calls reads the fake CLI's call log in a subscription's config dir.
func (c *cluster) calls(id string) []fakeCall {
	c.t.Helper()
	return c.readCalls(c.sub(id).dir)
}

// callsOn reads the call log of subscription id on replica i's host.
func (c *cluster) callsOn(i int, id string) []fakeCall {
	c.t.Helper()
	for _, s := range c.replicaSubs[i] {
		if s.id == id {
			return c.readCalls(s.dir)
		}
	}
	c.t.Fatalf("no subscription %q on replica %d", id, i)
	return nil
}

// setModeEverywhere tells the fake CLI of every subscription, on every
// host, how to answer.
func (c *cluster) setModeEverywhere(mode string) {
	c.t.Helper()
	for _, subs := range c.replicaSubs {
		for _, s := range subs {
			c.setMode(s, mode)
		}
	}
}

func (c *cluster) readCalls(dir string) []fakeCall {
	c.t.Helper()
	f, err := os.Open(filepath.Join(dir, "fake-calls.jsonl"))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		c.t.Fatal(err)
	}
	defer f.Close()
	var out []fakeCall
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var fc fakeCall
		if err := json.Unmarshal(sc.Bytes(), &fc); err != nil {
			c.t.Fatalf("fake-calls.jsonl: %v", err)
		}
		out = append(out, fc)
	}
	return out
}

// session reads a session hash straight from Redis.
func (c *cluster) session(sid string) map[string]string {
	c.t.Helper()
	c.settled()
	h, err := c.rdb.HGetAll(context.Background(), c.keys.Session(sid)).Result()
	if err != nil {
		c.t.Fatal(err)
	}
	return h
}

// settled waits until every replica has settled the turns it answered: a
// turn is settled (and stored) just after its answer, and /debug/auth-pool
// waits for the replica's settles in progress.
func (c *cluster) settled() {
	c.t.Helper()
	for _, r := range c.replicas {
		resp, err := http.Get(r.url + "/debug/auth-pool")
		if err != nil {
			c.t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
	}
}

// debugStatus reads /debug/auth-pool of replica i, keyed by subscription id.
func (c *cluster) debugStatus(i int) map[string]map[string]any {
	c.t.Helper()
	c.settled() // every replica's, not only i's
	resp, err := http.Get(c.replicas[i].url + "/debug/auth-pool")
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Status []map[string]any `json:"status"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != 200 {
		c.t.Fatalf("/debug/auth-pool: %d %v", resp.StatusCode, err)
	}
	out := map[string]map[string]any{}
	for _, s := range body.Status {
		out[s["id"].(string)] = s
	}
	return out
}

// events returns the pool's events of one type.
func (c *cluster) events(typ string) []map[string]any {
	c.t.Helper()
	msgs, err := c.rdb.XRange(context.Background(), c.keys.Events(), "-", "+").Result()
	if err != nil {
		c.t.Fatal(err)
	}
	var out []map[string]any
	for _, m := range msgs {
		if m.Values["type"] == typ {
			out = append(out, m.Values)
		}
	}
	return out
}

// sessionCount counts the pool's session hashes.
func (c *cluster) sessionCount() int {
	c.t.Helper()
	keys, err := c.rdb.Keys(context.Background(), c.keys.Base()+":session:*").Result()
	if err != nil {
		c.t.Fatal(err)
	}
	return len(keys)
}

// post sends a raw request to replica i.
func (c *cluster) post(i int, body string, headers ...string) (*http.Response, []byte) {
	c.t.Helper()
	return c.postTo(i, "/v1/chat/completions", body, headers...)
}

// postTo sends a raw request to a path of replica i.
func (c *cluster) postTo(i int, path, body string, headers ...string) (*http.Response, []byte) {
	c.t.Helper()
	req, err := http.NewRequest("POST", c.replicas[i].url+path, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for j := 0; j+1 < len(headers); j += 2 {
		req.Header.Set(headers[j], headers[j+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	return resp, buf.Bytes()
}
