package pool_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/authpool/authpool/internal/redistest"
	"github.com/authpool/authpool/pkg/lua"

	. "github.com/authpool/authpool/pkg/pool"
)

// Trimming the events stream keeps what a group still owes, whatever its
// age (trim.lua; moved from pkg/notify with the script).
func TestTrimKeepsWhatTheGroupStillOwes(t *testing.T) {
	redistest.Each(t, func(t *testing.T, tg *redistest.Target) {
		ctx := context.Background()
		const group = "notifiers"
		ev, err := NewEvents(tg.Client, "p1")
		if err != nil {
			t.Fatal(err)
		}
		stream := lua.NewKeys("p1").Events()
		add := func(id string) string {
			got, err := tg.Client.XAdd(ctx, &redis.XAddArgs{Stream: stream, ID: id, Values: []any{"type", "rotation"}}).Result()
			if err != nil {
				t.Fatalf("XADD %s: %v", id, err)
			}
			return got
		}
		ids := func() []string {
			msgs, err := tg.Client.XRange(ctx, stream, "-", "+").Result()
			if err != nil {
				t.Fatal(err)
			}
			var out []string
			for _, m := range msgs {
				out = append(out, m.ID)
			}
			return out
		}
		trim := func(want int64) {
			t.Helper()
			n, err := ev.Trim(ctx, group, 7*24*time.Hour)
			if err != nil || n != want {
				t.Fatalf("trim = %d, %v; want %d", n, err, want)
			}
		}

		// Old entries the group never read are kept, however old.
		add("1000-0")
		add("2000-0")
		add("3000-0")
		if err := ev.CreateGroup(ctx, group); err != nil {
			t.Fatal(err)
		}
		trim(0)

		recent := add("*")
		if _, err := ev.ReadNew(ctx, group, "c1", 10); err != nil {
			t.Fatal(err)
		}
		if err := tg.Client.XAck(ctx, stream, group, "1000-0", "3000-0", recent).Err(); err != nil {
			t.Fatal(err)
		}
		// 2000-0 is still pending: it and everything after it stay.
		trim(1)
		if got := ids(); len(got) != 3 || got[0] != "2000-0" {
			t.Fatalf("after trim: %v, want 2000-0, 3000-0 and the recent entry", got)
		}
		if err := tg.Client.XAck(ctx, stream, group, "2000-0").Err(); err != nil {
			t.Fatal(err)
		}
		// Acknowledged and older than the retention: gone; recent: kept.
		trim(2)
		if got := ids(); len(got) != 1 || got[0] != recent {
			t.Fatalf("after trim: %v, want only %s", got, recent)
		}
	})
}
