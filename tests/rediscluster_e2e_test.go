package tests

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authpool/authpool/internal/redistest"
	"github.com/authpool/authpool/pkg/lua"
)

// TestRedisClusterE2E (issue 14): a real 3-master Redis Cluster, two pools
// whose slots live on different masters, each served by two gateways and a
// rebalancer that reach the Cluster through REDIS_ADDRS. Each pool takes the
// seed's conversation flow across its two gateways, then a storm of
// concurrent sessions that fills every subscription to its cap; afterwards its invariants hold in Redis (no subscription
// over its cap, every session in exactly one client set).
func TestRedisClusterE2E(t *testing.T) {
	needRedis(t)
	rc := redistest.StartCluster(t, 3)
	ctx := context.Background()

	// Pool names whose hash tags land on two different masters: a pool's
	// every key shares one slot, so its master is its subs key's.
	var pools []string
	masters := map[string]string{}
	for i := 0; len(pools) < 2 && i < 100; i++ {
		name := fmt.Sprintf("scale%d", i)
		addr, err := rc.MasterOf(ctx, lua.NewKeys(name).Subs())
		if err != nil {
			t.Fatal(err)
		}
		if len(pools) == 1 && masters[pools[0]] == addr {
			continue
		}
		pools = append(pools, name)
		masters[name] = addr
	}
	if len(pools) < 2 {
		t.Fatal("no two pool names on different masters")
	}
	t.Logf("pool %s on master %s, pool %s on master %s", pools[0], masters[pools[0]], pools[1], masters[pools[1]])

	env := []string{"REDIS_ADDRS=" + strings.Join(rc.Addrs(), ",")}
	rbBin := rbBuild(t)
	var wg sync.WaitGroup
	deps := make([]*cluster, len(pools))
	for i, name := range pools {
		deps[i] = scDeploy(t, name, 2, 3, env)
		scRebalancer(t, rbBin, deps[i], env)
	}
	convs := make([]string, len(deps))
	for i, c := range deps {
		convs[i] = scConversation(t, c)
	}

	// Both pools at once: 60 requests over 20 sessions each, from 6
	// goroutines per pool, each session's turns in order and spread over
	// both gateways.
	const sessions, perSession, workers = 20, 3, 6
	var failed atomic.Int64
	start := time.Now()
	for p, c := range deps {
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for s := w; s < sessions; s += workers {
					sid := fmt.Sprintf("storm-%d-%d", p, s)
					for turn := 0; turn < perSession; turn++ {
						if _, _, err := scTurn(ctx, c, (s+turn)%2, sid, fmt.Sprintf("turn %d", turn)); err != nil {
							failed.Add(1)
							t.Errorf("pool %s, session %s, turn %d: %v", pools[p], sid, turn, err)
						}
					}
				}
			}()
		}
	}
	wg.Wait()
	t.Logf("storm: %d requests over %d sessions in each of 2 pools in %s, %d failed",
		sessions*perSession, sessions, time.Since(start).Round(time.Millisecond), failed.Load())

	for p, c := range deps {
		sids := []string{convs[p]}
		for s := 0; s < sessions; s++ {
			sids = append(sids, fmt.Sprintf("storm-%d-%d", p, s))
		}
		if bound := scInvariants(t, rc.Client, c, sids); bound != sessions+1 {
			t.Errorf("pool %s: %d sessions bound to a subscription, want %d", pools[p], bound, sessions+1)
		}
		// The pool's keys are where its hash tag says: on its master only.
		n, err := rc.Client.Exists(ctx, c.keys.Subs()).Result()
		if err != nil || n != 1 {
			t.Errorf("pool %s: subscription set missing on the Cluster: %d %v", pools[p], n, err)
		}
	}
}
