package tests

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/authpool/authpool/internal/redistest"
	"github.com/authpool/authpool/internal/testutil"
	"github.com/authpool/authpool/pkg/lua"
	"github.com/authpool/authpool/pkg/notify"
	"github.com/authpool/authpool/pkg/pool"
)

// Two cmd/rebalancer processes on a real redis-server (issue 4, "What it
// must show" 1, 4 and 5).
func TestRebalancerProcesses(t *testing.T) {
	bin := rbBuild(t)
	t.Run("kill -9 of the leader", func(t *testing.T) { rbTestKill(t, bin) })
	t.Run("SIGTERM of the leader", func(t *testing.T) { rbTestTerm(t, bin) })
	t.Run("Redis restarted under both", func(t *testing.T) { rbTestRedisRestart(t, bin) })
	t.Run("usage thresholds reach the webhook once, signed", func(t *testing.T) { rbTestThresholds(t, bin) })
	t.Run("killing the delivering replica loses nothing", func(t *testing.T) { rbTestKillMidDelivery(t, bin) })
}

// The other takes over within the lock expiry plus one interval, with a
// higher epoch.
func rbTestKill(t *testing.T, bin string) {
	_, rdb, leader, standby, _ := rbPair(t, bin, "")
	old, _ := rbLeader(rdb)
	if h, err := leader.health(); err != nil || !h.Leader || h.Epoch != old.Epoch {
		t.Fatalf("leader /health = %+v, %v; record %+v", h, err, old)
	}
	if h, err := standby.health(); err != nil || h.Leader {
		t.Fatalf("standby /health = %+v, %v", h, err)
	}
	leader.kill9()
	took := testutil.Eventually(t, rbLockTTL+rbIntervalSecs*time.Second, "the standby to lead", func() bool {
		info, ok := rbLeader(rdb)
		return ok && info.Holder == standby.id && info.Epoch > old.Epoch
	})
	t.Logf("standby leads %s after kill -9 (lock TTL %s)", took, rbLockTTL)
	info, _ := rbLeader(rdb)
	if h, err := standby.health(); err != nil || !h.Leader || h.Epoch != info.Epoch {
		t.Fatalf("new leader /health = %+v, %v; record %+v", h, err, info)
	}
}

// The leader resigns on SIGTERM: the other leads within 2 s.
func rbTestTerm(t *testing.T, bin string) {
	_, rdb, leader, standby, _ := rbPair(t, bin, "")
	old, _ := rbLeader(rdb)
	start := time.Now()
	if code := leader.term(t); code != 0 {
		t.Fatalf("exit code %d after SIGTERM", code)
	}
	testutil.Eventually(t, 2*time.Second-time.Since(start), "the standby to lead", func() bool {
		info, ok := rbLeader(rdb)
		return ok && info.Holder == standby.id && info.Epoch > old.Epoch
	})
	t.Logf("standby leads %s after SIGTERM", time.Since(start))
}

// Both reconnect and one leads again, without a restart of their own.
func rbTestRedisRestart(t *testing.T, bin string) {
	srv, rdb, leader, standby, _ := rbPair(t, bin, "")
	srv.Stop()
	testutil.Eventually(t, 2*rbLockTTL, "the leader to step down", func() bool {
		h, err := leader.health()
		return err == nil && !h.Leader
	})
	srv, err := redistest.StartServerOnPort(srv.Port)
	if err != nil {
		t.Fatalf("restart redis: %v", err)
	}
	t.Cleanup(func() { srv.Stop() })
	took := testutil.Eventually(t, 15*time.Second, "a leader after the restart", func() bool {
		_, ok := rbLeader(rdb)
		return ok
	})
	t.Logf("leader again %s after the restarted Redis answered", took)
	testutil.Eventually(t, 5*time.Second, "both ready and exactly one leading", func() bool {
		ha, errA := leader.health()
		hb, errB := standby.health()
		return errA == nil && errB == nil && ha.Leader != hb.Leader && leader.ready() && standby.ready()
	})
	if leader.exited() || standby.exited() {
		t.Fatal("a rebalancer exited while Redis was away")
	}
}

// rbReceiver is a loopback webhook receiver that verifies signatures with
// the shared secret, as an operator's receiver would.
type rbReceiver struct {
	mu       sync.Mutex
	got      []notify.Payload // delivered (answered 200), signature verified
	badSigs  int
	attempts map[string]int // event id -> requests
	// block, when set, holds the first request until its sender goes away.
	block   bool
	blocked chan string
}

func newRBReceiver(block bool) *rbReceiver {
	return &rbReceiver{attempts: map[string]int{}, block: block, blocked: make(chan string, 1)}
}

func (rc *rbReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var p notify.Payload
	_ = json.Unmarshal(body, &p)
	mac := hmac.New(sha256.New, []byte(rbSecret))
	mac.Write(body)
	valid := hmac.Equal([]byte(r.Header.Get("X-AuthPool-Signature")), []byte("sha256="+hex.EncodeToString(mac.Sum(nil))))

	rc.mu.Lock()
	rc.attempts[p.ID]++
	first := len(rc.attempts) == 1 && rc.attempts[p.ID] == 1
	if rc.block && first {
		rc.mu.Unlock()
		rc.blocked <- p.ID
		<-r.Context().Done() // until the sender dies
		return
	}
	defer rc.mu.Unlock()
	if !valid {
		rc.badSigs++
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	rc.got = append(rc.got, p)
	w.WriteHeader(http.StatusOK)
}

func (rc *rbReceiver) delivered() []notify.Payload {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]notify.Payload(nil), rc.got...)
}

// rbSettle records usage on sub1 the way a gateway replica does.
func rbSettle(t *testing.T, rdb *redis.Client, cfgPath, requestID string, cost float64) {
	t.Helper()
	cfg, err := pool.LoadConfig(cfgPath, pool.Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	p := pool.New(rdb, cfg, pool.Options{})
	if _, err := p.Settle(context.Background(), pool.Usage{RequestID: requestID, SubscriptionID: "sub1", CostUSD: cost}); err != nil {
		t.Fatalf("settle %s: %v", requestID, err)
	}
}

// Crossing 80% and then 90% of the weekly budget sends exactly one
// usage_threshold each, signed with WEBHOOK_SECRET; more usage above 90%
// sends nothing new.
func rbTestThresholds(t *testing.T, bin string) {
	rc := newRBReceiver(false)
	hook := httptest.NewServer(rc)
	t.Cleanup(hook.Close)
	_, rdb, _, _, cfgPath := rbPair(t, bin, hook.URL+"/hook", 0.8, 0.9)

	rbSettle(t, rdb, cfgPath, "req-1", 81) // 81% of 100 USD
	rbSettle(t, rdb, cfgPath, "req-2", 10) // 91%
	rbSettle(t, rdb, cfgPath, "req-3", 2)  // 93%: no new crossing
	testutil.Eventually(t, 10*time.Second, "two deliveries", func() bool { return len(rc.delivered()) >= 2 })
	time.Sleep(time.Second) // room for a duplicate to show up
	got := rc.delivered()
	if len(got) != 2 || rc.badSigs != 0 {
		t.Fatalf("delivered %d (bad signatures %d): %+v", len(got), rc.badSigs, got)
	}
	seen := map[float64]bool{}
	for _, p := range got {
		var data struct {
			Threshold    float64 `json:"threshold"`
			WeeklyBudget float64 `json:"weeklyBudget"`
		}
		if err := json.Unmarshal(p.Data, &data); err != nil {
			t.Fatalf("data of %s: %v", p.ID, err)
		}
		if p.Type != notify.TypeUsageThreshold || p.SubscriptionID != "sub1" || p.ID == "" ||
			p.Timestamp == "" || p.Message == "" || data.WeeklyBudget != 100 {
			t.Fatalf("payload %+v (data %s)", p, p.Data)
		}
		seen[data.Threshold] = true
	}
	if !seen[0.8] || !seen[0.9] {
		t.Fatalf("thresholds delivered: %v, want 0.8 and 0.9", seen)
	}
}

// The replica delivering an event is killed while the receiver holds the
// request: the other replica takes the event over and delivers it.
func rbTestKillMidDelivery(t *testing.T, bin string) {
	rc := newRBReceiver(true)
	hook := httptest.NewServer(rc)
	t.Cleanup(hook.Close)
	_, rdb, a, b, cfgPath := rbPair(t, bin, hook.URL+"/hook", 0.8)

	rbSettle(t, rdb, cfgPath, "req-1", 85)
	var id string
	select {
	case id = <-rc.blocked:
	case <-time.After(10 * time.Second):
		t.Fatal("no delivery attempt reached the receiver")
	}
	pending, err := rdb.XPendingExt(context.Background(), &redis.XPendingExtArgs{
		Stream: lua.NewKeys(rbPool).Events(), Group: notify.DefaultGroup, Start: id, End: id, Count: 1}).Result()
	if err != nil || len(pending) != 1 {
		t.Fatalf("pending entry %s: %v, %v", id, pending, err)
	}
	delivering, other := a, b
	if pending[0].Consumer == b.id {
		delivering, other = b, a
	}
	delivering.kill9()
	took := testutil.Eventually(t, rbClaimIdle+10*time.Second, "the other replica to deliver", func() bool {
		return len(rc.delivered()) > 0
	})
	t.Logf("%s delivered event %s %s after %s was killed", other.id, id, took, delivering.id)
	got := rc.delivered()
	if len(got) != 1 || got[0].ID != id {
		t.Fatalf("delivered %+v, want event %s once", got, id)
	}
	testutil.Eventually(t, 5*time.Second, "the event acknowledged", func() bool {
		s, err := rdb.XPending(context.Background(), lua.NewKeys(rbPool).Events(), notify.DefaultGroup).Result()
		return err == nil && s.Count == 0
	})
}

// Issue 8, finding 9: a standby started just before the leader's SIGTERM
// leads within 2 s, in 20 runs of 20 (one Redis, flushed between runs; the
// standby starts 0 to 0.8 s before the signal). The resigning leader's hint
// wakes it: before the hint, a standby only tried again on its 500 ms timer,
// so the handover took anywhere up to that (measured: median 257 ms); with
// it, at least 15 of the 20 handovers take under 100 ms from the signal (the
// timer alone manages that about once in five, 15 times of 20 about once in
// ten million).
func TestRebalancerSIGTERMHandover(t *testing.T) {
	const runs, quick = 20, 100 * time.Millisecond
	bin := rbBuild(t)
	srv := rbRedis(t)
	rdb := rbClient(t, srv.Addr)
	cfgPath := rbConfig(t, "")
	var took []time.Duration
	for i := 0; i < runs; i++ {
		if err := rdb.FlushAll(context.Background()).Err(); err != nil {
			t.Fatal(err)
		}
		leader := rbStart(t, bin, fmt.Sprintf("rb-a%02d", i), srv.Addr, cfgPath)
		testutil.Eventually(t, rbStartDeadline, "a leader", func() bool {
			info, ok := rbLeader(rdb)
			return ok && info.Holder == leader.id
		})
		old, _ := rbLeader(rdb)
		standby := rbStart(t, bin, fmt.Sprintf("rb-b%02d", i), srv.Addr, cfgPath)
		time.Sleep(time.Duration(i%5) * 200 * time.Millisecond)

		start := time.Now()
		if err := leader.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		for {
			info, ok := rbLeader(rdb)
			if ok && info.Holder == standby.id && info.Epoch > old.Epoch {
				break
			}
			if time.Since(start) > 2*time.Second {
				t.Fatalf("run %d: the standby did not lead within 2 s of the leader's SIGTERM (leader exited: %v)",
					i, leader.exited())
			}
			time.Sleep(2 * time.Millisecond)
		}
		took = append(took, time.Since(start))
		select {
		case <-leader.done:
		case <-time.After(10 * time.Second):
			t.Fatalf("run %d: the leader did not exit after SIGTERM", i)
		}
		if code := leader.cmd.ProcessState.ExitCode(); code != 0 {
			t.Fatalf("run %d: leader exit code %d after SIGTERM", i, code)
		}
		standby.kill9()
	}
	n := 0
	for _, d := range took {
		if d < quick {
			n++
		}
	}
	slices.Sort(took)
	t.Logf("handovers after SIGTERM: fastest %s, median %s, slowest %s", took[0], took[len(took)/2], took[len(took)-1])
	if n < 15 {
		t.Fatalf("%d of %d handovers under %s, want at least 15: the standby waits for its timer", n, runs, quick)
	}
}
