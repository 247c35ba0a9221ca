package tests

// Helpers of the Redis Cluster and Sentinel tests (issue 14): a pool served
// by gateways and a rebalancer that reach Redis through REDIS_ADDRS rather
// than the shared server's REDIS_URL, a goroutine-safe turn, and the pool's
// invariants read back from Redis. Names start with sc.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/authpool/authpool/internal/redistest"
	"github.com/authpool/authpool/internal/testutil"
	"github.com/authpool/authpool/pkg/lua"
)

// scCap is maxClientsPerSubscription of the scale tests' pools: small, so
// that a storm of sessions fills every subscription to its cap (3 × 7 = 21
// slots: the conversation's session and 20 of the storm) and an allocation
// race would show as a set over it.
const scCap = 7

// scDeploy writes a pool of subs subscriptions (the fake CLI in recall
// mode) and starts gateways cmd/api replicas on it with redisEnv
// (REDIS_ADDRS and friends) in place of REDIS_URL. The returned cluster's
// rdb is unused: reads go through a client of the test's own.
func scDeploy(t *testing.T, poolName string, gateways, subs int, redisEnv []string) *cluster {
	t.Helper()
	c := &cluster{t: t, dir: t.TempDir(), keys: lua.NewKeys(poolName)}
	o := clusterOpts{subs: subs, fallbackOff: true, config: map[string]any{"maxClientsPerSubscription": scCap}}
	subList, cfgPath, backendsPath := c.writeDeployment(c.dir, poolName, o)
	c.subs = subList
	for _, s := range subList {
		c.setMode(s, "recall")
	}
	for i := 0; i < gateways; i++ {
		env := append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + c.dir,
			"AUTH_POOL_CONFIG=" + cfgPath, "BACKENDS_CONFIG=" + backendsPath, "CLAUDE_BIN=" + fakeBin,
			"API_KEYS=" + clientKey, "RATE_LIMIT_PER_MINUTE=0", "LOG_FORMAT=json", "LOG_LEVEL=info",
			"SHUTDOWN_TIMEOUT=5s", tokenVar + "=" + tokenValue,
			"AUTHPOOL_STATE_DIR=" + filepath.Join(c.dir, fmt.Sprintf("state%d", i))}, redisEnv...)
		c.replicas = append(c.replicas, startReplica(t, c.dir, env))
		c.replicaSubs = append(c.replicaSubs, subList)
	}
	return c
}

// scRebalancer starts cmd/rebalancer (built by bin) on the pool config of
// c with redisEnv and waits until it leads: its election ran the promote
// script on the pool's slot.
func scRebalancer(t *testing.T, bin string, c *cluster, redisEnv []string) *rbProc {
	t.Helper()
	port, err := redistest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	id := "rb-" + strings.Trim(strings.TrimPrefix(c.keys.Base(), "authpool:"), "{}")
	p := &rbProc{id: id, port: port, log: &testutil.Buffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin)
	p.cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + c.dir,
		"AUTH_POOL_CONFIG=" + filepath.Join(c.dir, "auth-pool.json"), "PORT=" + strconv.Itoa(port),
		"REPLICA_ID=" + id, "LEADER_LOCK_TTL=" + rbLockTTL.String(), "SHUTDOWN_TIMEOUT=5s",
		"LOG_FORMAT=json", "LOG_LEVEL=info"}, redisEnv...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.kill9()
		if t.Failed() {
			t.Logf("--- %s output ---\n%s", id, p.log.String())
		}
	})
	testutil.Eventually(t, 15*time.Second, id+" to lead", func() bool {
		h, err := p.health()
		return err == nil && h.Leader
	})
	return p
}

var scHTTP = &http.Client{Timeout: 10 * time.Second}

// scTurn sends one chat turn to a gateway of c, naming session sid ("" for
// a new one), and returns the answer and the session the gateway named. It
// reports failures as errors, so that many goroutines may call it.
func scTurn(ctx context.Context, c *cluster, gw int, sid, text string) (answer, session string, err error) {
	body := map[string]any{"model": "sonnet", "messages": []map[string]any{{"role": "user", "content": text}}}
	if sid != "" {
		body["session_id"] = sid
	}
	data, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, "POST", c.replicas[gw].url+"/v1/chat/completions", strings.NewReader(string(data)))
	if err != nil {
		return "", "", err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+clientKey)
	resp, err := scHTTP.Do(req)
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", "", fmt.Errorf("gateway %d: %d %s", gw, resp.StatusCode, strings.TrimSpace(string(raw)))
	}
	var cc struct {
		Choices []struct {
			Message struct{ Content string } `json:"message"`
		} `json:"choices"`
		SessionID string `json:"session_id"`
	}
	if err := json.Unmarshal(raw, &cc); err != nil || len(cc.Choices) == 0 {
		return "", "", fmt.Errorf("gateway %d: answer %q: %v", gw, raw, err)
	}
	return cc.Choices[0].Message.Content, cc.SessionID, nil
}

// scConversation runs the seed's flow across both gateways of c: turn 1
// on gateway 0, turn 2 on gateway 1, turn 3 on gateway 0, and checks that
// the third answer holds the first two turns (the recall fake answers with
// every user line its CLI session saw).
func scConversation(t *testing.T, c *cluster) string {
	t.Helper()
	ctx := context.Background()
	say := []string{"Remember the number 42", "And the word blue", "What did I ask you to remember?"}
	_, sid, err := scTurn(ctx, c, 0, "", say[0])
	if err != nil {
		t.Fatal(err)
	}
	// A turn is settled just after its answer, and the other gateway waits
	// for no settle of this one's: let it land first.
	c.settled()
	if _, _, err := scTurn(ctx, c, 1, sid, say[1]); err != nil {
		t.Fatal(err)
	}
	c.settled()
	got, _, err := scTurn(ctx, c, 0, sid, say[2])
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range say {
		if !strings.Contains(got, want) {
			t.Errorf("turn 3 across gateways = %q, lacks %q", got, want)
		}
	}
	return sid
}

// scInvariants checks the pool's invariants on rdb (a Cluster, Sentinel or
// plain client): every subscription's active sessions within its cap, and
// every session (those in sids and those found in any client set) in
// exactly one client set — the one its session hash names. It returns the
// number of bound sessions.
func scInvariants(t *testing.T, rdb redis.UniversalClient, c *cluster, sids []string) int {
	t.Helper()
	ctx := context.Background()
	now, err := rdb.Time(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	// A client-set score is the time until which the session is active.
	activeAfter := now.UnixMilli()
	in := map[string][]string{} // session → client sets holding it
	for _, s := range c.subs {
		members, err := rdb.ZRangeWithScores(ctx, c.keys.Clients(s.id), 0, -1).Result()
		if err != nil {
			t.Fatal(err)
		}
		active := 0
		for _, m := range members {
			in[m.Member.(string)] = append(in[m.Member.(string)], s.id)
			if int64(m.Score) > activeAfter {
				active++
			}
		}
		if active > scCap {
			t.Errorf("subscription %s has %d active sessions, over its cap %d", s.id, active, scCap)
		}
	}
	for _, sid := range sids {
		if _, ok := in[sid]; !ok {
			in[sid] = nil
		}
	}
	bound := 0
	for sid, sets := range in {
		sub, err := rdb.HGet(ctx, c.keys.Session(sid), "sub").Result()
		if err == redis.Nil {
			if len(sets) > 0 {
				t.Errorf("session %s has no hash but is in client sets %v", sid, sets)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if sub == "" || strings.HasPrefix(sub, "fallback") {
			continue
		}
		bound++
		if len(sets) != 1 || sets[0] != sub {
			t.Errorf("session %s is bound to %s but in client sets %v, want exactly that one", sid, sub, sets)
		}
	}
	return bound
}
