package rebalance

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/authpool/authpool/internal/redistest"
	"github.com/authpool/authpool/internal/testutil"
	"github.com/authpool/authpool/pkg/pool"
)

// redisMS is Redis' clock in Unix ms.
func redisMS(t testing.TB, c *redis.Client) int64 {
	t.Helper()
	now, err := c.Time(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	return now.UnixMilli()
}

// Issue 8, finding 7: Redis loses its data (a restart without persistence,
// a failover to an empty replica, a FLUSHALL) while a leader is paused. The
// leader that promotes afterwards must get an epoch the paused one's fenced
// calls cannot match; a counter that restarts at 1 gave it the same epoch.
func TestDeposedLeaderIsFencedAfterDataLoss(t *testing.T) {
	tg := redistest.Real(t)
	ctx := context.Background()
	p := newPool(t, tg.Client, testConfig(2, 100, 10))
	keys := p.Keys()

	ca, fa := newClient(t, tg.Addr)
	var ts tenures
	a := runElector(t, ca, fa, keys, "rb-a", testTTL, ts.work("rb-a"))
	testutil.Eventually(t, 3*time.Second, "a to lead", a.IsLeader)
	deposed := a.Epoch()
	if _, err := p.Maintain(ctx, deposed); err != nil {
		t.Fatalf("maintain under the leader's own epoch: %v", err)
	}

	// a pauses (it hears nothing from Redis any more) and Redis loses
	// everything. The loss takes longer than a millisecond in any real
	// outage; the sleep makes sure of it here.
	fa.mode.Store(faultHang)
	time.Sleep(5 * time.Millisecond)
	if err := tg.Client.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if err := p.Sync(ctx); err != nil { // the replicas write their config again
		t.Fatal(err)
	}
	b := startElector(t, tg.Addr, keys, "rb-b", testTTL, ts.work("rb-b"))
	testutil.Eventually(t, 3*time.Second, "b to lead", b.IsLeader)
	if b.Epoch() <= deposed {
		t.Errorf("new leader's epoch %d not above the deposed leader's %d", b.Epoch(), deposed)
	}

	// a wakes up and carries on with its epoch: the fence refuses it.
	if _, err := p.Maintain(ctx, deposed); !errors.Is(err, pool.ErrNotLeader) {
		t.Fatalf("maintain under the deposed epoch %d (current %d): %v, want ErrNotLeader", deposed, b.Epoch(), err)
	}
	if _, err := p.Maintain(ctx, b.Epoch()); err != nil {
		t.Fatalf("maintain under the new leader's epoch: %v", err)
	}
}

// promote.lua grants max(counter+1, Redis ms): never below the clock, still
// a counter above it, and exact in the fence's string comparison for values
// far beyond 2^31 (Lua numbers are doubles; Redis truncates them on return).
func TestPromoteEpochNeverBelowRedisClock(t *testing.T) {
	tg := redistest.Real(t)
	ctx := context.Background()
	p := newPool(t, tg.Client, testConfig(2, 100, 10))
	keys := p.Keys()
	ahead := redisMS(t, tg.Client) + 10_000_000 // a counter ahead of the clock
	for _, tc := range []struct {
		name    string
		counter string // "" = no counter (fresh or lost data)
		want    func(before, after int64) (lo, hi int64)
	}{
		{"no counter", "", func(b, a int64) (int64, int64) { return b, a }},
		{"small counter", "41", func(b, a int64) (int64, int64) { return b, a }},
		{"counter ahead of the clock", strconv.FormatInt(ahead, 10),
			func(int64, int64) (int64, int64) { return ahead + 1, ahead + 1 }},
		{"counter near 2^53", "9007199254740000",
			func(int64, int64) (int64, int64) { return 9007199254740001, 9007199254740001 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tg.Client.Del(ctx, keys.Epoch())
			if tc.counter != "" {
				if err := tg.Client.Set(ctx, keys.Epoch(), tc.counter, 0).Err(); err != nil {
					t.Fatal(err)
				}
			}
			value := "lock-" + tc.name
			if err := tg.Client.Set(ctx, keys.Leader(), value, time.Minute).Err(); err != nil {
				t.Fatal(err)
			}
			before := redisMS(t, tg.Client)
			epoch, _, err := promote(ctx, tg.Client, keys, value, "rb-a")
			after := redisMS(t, tg.Client)
			if err != nil {
				t.Fatal(err)
			}
			lo, hi := tc.want(before, after)
			if epoch < lo || epoch > hi {
				t.Fatalf("epoch %d, want in [%d, %d]", epoch, lo, hi)
			}
			stored, _ := tg.Client.Get(ctx, keys.Epoch()).Result()
			info, ok, err := ReadLeaderInfo(ctx, tg.Client, keys)
			if stored != strconv.FormatInt(epoch, 10) || err != nil || !ok || info.Epoch != epoch {
				t.Fatalf("stored epoch %q, leader info %+v %v %v; want %d", stored, info, ok, err, epoch)
			}
			if _, err := p.Maintain(ctx, epoch); err != nil {
				t.Fatalf("the fence refuses the epoch it was granted: %v", err)
			}
			if _, err := p.Maintain(ctx, epoch-1); !errors.Is(err, pool.ErrNotLeader) {
				t.Fatalf("the fence accepts epoch-1: %v", err)
			}
		})
	}
}
