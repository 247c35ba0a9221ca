package pool_test

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/authpool/authpool/internal/pooltest"
	"github.com/authpool/authpool/internal/redistest"
	"github.com/authpool/authpool/pkg/lua"

	. "github.com/authpool/authpool/pkg/pool"
)

var loadOps = flag.Int("pool.ops", 20000, "operations of TestAtomicityUnderLoad (raise for soak runs)")

// TestAtomicityUnderLoad: four Pool values (replicas) and 64 goroutines on a
// real Redis, far more sessions than capacity, mixing new and resumed
// sessions, turns in flight (some never settled, as from a replica that
// died), releases and settles (some retried), with an idle age short enough
// that sessions go idle and come back during the run. A monitor checks the
// invariant — active sessions ≤ cap on every subscription, at every instant
// (issue 10) — from atomic snapshots; afterwards every live session is in
// exactly one client set agreeing with its session hash, and weekly totals
// equal the sum of the distinct settled request ids.
func TestAtomicityUnderLoad(t *testing.T) {
	t.Parallel()
	tg := redistest.Shared(t)
	ctx := context.Background()
	const subsN, capN, sessions, workers = 8, 10, 2000, 64
	cfg := pooltest.Config(subsN, 1e6, capN)
	cfg.IdleAfterSeconds, cfg.StaleAfterSeconds = 1, 60
	replicas := []*Pool{newPool(t, tg, cfg)}
	for i := 1; i < 4; i++ {
		replicas = append(replicas, New(tg.Client, cfg, Options{}))
	}
	k := replicas[0].Keys()

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
			n, err := activeCounts(ctx, tg, k, cfg)
			if err != nil {
				t.Error(err)
				return
			}
			for _, c := range n {
				if c > capN {
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
					req := fmt.Sprintf("req-%d", nextReq.Add(1))
					a, err := p.AllocateTurn(ctx, TurnRequest{SessionID: sid, TurnID: req})
					if err != nil {
						t.Error(err)
						return
					}
					sub := a.Subscription.ID // "" = fallback
					if r.IntN(20) == 0 {
						continue // the replica died mid-turn: the lease runs out by itself
					}
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
		for _, sid := range ids {
			if prev, dup := members[sid]; dup {
				t.Errorf("session %s in two client sets: %s and %s", sid, prev, s.ID)
			}
			members[sid] = s.ID
		}
	}
	if n, err := activeCounts(ctx, tg, k, cfg); err != nil || len(n) != subsN {
		t.Fatalf("active counts at the end: %v %v", n, err)
	} else {
		for id, c := range n {
			if c > capN {
				t.Errorf("%s ends with %d active clients, cap %d", id, c, capN)
			}
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

// activeCounts reads, in one MULTI/EXEC (an atomic snapshot), every client
// set and the Redis clock, and counts each subscription's active sessions
// as the scripts do: a score ("active until": a turn in flight's lease, or
// the last turn's end + the idle age) after now.
func activeCounts(ctx context.Context, tg *redistest.Target, k lua.Keys, cfg *Config) (map[string]int, error) {
	pipe := tg.Client.TxPipeline()
	clock := pipe.Time(ctx)
	sets := map[string]*redis.ZSliceCmd{}
	for _, s := range cfg.Subscriptions {
		sets[s.ID] = pipe.ZRangeWithScores(ctx, k.Clients(s.ID), 0, -1)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, err
	}
	now := float64(clock.Val().UnixMilli())
	out := map[string]int{}
	for id, cmd := range sets {
		for _, z := range cmd.Val() {
			if z.Score > now {
				out[id]++
			}
		}
	}
	return out, nil
}
