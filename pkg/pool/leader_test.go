package pool_test

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/authpool/authpool/internal/redistest"

	"github.com/authpool/authpool/internal/pooltest"
	. "github.com/authpool/authpool/pkg/pool"
)

// redisMS is Redis' clock in Unix ms.
func redisMS(t testing.TB, c redis.UniversalClient) int64 {
	t.Helper()
	now, err := c.Time(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	return now.UnixMilli()
}

// promote.lua grants max(counter+1, Redis ms): never below the clock, still
// a counter above it, and exact in the fence's string comparison for values
// far beyond 2^31 (Lua numbers are doubles; Redis truncates them on return).
// (Moved from pkg/rebalance with the script.)
func TestPromoteEpochNeverBelowRedisClock(t *testing.T) {
	tg := redistest.Real(t)
	ctx := context.Background()
	p := newPool(t, tg, pooltest.Config(2, 100, 10))
	keys, leader := p.Keys(), p.Leader()
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
			if err := tg.Client.Set(ctx, leader.LockName(), value, time.Minute).Err(); err != nil {
				t.Fatal(err)
			}
			before := redisMS(t, tg.Client)
			epoch, _, err := leader.Promote(ctx, value, "rb-a")
			after := redisMS(t, tg.Client)
			if err != nil {
				t.Fatal(err)
			}
			lo, hi := tc.want(before, after)
			if epoch < lo || epoch > hi {
				t.Fatalf("epoch %d, want in [%d, %d]", epoch, lo, hi)
			}
			stored, _ := tg.Client.Get(ctx, keys.Epoch()).Result()
			info, ok, err := leader.Info(ctx)
			if stored != strconv.FormatInt(epoch, 10) || err != nil || !ok || info.Epoch != epoch {
				t.Fatalf("stored epoch %q, leader info %+v %v %v; want %d", stored, info, ok, err, epoch)
			}
			if _, err := p.Maintain(ctx, epoch); err != nil {
				t.Fatalf("the fence refuses the epoch it was granted: %v", err)
			}
			if _, err := p.Maintain(ctx, epoch-1); !errors.Is(err, ErrNotLeader) {
				t.Fatalf("the fence accepts epoch-1: %v", err)
			}
		})
	}
}

// A promotion after the lock was lost (or taken by another value) changes
// nothing; Demote leaves a newer leader's record alone.
func TestPromoteNeedsTheLock(t *testing.T) {
	redistest.Each(t, func(t *testing.T, tg *redistest.Target) {
		ctx := context.Background()
		p := newPool(t, tg, pooltest.Config(1, 100, 10))
		l := p.Leader()
		if err := tg.Client.Set(ctx, l.LockName(), "theirs", time.Minute).Err(); err != nil {
			t.Fatal(err)
		}
		if e, _, err := l.Promote(ctx, "mine", "rb-a"); err != nil || e != 0 {
			t.Fatalf("promote without the lock = %d, %v; want 0, nil", e, err)
		}
		if _, ok, _ := l.Info(ctx); ok {
			t.Fatal("leader info written without the lock")
		}
		e, _, err := l.Promote(ctx, "theirs", "rb-b")
		if err != nil || e == 0 {
			t.Fatalf("promote with the lock = %d, %v", e, err)
		}
		if err := l.Demote(ctx, "rb-a", e); err != nil {
			t.Fatal(err)
		}
		if info, ok, _ := l.Info(ctx); !ok || info.Holder != "rb-b" || info.Epoch != e {
			t.Fatalf("another holder's demote removed %+v (%v)", info, ok)
		}
		if err := l.Demote(ctx, "rb-b", e); err != nil {
			t.Fatal(err)
		}
		if _, ok, _ := l.Info(ctx); ok {
			t.Fatal("leader info left after its holder's demote")
		}
	})
}

// NextEpoch (the in-process mode, no election) runs the elector's promotion:
// its epochs are never below Redis' clock, so after Redis loses its data the
// next one still outbids every epoch granted before; it writes no
// leader:info record.
func TestNextEpochSurvivesDataLoss(t *testing.T) {
	tg := redistest.Real(t)
	ctx := context.Background()
	p := newPool(t, tg, pooltest.Config(1, 100, 10))
	before := redisMS(t, tg.Client)
	first, err := p.NextEpoch(ctx)
	if err != nil || first < before {
		t.Fatalf("first epoch %d, %v; want at least Redis' clock %d", first, err, before)
	}
	second, _ := p.NextEpoch(ctx)
	if second <= first {
		t.Fatalf("second epoch %d not above %d", second, first)
	}
	time.Sleep(2 * time.Millisecond)
	if err := tg.Client.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	third, err := p.NextEpoch(ctx)
	if err != nil || third <= second {
		t.Fatalf("epoch after the data loss %d, %v; want above %d", third, err, second)
	}
	if _, ok, _ := p.Leader().Info(ctx); ok {
		t.Fatal("NextEpoch wrote a leader:info record")
	}
}
