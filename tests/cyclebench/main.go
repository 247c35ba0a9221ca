// Command cyclebench measures the rebalancer's cycle — Maintain, then
// Rebalance, the pool's fenced methods called with the leader's epoch — on
// a real redis-server it starts itself and fills with many subscriptions
// and sessions (issue 14). It reports per-cycle wall time and the longest
// single script call, both as ratios against a trivial EVALSHA measured in
// the same run and as absolute figures.
//
// The fill binds the first -allocate sessions through the pool's own
// allocate script (Pool.Allocate from many goroutines), which also measures
// the new-bind rate at this many subscriptions; the rest are a faithful
// direct write of the same keys (pipelined): the session hash with the
// fields and TTL allocate.lua writes on a new binding (its owner copied from
// a session allocate bound) and the member in the client set, spread over
// the subscriptions as allocate's tie-break (fewer clients) spreads them.
// allocate at 100 subscriptions binds only some hundreds of sessions a
// second on 2 CPUs, too slow to bind 100k in minutes. The client-set scores
// are then rewritten (ZADD XX), to age the sessions into the mix a day of
// traffic leaves: most idle, some stale, a few active — a fresh fill would
// leave every session active and the cycle nothing to do.
//
//	go run ./tests/cyclebench                    # prints the Markdown section
//	go run ./tests/cyclebench -out BENCHMARKS.md
//	go run ./tests/cyclebench -sessions 10000    # a quicker, smaller run
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/authpool/authpool/internal/benchdoc"
	"github.com/authpool/authpool/internal/redistest"
	"github.com/authpool/authpool/pkg/lua"
	"github.com/authpool/authpool/pkg/pool"
)

// The targets for one cycle and one script call.
const (
	targetCycle  = 50 * time.Millisecond
	targetScript = 5 * time.Millisecond
)

type params struct {
	subs, sessions, cycles, conc int
	allocate                     int
	stalePct, activePct          int
	out                          string
}

func main() {
	var p params
	flag.IntVar(&p.subs, "subs", 100, "subscriptions")
	flag.IntVar(&p.sessions, "sessions", 100000, "sessions, spread over the subscriptions by allocate")
	flag.IntVar(&p.allocate, "allocate", 2000, "sessions bound through allocate; the rest are written directly")
	flag.IntVar(&p.cycles, "cycles", 20, "Maintain+Rebalance cycles measured")
	flag.IntVar(&p.conc, "c", 64, "concurrent callers during the fill")
	flag.IntVar(&p.stalePct, "stale", 5, "percent of sessions aged past staleAfterSeconds (the first Maintain drops them)")
	flag.IntVar(&p.activePct, "active", 5, "percent of sessions left active; the rest are idle")
	flag.StringVar(&p.out, "out", "", "write the report into this Markdown file (replacing its cyclebench section)")
	flag.Parse()
	if err := run(p); err != nil {
		fmt.Fprintln(os.Stderr, "cyclebench:", err)
		os.Exit(1)
	}
}

// scriptTimer times every EVALSHA/EVAL the client sends (send to reply, on
// loopback): the longest single script call of a phase, seen from the
// caller.
type scriptTimer struct {
	mu    sync.Mutex
	calls []time.Duration
}

func (s *scriptTimer) DialHook(next redis.DialHook) redis.DialHook { return next }
func (s *scriptTimer) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
func (s *scriptTimer) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		name := cmd.Name()
		if name != "evalsha" && name != "eval" {
			return next(ctx, cmd)
		}
		t0 := time.Now()
		err := next(ctx, cmd)
		d := time.Since(t0)
		s.mu.Lock()
		s.calls = append(s.calls, d)
		s.mu.Unlock()
		return err
	}
}

// take returns the calls timed since the last take, and forgets them.
func (s *scriptTimer) take() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.calls
	s.calls = nil
	return out
}

var _ redis.Hook = (*scriptTimer)(nil)

func config(p params) *pool.Config {
	cfg := &pool.Config{MaxClientsPerSubscription: p.sessions, WeeklyBudgetThreshold: 0.85}
	for i := 0; i < p.subs; i++ {
		cfg.Subscriptions = append(cfg.Subscriptions, pool.SubscriptionConfig{
			ID: fmt.Sprintf("sub%03d", i), Email: fmt.Sprintf("u%d@example.com", i), Type: "claude-max",
			ConfigDir: fmt.Sprintf("/srv/claude/sub%03d", i), WeeklyBudget: 1000})
	}
	return cfg
}

// cycle is one measured Maintain+Rebalance pass.
type cycle struct {
	maintain, rebalance time.Duration
	// longest single script call of each phase: by the client's timer and
	// by SLOWLOG (Redis' own execution time, without the round trip).
	maintainScript, rebalanceScript time.Duration
	maintainSlow, rebalanceSlow     time.Duration
	dropped, moved                  int
}

func (c cycle) wall() time.Duration { return c.maintain + c.rebalance }

func run(p params) error {
	ctx := context.Background()
	srv, err := redistest.StartServer()
	if err != nil {
		return err
	}
	defer srv.Stop()
	timer := &scriptTimer{}
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, PoolSize: p.conc * 2})
	defer rdb.Close()
	rdb.AddHook(timer)

	cfg := config(p)
	pl := pool.New(rdb, cfg, pool.Options{})
	if err := pl.Sync(ctx); err != nil {
		return err
	}

	// Fill through allocate, from many goroutines.
	before, err := benchdoc.UsedMemory(ctx, rdb)
	if err != nil {
		return err
	}
	// Redis' own time per new binding, apart from the client's share of
	// the 2 CPUs: the mean from INFO commandstats, the longest from
	// SLOWLOG. SLOWLOG logs from slowlogMicros on, not every command: at 0
	// it would also log (and spend time logging) each command a script
	// runs, which inflates the script's own figure.
	if err := rdb.ConfigSet(ctx, "slowlog-log-slower-than", slowlogMicros).Err(); err != nil {
		return err
	}
	if err := rdb.ConfigResetStat(ctx).Err(); err != nil {
		return err
	}
	if err := rdb.ConfigSet(ctx, "slowlog-max-len", "100000").Err(); err != nil {
		return err
	}
	if err := rdb.SlowLogReset(ctx).Err(); err != nil {
		return err
	}
	fillStart := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	var fillErr atomic.Value
	for w := 0; w < p.conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				n := next.Add(1) - 1
				if n >= int64(min(p.allocate, p.sessions)) {
					return
				}
				if _, err := pl.Allocate(ctx, sessionID(n), pool.PriorityNormal); err != nil {
					fillErr.CompareAndSwap(nil, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if e := fillErr.Load(); e != nil {
		return fmt.Errorf("fill: %w", e.(error))
	}
	fillAllocate := time.Since(fillStart)
	allocated := min(p.allocate, p.sessions)
	allocMean, allocMax, err := evalshaStats(ctx, rdb)
	if err != nil {
		return err
	}
	// SLOWLOG keeps every command's arguments: off and emptied before the
	// memory is read, on again for the cycles.
	if err := rdb.ConfigSet(ctx, "slowlog-log-slower-than", "-1").Err(); err != nil {
		return err
	}
	if err := rdb.SlowLogReset(ctx).Err(); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "bound %d sessions over %d subscriptions by allocate in %s\n", allocated, p.subs, fillAllocate.Round(time.Millisecond))
	keys := lua.NewKeys(pl.Config().Pool)
	directStart := time.Now()
	if err := fillDirect(ctx, rdb, pl.Config(), keys, allocated, p.sessions); err != nil {
		return err
	}
	fillDirectTime := time.Since(directStart)
	after, err := benchdoc.UsedMemory(ctx, rdb)
	if err != nil {
		return err
	}
	timer.take()

	// Age the client-set scores ("active until": the last turn's end + the
	// idle age): stalePct past the stale age, activePct left as they are,
	// the rest idle (past the idle age, short of stale).
	ageStart := time.Now()
	nowMS := time.Now().UnixMilli()
	idleMS := int64(pl.Config().IdleAfterSeconds) * 1000
	staleMS := int64(pl.Config().StaleAfterSeconds) * 1000
	stale, active := 0, 0
	const batch = 2000
	for start := 0; start < p.sessions; start += batch {
		sids := make([]string, 0, batch)
		for n := start; n < min(start+batch, p.sessions); n++ {
			sids = append(sids, sessionID(int64(n)))
		}
		pipe := rdb.Pipeline()
		subsOf := make([]*redis.StringCmd, len(sids))
		for i, sid := range sids {
			subsOf[i] = pipe.HGet(ctx, keys.Session(sid), "sub")
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return fmt.Errorf("age: read bindings: %w", err)
		}
		pipe = rdb.Pipeline()
		for i, sid := range sids {
			n := start + i
			var score int64
			// By n / subs, not n: fillDirect picks the subscription by
			// n % subs, and every subscription needs every age.
			switch pct := (n / p.subs) % 100; {
			case pct < p.stalePct:
				score, stale = nowMS-staleMS-60_000-int64(n%1000)+idleMS, stale+1
			case pct < p.stalePct+p.activePct:
				active++
				continue
			default:
				score = nowMS - 60_000 - int64(n%1000)*1000
			}
			pipe.ZAddXX(ctx, keys.Clients(subsOf[i].Val()), redis.Z{Score: float64(score), Member: sid})
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return fmt.Errorf("age: %w", err)
		}
	}
	fillAge := time.Since(ageStart)

	// A weekly-usage gap between two subscriptions, so Rebalance has moves
	// to make every cycle, settled through the pool's settle script.
	if _, err := pl.Settle(ctx, pool.Usage{RequestID: "gap-1", SubscriptionID: "sub000", SessionID: sessionID(0),
		CostUSD: 100, InputTokens: 1, OutputTokens: 1, Model: "claude-sonnet-4-5"}); err != nil {
		return fmt.Errorf("settle the gap: %w", err)
	}

	// The reference: a trivial EVALSHA, sequential, as the cycle's calls are.
	trivial := redis.NewScript("return 1")
	if err := trivial.Load(ctx, rdb).Err(); err != nil {
		return err
	}
	refMean, refMax, err := trivialRef(ctx, rdb, trivial, timer)
	if err != nil {
		return err
	}

	epoch, err := pl.NextEpoch(ctx)
	if err != nil {
		return err
	}
	if err := rdb.ConfigSet(ctx, "slowlog-log-slower-than", slowlogMicros).Err(); err != nil {
		return err
	}
	var cycles []cycle
	for i := 0; i < p.cycles; i++ {
		var c cycle
		if err := rdb.SlowLogReset(ctx).Err(); err != nil {
			return err
		}
		timer.take()
		t0 := time.Now()
		mr, err := pl.Maintain(ctx, epoch)
		if err != nil {
			return fmt.Errorf("maintain: %w", err)
		}
		c.maintain, c.dropped = time.Since(t0), mr.DroppedClients
		c.maintainScript = longest(timer.take())
		if c.maintainSlow, err = slowest(ctx, rdb); err != nil {
			return err
		}
		if err := rdb.SlowLogReset(ctx).Err(); err != nil {
			return err
		}
		t0 = time.Now()
		rr, err := pl.Rebalance(ctx, epoch)
		if err != nil {
			return fmt.Errorf("rebalance: %w", err)
		}
		c.rebalance, c.moved = time.Since(t0), rr.Moved
		c.rebalanceScript = longest(timer.take())
		if c.rebalanceSlow, err = slowest(ctx, rdb); err != nil {
			return err
		}
		cycles = append(cycles, c)
		fmt.Fprintf(os.Stderr, "cycle %2d: maintain %v (script %v, slowlog %v, dropped %d)  rebalance %v (script %v, slowlog %v, moved %d)\n",
			i, c.maintain, c.maintainScript, c.maintainSlow, c.dropped, c.rebalance, c.rebalanceScript, c.rebalanceSlow, c.moved)
	}
	redisV, _ := benchdoc.RedisVersion(ctx, rdb)
	report := render(p, renderIn{cycles: cycles, refMean: refMean, refMax: refMax, fillAllocate: fillAllocate,
		allocated: allocated, fillDirect: fillDirectTime, allocMean: allocMean, allocMax: allocMax,
		fillAge: fillAge, stale: stale, active: active, perSession: float64(after-before) / float64(p.sessions),
		redisV: redisV})
	fmt.Print(report)
	if p.out != "" {
		return benchdoc.WriteSection(p.out, "cyclebench", report)
	}
	return nil
}

func sessionID(n int64) string { return fmt.Sprintf("s-%07d", n) }

// fillDirect writes sessions from..to-1 as allocate.lua binds a new
// session: HSET sub priority allocatedAt owner, PEXPIRE the stale age, ZADD
// to the subscription's client set, active for the idle age (the score is
// "active until"); subscriptions taken in
// turn, as allocate's tie-break on fewer clients spreads a fresh pool.
func fillDirect(ctx context.Context, rdb *redis.Client, cfg *pool.Config, keys lua.Keys, from, to int) error {
	if from >= to {
		return nil
	}
	owner := ""
	if from > 0 {
		owner = rdb.HGet(ctx, keys.Session(sessionID(0)), "owner").Val()
	}
	stale := time.Duration(cfg.StaleAfterSeconds) * time.Second
	idleMS := int64(cfg.IdleAfterSeconds) * 1000
	const batch = 5000
	for start := from; start < to; start += batch {
		now := time.Now().UnixMilli()
		nowS := strconv.FormatInt(now, 10)
		pipe := rdb.Pipeline()
		for n := start; n < min(start+batch, to); n++ {
			sid := sessionID(int64(n))
			sub := cfg.Subscriptions[n%len(cfg.Subscriptions)].ID
			pipe.HSet(ctx, keys.Session(sid), "sub", sub, "priority", string(pool.PriorityNormal),
				"allocatedAt", nowS, "owner", owner)
			pipe.PExpire(ctx, keys.Session(sid), stale)
			pipe.ZAdd(ctx, keys.Clients(sub), redis.Z{Score: float64(now + idleMS), Member: sid})
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return fmt.Errorf("fill: %w", err)
		}
	}
	return nil
}

// trivialRef times 2000 sequential calls of the trivial script through the
// same client and hook: its median (steadier than the mean on 2 shared
// CPUs, where one descheduled call weighs on the mean) and longest call.
func trivialRef(ctx context.Context, rdb *redis.Client, s *redis.Script, timer *scriptTimer) (median, longestCall time.Duration, err error) {
	timer.take()
	const n = 2000
	for i := 0; i < n; i++ {
		if err := s.Run(ctx, rdb, []string{"k"}).Err(); err != nil {
			return 0, 0, err
		}
	}
	calls := timer.take()
	slices.Sort(calls)
	return calls[len(calls)/2], longest(calls), nil
}

func longest(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	return slices.Max(ds)
}

// slowest is the longest EVALSHA in SLOWLOG (threshold slowlogMicros):
// Redis' own execution time, while it served nobody else.
func slowest(ctx context.Context, rdb *redis.Client) (time.Duration, error) {
	logs, err := rdb.SlowLogGet(ctx, -1).Result()
	if err != nil {
		return 0, err
	}
	var m time.Duration
	for _, l := range logs {
		if len(l.Args) > 0 && strings.EqualFold(l.Args[0], "evalsha") {
			m = max(m, l.Duration)
		}
	}
	return m, nil
}

// slowlogMicros is the SLOWLOG threshold while measuring: every script
// call of interest takes longer; the commands inside a script mostly less.
const slowlogMicros = "50"

// evalshaStats is the mean EVALSHA time since the last CONFIG RESETSTAT
// (INFO commandstats: the script with the commands it runs) and the
// longest in SLOWLOG.
func evalshaStats(ctx context.Context, rdb *redis.Client) (mean, longestCall time.Duration, err error) {
	longestCall, err = slowest(ctx, rdb)
	if err != nil {
		return 0, 0, err
	}
	us, err := benchdoc.EvalshaMicros(ctx, rdb)
	return time.Duration(us * float64(time.Microsecond)), longestCall, err
}
