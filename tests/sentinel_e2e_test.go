package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/authpool/authpool/internal/redistest"
)

// TestSentinelFailoverE2E (issue 14): two gateways reach a master through
// three sentinels (REDIS_ADDRS, REDIS_MASTER_NAME). The master is killed
// (SIGKILL) while requests run; the sentinels promote the replica and the
// gateways follow it without a restart. The test logs the failures during
// the switch and what asynchronous replication lost (settled requests the
// client saw against the pool's request counters afterwards), then checks
// the pool's invariants and that an emptied subscription set is re-synced.
func TestSentinelFailoverE2E(t *testing.T) {
	needRedis(t)
	const masterName = "m"
	rs := redistest.StartSentinel(t, masterName)
	env := []string{"REDIS_ADDRS=" + strings.Join(rs.SentinelAddrs(), ","), "REDIS_MASTER_NAME=" + masterName}
	rdb := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: masterName, SentinelAddrs: rs.SentinelAddrs()})
	t.Cleanup(func() { _ = rdb.Close() })
	c := scDeploy(t, "sentinel", 2, 3, env)
	conv := scConversation(t, c)

	// 4 goroutines send turns over 16 sessions (both gateways) for 15 s;
	// the master dies 3 s in.
	const workers, sessions = 4, 16
	const runFor, killAt = 15 * time.Second, 3 * time.Second
	var (
		ok, failed      atomic.Int64
		mu              sync.Mutex
		lastFail        time.Time
		killedAt        time.Time
		failuresInOrder []string
		lastOK          time.Time     // the latest answered turn's end
		gap             time.Duration // the longest time without an answer, after the kill
		slowest         time.Duration
	)
	ctx := context.Background()
	stop := time.Now().Add(runFor)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(stop); i++ {
				sid := fmt.Sprintf("fo-%d", (w+i*workers)%sessions)
				rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				t0 := time.Now()
				_, _, err := scTurn(rctx, c, i%2, sid, fmt.Sprintf("turn %d of worker %d", i, w))
				cancel()
				mu.Lock()
				slowest = max(slowest, time.Since(t0))
				if err != nil {
					failed.Add(1)
					lastFail = time.Now()
					if len(failuresInOrder) < 5 {
						failuresInOrder = append(failuresInOrder, err.Error())
					}
					mu.Unlock()
					time.Sleep(50 * time.Millisecond) // a failed turn returns at once; don't spin
					continue
				}
				ok.Add(1)
				now := time.Now()
				if !killedAt.IsZero() && now.After(killedAt) {
					from := lastOK
					if from.Before(killedAt) {
						from = killedAt
					}
					gap = max(gap, now.Sub(from))
				}
				lastOK = now
				mu.Unlock()
			}
		}()
	}
	time.Sleep(killAt)
	old := rs.Master.Addr
	mu.Lock()
	killedAt = time.Now()
	mu.Unlock()
	answeredBefore := ok.Load()
	rs.Master.Kill()
	wg.Wait()

	newMaster, err := rs.CurrentMaster(ctx)
	if err != nil || newMaster == old {
		t.Fatalf("no failover: master %q (was %s), %v", newMaster, old, err)
	}
	mu.Lock()
	lastFailAfter := time.Duration(0)
	if lastFail.After(killedAt) {
		lastFailAfter = lastFail.Sub(killedAt)
	}
	t.Logf("%d turns answered in the %s before the kill", answeredBefore, killAt)
	t.Logf("failover %s -> %s: %d turns answered, %d failed (the last %s after the kill; first errors %q); "+
		"longest time without an answer after the kill %s, slowest turn %s",
		old, newMaster, ok.Load(), failed.Load(), lastFailAfter.Round(time.Millisecond), failuresInOrder,
		gap.Round(time.Millisecond), slowest.Round(time.Millisecond))
	mu.Unlock()
	// A turn may wait through the switch (the client retries) rather than
	// fail; either way the gateways must answer again within seconds.
	if gap > 10*time.Second || lastFailAfter > 10*time.Second {
		t.Errorf("no answers for %s (last failure %s after the kill), want the gateways on the new master within 10 s", gap, lastFailAfter)
	}
	// The gateways serve again, with no restart.
	for gw := range c.replicas {
		if _, _, err := scTurn(ctx, c, gw, fmt.Sprintf("after-%d", gw), "hello again"); err != nil {
			t.Errorf("gateway %d after the failover: %v", gw, err)
		}
	}

	// What asynchronous replication lost: turns the client saw answered
	// (settled) against the subscriptions' request counters now.
	counted := int64(0)
	for _, s := range c.debugStatus(0) {
		counted += int64(s["requests"].(float64))
	}
	sent := ok.Load() + 3 + 2 // the storm, the conversation, the two after the failover
	t.Logf("replication loss: the client saw %d turns answered, the pool counts %d requests (%d lost in the switch)",
		sent, counted, sent-counted)
	if counted > sent {
		t.Errorf("the pool counts %d requests, more than the %d answered", counted, sent)
	}

	sids := []string{conv}
	for i := 0; i < sessions; i++ {
		sids = append(sids, fmt.Sprintf("fo-%d", i))
	}
	scInvariants(t, rdb, c, sids)

	// The config is there on the new master, and an emptied subscription set
	// (as a lost write or an operator's mistake would leave) comes back
	// through the gateways' healer on the next request.
	if n := rdb.SCard(ctx, c.keys.Subs()).Val(); n != int64(len(c.subs)) {
		t.Errorf("subscription set on the new master: %d members, want %d", n, len(c.subs))
	}
	if err := rdb.Del(ctx, c.keys.Subs()).Err(); err != nil {
		t.Fatal(err)
	}
	healStart := time.Now()
	for rdb.SCard(ctx, c.keys.Subs()).Val() != int64(len(c.subs)) {
		if time.Since(healStart) > 2*time.Second {
			t.Fatalf("the emptied subscription set was not re-synced within 2 s")
		}
		_, _, _ = scTurn(ctx, c, 0, "heal", "are you there?")
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("emptied subscription set re-synced in %s", time.Since(healStart).Round(time.Millisecond))
	resp, err := http.Get(c.replicas[1].url + "/ready")
	if err != nil {
		t.Fatal(err)
	}
	var ready map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&ready)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("gateway 1 /ready after the failover: %d %v", resp.StatusCode, ready)
	}
}
