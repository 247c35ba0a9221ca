package rebalance

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/authpool/authpool/internal/redistest"
	"github.com/authpool/authpool/internal/testutil"
	"github.com/authpool/authpool/pkg/pool"
)

func leaderOf(rs ...*running) *running {
	var out *running
	for _, r := range rs {
		if r.IsLeader() {
			if out != nil {
				return nil
			}
			out = r
		}
	}
	return out
}

// assertNoOverlap checks that no two tenures ran at once: a new leader's
// work starts only after the old one's ended.
func assertNoOverlap(t *testing.T, ts []tenure) {
	t.Helper()
	for i, a := range ts {
		for _, b := range ts[i+1:] {
			aEnd, bEnd := a.ended, b.ended
			if aEnd.IsZero() {
				aEnd = time.Now()
			}
			if bEnd.IsZero() {
				bEnd = time.Now()
			}
			if a.start.Before(bEnd) && b.start.Before(aEnd) {
				t.Fatalf("tenures overlap: %s epoch %d [%s, %s] and %s epoch %d [%s, %s]",
					a.holder, a.epoch, a.start.Format(time.StampMilli), aEnd.Format(time.StampMilli),
					b.holder, b.epoch, b.start.Format(time.StampMilli), bEnd.Format(time.StampMilli))
			}
		}
	}
}

func TestTwoElectorsExactlyOneLeads(t *testing.T) {
	tg := shared(t)
	keys := newKeys(tg.Pool)
	var ts tenures
	a := startElector(t, tg.Addr, keys, "rb-a", testTTL, ts.work("rb-a"))
	b := startElector(t, tg.Addr, keys, "rb-b", testTTL, ts.work("rb-b"))
	testutil.Eventually(t, 3*time.Second, "a leader", func() bool { return a.IsLeader() || b.IsLeader() })

	// Across several extends exactly one leads, always the same one.
	first := leaderOf(a, b)
	for end := time.Now().Add(testTTL); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if l := leaderOf(a, b); l != first {
			t.Fatalf("leader changed or doubled: a=%v b=%v", a.IsLeader(), b.IsLeader())
		}
	}
	info, ok, err := readLeaderInfo(context.Background(), tg.Client, keys)
	if err != nil || !ok || info.Holder != first.Leadership().Holder || info.Epoch != first.Epoch() || info.Epoch < 1 {
		t.Fatalf("leader info = %+v, %v, %v; want holder %s epoch %d", info, ok, err,
			first.Leadership().Holder, first.Epoch())
	}
	if got := ts.list(); len(got) != 1 {
		t.Fatalf("work ran %d times, want once: %+v", len(got), got)
	}
}

// A leader whose extends stop working (Redis unreachable from it, or not
// answering) cancels its work before its lock could have expired, and the
// standby then leads with a higher epoch — never both at once.
func TestLeaderWhoseExtendFailsStepsDownBeforeExpiry(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		mode int32
	}{
		{"extend fails", faultFail},
		{"extend hangs", faultHang},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tg := shared(t)
			ctx := context.Background()
			cfg := testConfig(2, 100, 10)
			cfg.Pool = tg.Pool
			keys := keysOf(newPool(t, tg.Client, cfg))
			// a's work is the real loops, on a's own client.
			ca, fa := newClient(t, tg.Addr)
			var cycles recorder
			loops, err := NewLoops(LoopsParams{Pool: pool.New(ca, cfg, pool.Options{}), Interval: 50 * time.Millisecond,
				Reporter: &cycles})
			if err != nil {
				t.Fatal(err)
			}
			var ts tenures
			a := runElector(t, ca, fa, keys, "rb-a", testTTL, ts.wrap("rb-a", loops.Run))
			testutil.Eventually(t, 3*time.Second, "a to lead", a.IsLeader)
			testutil.Eventually(t, time.Second, "a's loops to cycle", func() bool { return len(cycles.cycleTimes()) > 2 })
			b := startElector(t, tg.Addr, keys, "rb-b", testTTL, ts.work("rb-b"))
			oldEpoch := a.Epoch()

			pttl, err := tg.Client.PTTL(ctx, keys.Leader()).Result()
			if err != nil || pttl <= 0 {
				t.Fatalf("pttl = %s, %v", pttl, err)
			}
			expiresBy := time.Now().Add(pttl) // no extend of a succeeds after this point
			a.fault.mode.Store(tc.mode)

			testutil.Eventually(t, 2*testTTL, "a to step down", func() bool { return !a.IsLeader() })
			testutil.Eventually(t, 2*testTTL, "b to lead", b.IsLeader)
			// b's work starts just after it reports leading.
			testutil.Eventually(t, time.Second, "b's tenure to start", func() bool { return len(ts.list()) >= 2 })
			got := ts.list()
			if len(got) != 2 || got[0].holder != "rb-a" || got[1].holder != "rb-b" {
				t.Fatalf("tenures = %+v", got)
			}
			if !got[0].ended.Before(expiresBy) {
				t.Fatalf("a's loops stopped at %s, after its lock could expire (%s)",
					got[0].ended.Format(time.StampMilli), expiresBy.Format(time.StampMilli))
			}
			t.Logf("a's loops stopped %s before its lock could expire", expiresBy.Sub(got[0].ended))
			for _, at := range cycles.cycleTimes() {
				if at.After(got[0].ended) {
					t.Fatalf("a cycled at %s, after its tenure ended", at.Format(time.StampMilli))
				}
			}
			if b.Epoch() <= oldEpoch {
				t.Fatalf("b leads with epoch %d, not above a's %d", b.Epoch(), oldEpoch)
			}
			if cause := a.Leadership().Cause; !errors.Is(cause, ErrLockLost) {
				t.Fatalf("a's tenure ended by %v, want ErrLockLost", cause)
			}
			assertNoOverlap(t, got)
		})
	}
}

// On shutdown the leader unlocks: the standby leads at its next attempt,
// long before the (here 10 s) lock would have expired.
func TestShutdownResignsAndStandbyTakesOverAtOnce(t *testing.T) {
	tg := shared(t)
	keys := newKeys(tg.Pool)
	var ts tenures
	a := startElector(t, tg.Addr, keys, "rb-a", 10*time.Second, ts.work("rb-a"))
	testutil.Eventually(t, 3*time.Second, "a to lead", a.IsLeader)
	b := startElector(t, tg.Addr, keys, "rb-b", 10*time.Second, ts.work("rb-b"))
	time.Sleep(3 * testRetry) // b is a standby now
	oldEpoch := a.Epoch()

	a.stop()
	took := testutil.Eventually(t, 2*time.Second, "b to lead", b.IsLeader)
	t.Logf("standby took over %s after the leader resigned", took)
	if b.Epoch() <= oldEpoch {
		t.Fatalf("b's epoch %d not above %d", b.Epoch(), oldEpoch)
	}
	if cause := a.Leadership().Cause; !errors.Is(cause, ErrResigned) {
		t.Fatalf("a's tenure ended by %v, want ErrResigned", cause)
	}
	info, ok, _ := readLeaderInfo(context.Background(), tg.Client, keys)
	if !ok || info.Holder != "rb-b" || info.Epoch != b.Epoch() {
		t.Fatalf("leader info = %+v, %v", info, ok)
	}
	assertNoOverlap(t, ts.list())
}

// A leader whose epoch moved on (its fenced calls are refused) resigns and
// campaigns again, so a replica never keeps the lock with a useless epoch.
func TestFencedLeaderResignsAndTakesANewEpoch(t *testing.T) {
	tg := shared(t)
	ctx := context.Background()
	cfg := testConfig(2, 100, 10)
	cfg.Pool = tg.Pool
	p := newPool(t, tg.Client, cfg)
	loops, err := NewLoops(LoopsParams{Pool: p, Interval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	a := startElector(t, tg.Addr, keysOf(p), "rb-a", testTTL, loops.Run)
	testutil.Eventually(t, 3*time.Second, "a to lead", a.IsLeader)
	first := a.Epoch()
	if _, err := p.NextEpoch(ctx); err != nil { // someone else moved the epoch on
		t.Fatal(err)
	}
	testutil.Eventually(t, 3*time.Second, "a to lead again", func() bool { return a.Epoch() > first+1 })
	stored, err := tg.Client.Get(ctx, keysOf(p).Epoch()).Int64()
	if got := a.Epoch(); err != nil || got != stored {
		t.Fatalf("new epoch %d, the counter holds %d (%v)", got, stored, err)
	}
}

// Redis restarted under two electors: the leader steps down, nobody crashes,
// and once Redis is back one of them leads again, with an epoch above the
// one granted before the restart although the restarted Redis kept nothing.
func TestElectionResumesAfterRedisRestart(t *testing.T) {
	t.Parallel() // on a server of its own
	srv, err := redistest.StartServer()
	if err != nil {
		t.Skipf("real Redis unavailable: %v", err)
	}
	t.Cleanup(func() { srv.Stop() })
	keys := newKeys("elect")
	var ts tenures
	a := startElector(t, srv.Addr, keys, "rb-a", testTTL, ts.work("rb-a"))
	b := startElector(t, srv.Addr, keys, "rb-b", testTTL, ts.work("rb-b"))
	testutil.Eventually(t, 3*time.Second, "a leader", func() bool { return leaderOf(a, b) != nil })
	before := leaderOf(a, b).Epoch()

	srv.Stop()
	testutil.Eventually(t, 2*testTTL, "the leader to step down", func() bool { return !a.IsLeader() && !b.IsLeader() })
	srv, err = redistest.StartServerOnPort(srv.Port)
	if err != nil {
		t.Fatalf("restart redis: %v", err)
	}
	t.Cleanup(func() { srv.Stop() })
	took := testutil.Eventually(t, 10*time.Second, "a leader after the restart", func() bool { return leaderOf(a, b) != nil })
	t.Logf("leader again %s after the restarted Redis answered", took)
	l := leaderOf(a, b)
	if l.Epoch() <= before {
		t.Fatalf("epoch after restart = %d, not above %d from before it", l.Epoch(), before)
	}
	assertNoOverlap(t, ts.list())
}

func TestNewElectorRejectsBadParams(t *testing.T) {
	tg := redistest.Mini(t)
	keys := newKeys("p")
	for _, tc := range []struct {
		name string
		p    ElectorParams
	}{
		{"no client", ElectorParams{Leader: keys.leader(t, tg.Client), Holder: "a"}},
		{"no leader", ElectorParams{Client: tg.Client, Holder: "a"}},
		{"bad holder", ElectorParams{Client: tg.Client, Leader: keys.leader(t, tg.Client), Holder: "a b"}},
		{"empty holder", ElectorParams{Client: tg.Client, Leader: keys.leader(t, tg.Client)}},
		{"extend not shorter than ttl", ElectorParams{Client: tg.Client, Leader: keys.leader(t, tg.Client), Holder: "a",
			TTL: time.Second, ExtendInterval: time.Second}},
		{"negative", ElectorParams{Client: tg.Client, Leader: keys.leader(t, tg.Client), Holder: "a", TTL: -time.Second}},
		{"retry above TTL/5", ElectorParams{Client: tg.Client, Leader: keys.leader(t, tg.Client), Holder: "a",
			TTL: time.Second, RetryInterval: 300 * time.Millisecond}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewElector(tc.p); !errors.Is(err, ErrInvalidParams) {
				t.Fatalf("err = %v, want ErrInvalidParams", err)
			}
		})
	}
	e, err := NewElector(ElectorParams{Client: tg.Client, Leader: keys.leader(t, tg.Client), Holder: "host-1.example:42"})
	if err != nil || e.p.TTL != DefaultLockTTL || e.p.ExtendInterval != DefaultLockTTL/3 ||
		e.p.RetryInterval != DefaultRetryInterval {
		t.Fatalf("defaults: %+v, %v", e.p, err)
	}
	// A short lock keeps the standby's tries well inside its lifetime.
	e, err = NewElector(ElectorParams{Client: tg.Client, Leader: keys.leader(t, tg.Client), Holder: "a", TTL: time.Second})
	if err != nil || e.p.RetryInterval != 200*time.Millisecond {
		t.Fatalf("retry with a 1 s lock: %+v, %v", e.p, err)
	}
	if e.IsLeader() || e.Epoch() != 0 {
		t.Fatal("a new elector claims leadership")
	}
}
