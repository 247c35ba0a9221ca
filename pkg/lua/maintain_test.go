package lua

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/authpool/authpool/internal/redistest"
)

// TestMaintainDropsInChunks: with a drop limit, maintain.lua drops at most
// that many stale clients per call and says when more remain; repeated
// calls drop every stale client, none of those with a turn in flight (their
// score, "active until", is their lease's end: after now, however long
// the turn has run) and none that is not stale.
// perSet 40, a multiple of the limit: a call that drops the limit exactly
// with the first set must not drop the next set's without a bound.
func TestMaintainDropsInChunks(t *testing.T) {
	for _, perSet := range []int{57, 40} {
		t.Run(fmt.Sprint(perSet), func(t *testing.T) { maintainDropsInChunks(t, perSet) })
	}
}

func maintainDropsInChunks(t *testing.T, perSet int) {
	redistest.Each(t, func(t *testing.T, tg *redistest.Target) {
		ctx := context.Background()
		c := tg.Client
		k := NewKeys(fmt.Sprintf("chunk%d", perSet))
		ids := []string{"s1", "s2"}
		subs := k.SubSet(ids)
		var sync []SyncSub
		for _, id := range ids {
			sync = append(sync, SyncSub{ID: id, Email: id + "@example.com", Type: "claude-pro", ConfigDir: "/x", WeeklyBudget: "100", MaxClients: 5})
		}
		if _, err := Sync(ctx, c, k, ConfigVersion{Hash: "h1", LoadedAt: 1}, sync, nil); err != nil {
			t.Fatal(err)
		}
		if err := c.Set(ctx, k.Epoch(), 1, 0).Err(); err != nil {
			t.Fatal(err)
		}
		now := time.Now().UnixMilli()
		const staleMS, idleMS = 60000, 10000
		old := float64(now - 10*staleMS)
		stale, live := 0, 0
		for si, id := range ids {
			// In flight for longer than the stale age: 30 per set, more than
			// the limit.
			for i := 0; i < 30; i++ {
				sid := fmt.Sprintf("f%d-%02d", si, i)
				c.ZAdd(ctx, k.Clients(id), redisZ(float64(now+idleMS), sid))
			}
			for i := 0; i < perSet; i++ {
				c.ZAdd(ctx, k.Clients(id), redisZ(old+float64(i), fmt.Sprintf("x%d-%02d", si, i)))
				stale++
			}
			for i := 0; i < 7; i++ {
				c.ZAdd(ctx, k.Clients(id), redisZ(float64(now), fmt.Sprintf("y%d-%02d", si, i)))
				live++
			}
		}
		total, calls := 0, 0
		for {
			d, _, more, err := Maintain(ctx, c, k, subs, 1, staleMS, idleMS, 0.8, 20, RankInputs{})
			if err != nil {
				t.Fatal(err)
			}
			calls++
			if d > 20 {
				t.Fatalf("call %d dropped %d, limit 20", calls, d)
			}
			total += d
			if !more {
				break
			}
			if d != 20 || calls > 100 {
				t.Fatalf("call %d: more with %d dropped", calls, d)
			}
		}
		if total != stale {
			t.Fatalf("dropped %d, want %d", total, stale)
		}
		if calls < stale/20 {
			t.Fatalf("%d calls for %d drops at 20 a call", calls, stale)
		}
		for si, id := range ids {
			n, _ := c.ZCard(ctx, k.Clients(id)).Result()
			if n != int64(30+7) {
				t.Fatalf("%s: %d entries left, want %d", id, n, 30+7)
			}
			if _, err := c.ZScore(ctx, k.Clients(id), fmt.Sprintf("f%d-00", si)).Result(); err != nil {
				t.Fatalf("%s: in-flight session dropped", id)
			}
		}
		_ = live
		// Without a limit: all in one call, more never set.
		c.ZAdd(ctx, k.Clients("s1"), redisZ(old, "z-1"), redisZ(old, "z-2"))
		d, _, more, err := Maintain(ctx, c, k, subs, 1, staleMS, idleMS, 0.8, 0, RankInputs{})
		if err != nil || d != 2 || more {
			t.Fatalf("unlimited: dropped %d, more %v, %v", d, more, err)
		}
		// A stale epoch answers with the reply's full length.
		if _, _, _, err := Maintain(ctx, c, k, subs, 2, staleMS, idleMS, 0.8, 20, RankInputs{}); !errors.Is(err, ErrStaleEpoch) {
			t.Fatalf("stale epoch: %v", err)
		}
	})
}

func redisZ(score float64, member string) redis.Z { return redis.Z{Score: score, Member: member} }
