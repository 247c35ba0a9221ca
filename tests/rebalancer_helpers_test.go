package tests

// Helpers of the rebalancer end-to-end tests; every name starts with rb so
// they never collide with the gateway tests' helpers in this package.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/authpool/authpool/internal/redistest"
	"github.com/authpool/authpool/internal/testutil"
	"github.com/authpool/authpool/pkg/pool"
	"github.com/authpool/authpool/pkg/rebalance"
)

const (
	rbPool          = "e2e"
	rbSecret        = "whsec-e2e-secret"
	rbLockTTL       = 2 * time.Second
	rbClaimIdle     = 2 * time.Second
	rbIntervalSecs  = 10 // the config's minimum
	rbStartDeadline = 10 * time.Second
)

// rbBuild builds cmd/rebalancer into a temporary directory.
func rbBuild(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "rebalancer")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/authpool/authpool/cmd/rebalancer").CombinedOutput()
	if err != nil {
		t.Fatalf("go build ./cmd/rebalancer: %v\n%s", err, out)
	}
	return bin
}

// rbRedis starts a redis-server of the test's own (it may be restarted).
func rbRedis(t *testing.T) *redistest.Server {
	t.Helper()
	srv, err := redistest.StartServer()
	if err != nil {
		if os.Getenv("REDIS_REQUIRED") == "1" {
			t.Fatalf("redis-server required: %v", err)
		}
		t.Skipf("real Redis unavailable: %v", err)
	}
	t.Cleanup(func() { srv.Stop() })
	return srv
}

// rbConfig writes a pool config with two subscriptions (budget 100 USD each)
// and, when webhookURL is set, usage_threshold rules at the thresholds sent
// to it.
func rbConfig(t *testing.T, webhookURL string, thresholds ...float64) string {
	t.Helper()
	cfg := map[string]any{
		"pool": rbPool,
		"subscriptions": []map[string]any{
			{"id": "sub1", "email": "one@example.com", "type": "claude-pro", "configDir": "/tmp/authpool-e2e-sub1", "weeklyBudget": 100},
			{"id": "sub2", "email": "two@example.com", "type": "claude-max", "configDir": "/tmp/authpool-e2e-sub2", "weeklyBudget": 100},
		},
		"rebalancing": map[string]any{"intervalSeconds": rbIntervalSecs},
	}
	if webhookURL != "" {
		var rules []map[string]any
		for _, th := range thresholds {
			rules = append(rules, map[string]any{"type": "usage_threshold", "threshold": th,
				"channels": []string{"webhook"}, "enabled": true})
		}
		cfg["notifications"] = map[string]any{"rules": rules, "webhookUrl": webhookURL, "allowInsecureWebhooks": true}
	}
	data, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "auth-pool.json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// rbProc is one rebalancer process.
type rbProc struct {
	id   string
	port int
	cmd  *exec.Cmd
	log  *testutil.Buffer
	done chan struct{} // closed when the process has exited
}

// rbStart starts a rebalancer named id on redisAddr with the config at cfgPath.
func rbStart(t *testing.T, bin, id, redisAddr, cfgPath string) *rbProc {
	t.Helper()
	port, err := redistest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	p := &rbProc{id: id, port: port, log: &testutil.Buffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin)
	p.cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"),
		"REDIS_URL=redis://" + redisAddr, "AUTH_POOL_CONFIG=" + cfgPath, "WEBHOOK_SECRET=" + rbSecret,
		"PORT=" + strconv.Itoa(port), "REPLICA_ID=" + id, "LEADER_LOCK_TTL=" + rbLockTTL.String(),
		"NOTIFY_CLAIM_IDLE=" + rbClaimIdle.String(), "SHUTDOWN_TIMEOUT=5s", "LOG_FORMAT=json", "LOG_LEVEL=debug"}
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", id, err)
	}
	go func() {
		_ = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill9()
		if t.Failed() {
			t.Logf("--- %s output ---\n%s", id, p.log.String())
		}
	})
	testutil.Eventually(t, rbStartDeadline, id+" to answer /health", func() bool {
		_, err := p.health()
		return err == nil
	})
	return p
}

func (p *rbProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *rbProc) kill9() {
	if !p.exited() {
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// term sends SIGTERM and waits for the exit; it returns the exit code.
func (p *rbProc) term(t *testing.T) int {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM %s: %v", p.id, err)
	}
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not exit after SIGTERM", p.id)
	}
	return p.cmd.ProcessState.ExitCode()
}

// rbHealth is the /health reply.
type rbHealth struct {
	Status  string `json:"status"`
	Replica string `json:"replica"`
	Leader  bool   `json:"leader"`
	Epoch   int64  `json:"epoch"`
}

func (p *rbProc) health() (rbHealth, error) {
	var h rbHealth
	code, err := rbGet(fmt.Sprintf("http://127.0.0.1:%d/health", p.port), &h)
	if err == nil && code != http.StatusOK {
		err = fmt.Errorf("/health: %d", code)
	}
	return h, err
}

// ready reports whether /ready answers 200.
func (p *rbProc) ready() bool {
	var v map[string]any
	code, err := rbGet(fmt.Sprintf("http://127.0.0.1:%d/ready", p.port), &v)
	return err == nil && code == http.StatusOK
}

func rbGet(url string, v any) (int, error) {
	c := http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	return resp.StatusCode, json.NewDecoder(resp.Body).Decode(v)
}

// rbClient is a client on addr for the test's own reads.
func rbClient(t *testing.T, addr string) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// rbLeader reads the leader record; ok is false when nobody leads or Redis
// does not answer.
func rbLeader(c *redis.Client) (rebalance.LeaderInfo, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	leader, err := pool.NewLeader(c, rbPool)
	if err != nil {
		return rebalance.LeaderInfo{}, false
	}
	info, ok, err := leader.Info(ctx)
	return info, ok && err == nil
}

// rbPair starts Redis and two rebalancers, rb-a and rb-b, and waits for one
// of them to lead. It returns the leader first.
func rbPair(t *testing.T, bin, webhookURL string, thresholds ...float64) (srv *redistest.Server, rdb *redis.Client, leader, standby *rbProc, cfgPath string) {
	t.Helper()
	srv = rbRedis(t)
	rdb = rbClient(t, srv.Addr)
	cfgPath = rbConfig(t, webhookURL, thresholds...)
	a := rbStart(t, bin, "rb-a", srv.Addr, cfgPath)
	b := rbStart(t, bin, "rb-b", srv.Addr, cfgPath)
	var info rebalance.LeaderInfo
	testutil.Eventually(t, rbStartDeadline, "a leader", func() bool {
		var ok bool
		info, ok = rbLeader(rdb)
		return ok
	})
	leader, standby = a, b
	if info.Holder == "rb-b" {
		leader, standby = b, a
	}
	return srv, rdb, leader, standby, cfgPath
}
