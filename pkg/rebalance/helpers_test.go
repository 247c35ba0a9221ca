package rebalance

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/authpool/authpool/internal/pooltest"
	"github.com/authpool/authpool/internal/redistest"
	"github.com/authpool/authpool/pkg/pool"
)

// Short leases keep the tests fast; the ratios are the production ones.
const (
	testTTL   = 2 * time.Second
	testRetry = 100 * time.Millisecond
)

// testConfig is pooltest.Config with this package's short idle age, so
// seeded sessions become movable within a second.
func testConfig(n int, budget float64, maxClients int) *pool.Config {
	cfg := pooltest.Config(n, budget, maxClients)
	cfg.IdleAfterSeconds, cfg.StaleAfterSeconds = 1, 3600
	return cfg
}

// shared marks t parallel and returns the shared redis-server: the test
// keeps to tg.Pool's keys.
func shared(t *testing.T) *redistest.Target {
	t.Helper()
	t.Parallel()
	return redistest.Shared(t)
}

func newPool(t testing.TB, c redis.UniversalClient, cfg *pool.Config) *pool.Pool {
	t.Helper()
	p := pool.New(c, cfg, pool.Options{})
	if err := p.Sync(context.Background()); err != nil {
		t.Fatalf("sync: %v", err)
	}
	return p
}

// fault makes one client's commands fail or hang, as a partitioned or
// paused replica would see Redis.
type fault struct{ mode atomic.Int32 }

const (
	faultNone int32 = iota
	faultFail
	faultHang
)

var errInjected = errors.New("injected: connection refused")

func (f *fault) DialHook(next redis.DialHook) redis.DialHook { return next }

func (f *fault) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if err := f.inject(ctx); err != nil {
			cmd.SetErr(err)
			return err
		}
		return next(ctx, cmd)
	}
}

func (f *fault) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if err := f.inject(ctx); err != nil {
			return err
		}
		return next(ctx, cmds)
	}
}

func (f *fault) inject(ctx context.Context) error {
	switch f.mode.Load() {
	case faultFail:
		return errInjected
	case faultHang:
		<-ctx.Done()
		return ctx.Err()
	}
	return nil
}

// newClient is a client of its own (a replica) with a fault hook.
func newClient(t testing.TB, addr string) (*redis.Client, *fault) {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	f := &fault{}
	c.AddHook(f)
	t.Cleanup(func() { _ = c.Close() })
	return c, f
}

// tenure is one run of a leader's work as the work saw it.
type tenure struct {
	holder       string
	epoch        int64
	start, ended time.Time
}

// tenures records the work of several electors.
type tenures struct {
	mu  sync.Mutex
	all []*tenure
}

// work records the tenures of holder, each spent waiting for its end.
func (ts *tenures) work(holder string) Work {
	return ts.wrap(holder, func(ctx context.Context, _ int64) error {
		<-ctx.Done()
		return nil
	})
}

// wrap records the tenures of holder, each spent in inner; a tenure ends
// when inner has returned.
func (ts *tenures) wrap(holder string, inner Work) Work {
	return func(ctx context.Context, epoch int64) error {
		tn := &tenure{holder: holder, epoch: epoch, start: time.Now()}
		ts.mu.Lock()
		ts.all = append(ts.all, tn)
		ts.mu.Unlock()
		err := inner(ctx, epoch)
		ts.mu.Lock()
		tn.ended = time.Now()
		ts.mu.Unlock()
		return err
	}
}

func (ts *tenures) list() []tenure {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	out := make([]tenure, len(ts.all))
	for i, tn := range ts.all {
		out[i] = *tn
	}
	return out
}

// running is one elector running in the background.
type running struct {
	*Elector
	client *redis.Client
	fault  *fault
	stop   func() // cancels Run and waits for it
}

func startElector(t testing.TB, addr string, keys poolKeys, holder string, ttl time.Duration, work Work) *running {
	t.Helper()
	c, f := newClient(t, addr)
	return runElector(t, c, f, keys, holder, ttl, work)
}

// runElector runs an elector on a client made by newClient.
func runElector(t testing.TB, c *redis.Client, f *fault, keys poolKeys, holder string, ttl time.Duration, work Work) *running {
	t.Helper()
	return runElectorParams(t, c, f, keys, ElectorParams{Holder: holder, TTL: ttl, RetryInterval: testRetry,
		MaxBackoff: time.Second}, work)
}

// runElectorParams runs an elector with p on a client made by newClient, its
// leadership state in the pool of keys on the same client.
func runElectorParams(t testing.TB, c *redis.Client, f *fault, keys poolKeys, p ElectorParams, work Work) *running {
	t.Helper()
	p.Client, p.Leader = c, keys.leader(t, c)
	holder := p.Holder
	e, err := NewElector(p)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := e.Run(ctx, work); err != nil {
			t.Errorf("run %s: %v", holder, err)
		}
	}()
	var once sync.Once
	r := &running{Elector: e, client: c, fault: f, stop: func() {
		once.Do(func() {
			f.mode.Store(faultNone)
			cancel()
			<-done
		})
	}}
	t.Cleanup(r.stop)
	return r
}

// recorder is a Reporter that keeps what it was told.
type recorder struct {
	mu       sync.Mutex
	leads    []Leadership
	cycles   []CycleResult
	cycledAt []time.Time
	errs     []string
}

func (r *recorder) Leadership(_ context.Context, l Leadership) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.leads = append(r.leads, l)
}

func (r *recorder) Cycle(_ context.Context, c CycleResult) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cycles = append(r.cycles, c)
	r.cycledAt = append(r.cycledAt, time.Now())
}

func (r *recorder) cycleTimes() []time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Time(nil), r.cycledAt...)
}

func (r *recorder) Error(_ context.Context, op string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, op+": "+err.Error())
}

func (r *recorder) moved() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.cycles {
		n += c.Rebalance.Moved
	}
	return n
}

// seeded is a pool whose sessions all sit on sub00, which has spent gap USD
// more than the others.
type seeded struct {
	p        *pool.Pool
	tg       *redistest.Target
	sessions []string
}

// seed binds n sessions to sub00 (the others disabled meanwhile) and settles
// gap USD on sub00.
func seed(t testing.TB, tg *redistest.Target, cfg *pool.Config, n int, gap float64) *seeded {
	t.Helper()
	ctx := context.Background()
	if cfg.Pool == "" {
		cfg.Pool = tg.Pool
	}
	p := newPool(t, tg.Client, cfg)
	others := cfg.Subscriptions[1:]
	for _, s := range others {
		if _, err := p.Mark(ctx, s.ID, pool.StatusDisabled, "seed", time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	s := &seeded{p: p, tg: tg}
	for i := 0; i < n; i++ {
		sid := fmt.Sprintf("s%d", i)
		a, err := p.Allocate(ctx, sid, pool.PriorityNormal)
		if err != nil || a.Subscription.ID != "sub00" {
			t.Fatalf("seed allocate %s = %+v, %v", sid, a, err)
		}
		s.sessions = append(s.sessions, sid)
	}
	for _, o := range others {
		if _, err := p.Mark(ctx, o.ID, pool.StatusAvailable, "seed", time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	if gap > 0 {
		if _, err := p.Settle(ctx, pool.Usage{RequestID: "seed-gap", SubscriptionID: "sub00", CostUSD: gap}); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// subOf is the subscription a session is bound to in Redis.
func (s *seeded) subOf(t testing.TB, sid string) string {
	t.Helper()
	sess, err := s.p.Session(context.Background(), sid)
	if err != nil {
		t.Fatalf("session %s: %v", sid, err)
	}
	return sess.Subscription
}

// rotations are the rotation events in the stream.
func (s *seeded) rotations(t testing.TB) []map[string]any {
	t.Helper()
	msgs, err := s.tg.Client.XRange(context.Background(), keysOf(s.p).Events(), "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, m := range msgs {
		if m.Values["type"] == "rotation" {
			out = append(out, m.Values)
		}
	}
	return out
}
