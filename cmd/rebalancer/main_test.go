package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/authpool/authpool/internal/redistest"
	"github.com/authpool/authpool/internal/testutil"
	"github.com/authpool/authpool/pkg/pool"
	"github.com/authpool/authpool/pkg/rebalance"
)

func writePoolConfig(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "auth-pool.json")
	cfg := `{"subscriptions": [
	  {"id": "sub1", "email": "a@example.com", "type": "claude-pro", "configDir": "/tmp/rb-sub1", "weeklyBudget": 100},
	  {"id": "sub2", "email": "b@example.com", "type": "claude-max", "configDir": "/tmp/rb-sub2", "weeklyBudget": 100}],
	 "pool": "runtest", "rebalancing": {"intervalSeconds": 10}}`
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func getJSON(url string, v any) (int, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	return resp.StatusCode, json.NewDecoder(resp.Body).Decode(v)
}

// run on a real Redis: it syncs, leads, answers its endpoints, and on
// cancellation resigns (the leader record is gone) and returns nil.
func TestRunLeadsAnswersAndResigns(t *testing.T) {
	tg := redistest.Real(t)
	port, err := redistest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	e := env(map[string]string{"REDIS_URL": "redis://" + tg.Addr, "AUTH_POOL_CONFIG": writePoolConfig(t),
		"PORT": strconv.Itoa(port), "LEADER_LOCK_TTL": "2s", "REPLICA_ID": "rb-run", "LOG_FORMAT": "json",
		"WEBHOOK_SECRET": "whsec-do-not-log"})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs testutil.Buffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, e, &logs) }()

	var health struct {
		Status  string `json:"status"`
		Replica string `json:"replica"`
		Leader  bool   `json:"leader"`
		Epoch   int64  `json:"epoch"`
	}
	if !testutil.Within(5*time.Second, func() bool {
		code, err := getJSON(base+"/health", &health)
		return err == nil && code == 200 && health.Leader
	}) {
		t.Fatalf("no leadership within 5s: %+v\n%s", health, logs.String())
	}
	if health.Status != "ok" || health.Replica != "rb-run" || health.Epoch < 1 {
		t.Fatalf("/health = %+v", health)
	}
	var ready map[string]string
	if code, err := getJSON(base+"/ready", &ready); err != nil || code != 200 || ready["status"] != "ready" {
		t.Fatalf("/ready = %d %v %v", code, ready, err)
	}
	var leader struct {
		Leader  bool                  `json:"leader"`
		Current *rebalance.LeaderInfo `json:"current"`
	}
	if code, err := getJSON(base+"/leader", &leader); err != nil || code != 200 || !leader.Leader ||
		leader.Current == nil || leader.Current.Holder != "rb-run" || leader.Current.Epoch != health.Epoch {
		t.Fatalf("/leader = %d %+v %v", code, leader, err)
	}

	// The operator's metrics: this replica leads, its first cycle ran.
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"\nauthpool_leader 1\n", `authpool_rebalance_runs_total{result="ok"}`} {
		if !strings.Contains(string(body), want) {
			t.Fatalf("/metrics lacks %q:\n%s", want, body)
		}
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run returned %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("run did not return after cancellation")
	}
	pl, err := pool.NewLeader(tg.Client, "runtest")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := pl.Info(context.Background()); ok {
		t.Fatal("leader record left behind after a graceful shutdown")
	}
	out := logs.String()
	for _, want := range []string{`"message":"Gained leadership"`, `"message":"Lost leadership"`, `"message":"stopped"`} {
		if !strings.Contains(out, want) {
			t.Fatalf("logs lack %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, "whsec-do-not-log") {
		t.Fatal("the webhook secret reached the logs")
	}
}

func TestRunRefusesWithoutAPool(t *testing.T) {
	err := run(context.Background(), nil, env(map[string]string{"REDIS_URL": "redis://127.0.0.1:1",
		"AUTH_POOL_ENABLED": "false"}), &testutil.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "AUTH_POOL_ENABLED=false") {
		t.Fatalf("err = %v", err)
	}
}
