package pool

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authpool/authpool/internal/redistest"
)

var loadOps = flag.Int("pool.ops", 20000, "operations of TestAtomicityUnderLoad (raise for soak runs)")

// TestAtomicityUnderLoad: four Pool values (replicas) and 64 goroutines on a
// real Redis, far more sessions than capacity, mixing new and resumed
// sessions, releases and settles (some retried). A monitor checks the caps
// during the run; afterwards every live session is in exactly one client set
// agreeing with its session hash, and weekly totals equal the sum of the
// distinct settled request ids.
func TestAtomicityUnderLoad(t *testing.T) {
	tg := redistest.Real(t)
	ctx := context.Background()
	const subsN, capN, sessions, workers = 8, 10, 2000, 64
	cfg := testConfig(subsN, 1e6, capN)
	replicas := []*Pool{newPool(t, tg, cfg)}
	for i := 1; i < 4; i++ {
		replicas = append(replicas, New(tg.Client, cfg, Options{}))
	}
	k := replicas[0].keys

	var (
		ops       atomic.Int64
		overCap   atomic.Int64
		mu        sync.Mutex
		ledger    = map[string]int64{} // request id -> micro-USD, each once
		perSub    = map[string]int64{} // sub -> micro-USD of distinct requests
		nextReq   atomic.Int64
		stop      = make(chan struct{})
		monitorWG sync.WaitGroup
	)
	monitorWG.Add(1)
	go func() { // caps are checked while the load runs
		defer monitorWG.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			pipe := tg.Client.Pipeline()
			cmds := make([]interface{ Val() int64 }, 0, subsN)
			for _, s := range cfg.Subscriptions {
				cmds = append(cmds, pipe.ZCard(ctx, k.Clients(s.ID)))
			}
			if _, err := pipe.Exec(ctx); err != nil {
				t.Error(err)
				return
			}
			for _, c := range cmds {
				if c.Val() > capN {
					overCap.Add(1)
				}
			}
			time.Sleep(time.Millisecond)
		}
	}()

	total := int64(*loadOps)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			p := replicas[w%len(replicas)]
			r := rand.New(rand.NewPCG(uint64(w), 7))
			for ops.Add(1) <= total {
				sid := fmt.Sprintf("load-%04d", r.IntN(sessions))
				switch x := r.IntN(100); {
				case x < 15:
					if _, err := p.Release(ctx, sid); err != nil && err != ErrSessionNotFound {
						t.Error(err)
						return
					}
				default:
					a, err := p.Allocate(ctx, sid, PriorityNormal)
					if err != nil {
						t.Error(err)
						return
					}
					sub := a.Subscription.ID // "" = fallback
					req := fmt.Sprintf("req-%d", nextReq.Add(1))
					micros := int64(1 + r.IntN(5000))
					u := Usage{RequestID: req, SubscriptionID: sub, SessionID: sid, CostUSD: float64(micros) / 1e6,
						InputTokens: 3, OutputTokens: 2}
					tries := 1
					if r.IntN(10) == 0 {
						tries = 2 // a retried settle, possibly from another replica
					}
					for i := 0; i < tries; i++ {
						q := replicas[(w+i)%len(replicas)]
						if _, err := q.Settle(ctx, u); err != nil {
							t.Error(err)
							return
						}
					}
					mu.Lock()
					ledger[req] = micros
					perSub[sub] += micros
					mu.Unlock()
				}
			}
		}(w)
	}
	wg.Wait()
	close(stop)
	monitorWG.Wait()
	if n := overCap.Load(); n > 0 {
		t.Fatalf("a subscription was seen above its cap %d times during the run", n)
	}

	// Every live session hash agrees with exactly one client set.
	members := map[string]string{}
	for _, s := range cfg.Subscriptions {
		ids, err := tg.Client.ZRange(ctx, k.Clients(s.ID), 0, -1).Result()
		if err != nil {
			t.Fatal(err)
		}
		if len(ids) > capN {
			t.Errorf("%s ends with %d clients, cap %d", s.ID, len(ids), capN)
		}
		for _, sid := range ids {
			if prev, dup := members[sid]; dup {
				t.Errorf("session %s in two client sets: %s and %s", sid, prev, s.ID)
			}
			members[sid] = s.ID
		}
	}
	bound := 0
	for i := 0; i < sessions; i++ {
		sid := fmt.Sprintf("load-%04d", i)
		sub, err := tg.Client.HGet(ctx, k.Session(sid), "sub").Result()
		if err != nil || sub == "" {
			if m, ok := members[sid]; ok {
				t.Errorf("session %s in %s's client set without a binding", sid, m)
			}
			continue
		}
		bound++
		if members[sid] != sub {
			t.Errorf("session %s says %s, client sets say %q", sid, sub, members[sid])
		}
	}
	if bound != len(members) {
		t.Errorf("%d bound sessions, %d client-set members", bound, len(members))
	}

	// Weekly totals equal the sum of distinct settled request ids.
	snap, err := replicas[1].Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range snap.Subscriptions {
		got := int64(s.WeeklyUsed*1e6 + 0.5)
		if got != perSub[s.ID] {
			t.Errorf("%s weekly %d µUSD, ledger %d µUSD", s.ID, got, perSub[s.ID])
		}
	}
	fb, _ := tg.Client.HGet(ctx, k.Fallback(), "weeklyUsed").Float64()
	if got := int64(fb*1e6 + 0.5); got != perSub[""] {
		t.Errorf("fallback weekly %d µUSD, ledger %d", got, perSub[""])
	}
	if n, _ := tg.Client.XLen(ctx, k.Usage()).Result(); n != int64(len(ledger)) {
		t.Errorf("usage stream %d entries, %d distinct requests", n, len(ledger))
	}
	t.Logf("%d ops, %d distinct settles, %d live bound sessions, fallback %.6f USD", total, len(ledger), bound, fb)
}
