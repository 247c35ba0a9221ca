package tests

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/authpool/authpool/internal/testutil"
)

// TestMetricsAfterTraffic (issue 5, "must show" 2): a gateway process and a
// rebalancer process on one redis-server serve real traffic — a usage-limit
// answer that moves a session, a resumed turn, a fallback — and then each
// /metrics shows every metric of the production guide with the values that
// traffic implies.
func TestMetricsAfterTraffic(t *testing.T) {
	api := newMessagesAPI(t)
	c := startCluster(t, clusterOpts{replicas: 1, fallbackURL: api.srv.URL,
		modes: map[string]string{"sub1": "limit-epoch 7200"}})
	client := c.replicas[0].client(clientKey)

	// 1: bound to sub1, which answers with a usage limit; moved to sub2.
	if _, _, err := ask(t, client, "metrics-a", "one"); err != nil {
		t.Fatal(err)
	}
	// 2: resumed on sub2.
	if _, _, err := ask(t, client, "metrics-a", "two"); err != nil {
		t.Fatal(err)
	}
	// 3: sub2 hits its limit too; the turn goes to the fallback.
	c.setMode(c.sub("sub2"), "limit-epoch 7200")
	_, hr, err := ask(t, client, "metrics-b", "three")
	if err != nil {
		t.Fatal(err)
	}
	if got := hr.Header.Get("X-AuthPool-Allocation"); got != "fallback" || len(api.seen()) != 1 {
		t.Fatalf("third turn via %q, fallback saw %d requests", got, len(api.seen()))
	}

	gw := testutil.Scrape(t, c.replicas[0].url+"/metrics")
	exact := map[string]float64{
		`authpool_allocations_total{priority="normal",result="resumed"}`:           1,
		`authpool_allocations_total{priority="normal",result="fallback"}`:          1,
		`authpool_settlements_total{result="settled"}`:                             5, // 3 answers and the 2 turns that hit a limit
		`authpool_http_requests_total{code="200",route="/v1/chat/completions"}`:    3,
		`authpool_subscription_weekly_budget_usd{subscription="sub1"}`:             100,
		`authpool_subscription_status{status="limited",subscription="sub1"}`:       1,
		`authpool_subscription_status{status="available",subscription="sub1"}`:     0,
		`authpool_subscription_status{status="limited",subscription="sub2"}`:       1,
		`authpool_backend_errors_total{backend="claude-cli-sub1",kind="complete"}`: 1,
		`authpool_backend_errors_total{backend="claude-cli-sub2",kind="complete"}`: 1,
	}
	for k, want := range exact {
		if got, ok := gw[k]; !ok || got != want {
			t.Errorf("gateway %s = %v (present %v), want %v", k, got, ok, want)
		}
	}
	atLeast := map[string]float64{
		// metrics-a twice (sub1, then sub2 after the limit), metrics-b on sub2.
		`authpool_allocations_total{priority="normal",result="bound"}`: 3,
		`authpool_allocation_duration_seconds_count`:                   5,
		`authpool_failovers_total{reason="all_unavailable"}`:           1,
		`authpool_rotations_total`:                                     1,
		`authpool_subscription_weekly_used_usd{subscription="sub2"}`:   0.0123, // the fake CLI's cost per answer
		`authpool_subscription_block_cost_usd{subscription="sub2"}`:    0.0123,
		`authpool_subscription_clients{subscription="sub2"}`:           1,
		`authpool_backend_request_duration_seconds_count`:              5, // 2 limit answers, 2 answers, 1 fallback
		`process_resident_memory_bytes`:                                1 << 20,
		`go_memstats_heap_alloc_bytes`:                                 1,
	}
	for k, min := range atLeast {
		if got := testutil.Sum(gw, k); got < min {
			t.Errorf("gateway %s = %v, want at least %v", k, got, min)
		}
	}
	for _, k := range []string{`authpool_subscription_health_score{subscription="sub1"}`,
		`authpool_subscription_health_score{subscription="sub2"}`} {
		if v, ok := gw[k]; !ok || v < 0 || v > 100 {
			t.Errorf("gateway %s = %v (present %v), want 0..100", k, v, ok)
		}
	}
	if _, ok := gw[`authpool_subscription_burn_rate_usd_per_hour{subscription="sub2"}`]; !ok {
		t.Errorf("gateway lacks the burn rate of sub2")
	}
	if used := gw[`authpool_subscription_weekly_used_usd{subscription="sub1"}`]; used != 0 {
		t.Errorf("sub1 weekly used = %v: a limit answer must cost nothing", used)
	}

	// The rebalancer: it leads, runs a cycle at once and delivers the two
	// limit_reached events to the log channel.
	rb := rbStart(t, rbBuild(t), "metrics-rb", redisAddr, filepath.Join(c.dir, "auth-pool.json"))
	var rm map[string]float64
	if !testutil.Poll(15*time.Second, 200*time.Millisecond, func() bool {
		rm = testutil.Scrape(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", rb.port))
		return rm["authpool_leader"] == 1 && testutil.Sum(rm, "authpool_rebalance_runs_total") >= 1 &&
			rm[`authpool_notifications_total{channel="log",result="delivered",type="limit_reached"}`] >= 2
	}) {
		t.Fatalf("rebalancer metrics never showed a leader, a run and 2 deliveries:\n%v", rm)
	}
	if rm[`authpool_rebalance_runs_total{result="ok"}`] < 1 {
		t.Errorf("rebalance runs = %v, want an ok one", rm)
	}
	if _, ok := rm["authpool_rebalance_moves_total"]; !ok {
		t.Errorf("rebalancer lacks authpool_rebalance_moves_total")
	}
	if testutil.Sum(rm, "authpool_rebalance_duration_seconds_count") < 1 {
		t.Errorf("rebalancer lacks run durations")
	}
}
