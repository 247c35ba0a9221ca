package pool_test

import (
	"context"
	"testing"
	"time"

	"github.com/authpool/authpool/internal/pooltest"
	"github.com/authpool/authpool/internal/redistest"

	. "github.com/authpool/authpool/pkg/pool"
)

// TestReloadNewestConfigWins: two replicas on one config; one reloads a
// config with a third subscription. The other, still on the old one, can
// neither remove it nor bind to it, says it is behind, and moves a session
// bound there instead of failing it. Events are written once per change.
func TestReloadNewestConfigWins(t *testing.T) {
	redistest.Each(t, func(t *testing.T, tg *redistest.Target) {
		ctx := context.Background()
		oldCfg := pooltest.Config(2, 100, 20)
		oldCfg.Pool = tg.Pool
		a := newPool(t, tg, oldCfg)
		b := newPool(t, tg, pooltest.Config(2, 100, 20))

		newCfg := pooltest.Config(3, 100, 20)
		newCfg.Pool = tg.Pool
		time.Sleep(2 * time.Millisecond) // a later load time
		res, err := b.Reload(ctx, newCfg)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Added) != 1 || res.Behind {
			t.Fatalf("reload = %+v", res)
		}
		if got := len(events(t, tg, b, "subscription_added")); got != 1 {
			t.Errorf("subscription_added events = %d, want 1", got)
		}
		if got := len(events(t, tg, b, "config_reloaded")); got != 1 {
			t.Errorf("config_reloaded events = %d, want 1", got)
		}
		newID := res.Added[0]

		// The old replica syncs again (a restart of its healer, a SIGHUP
		// with the old file): nothing is removed, it is behind.
		if err := a.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		if !a.Behind() || b.Behind() {
			t.Fatalf("behind: a=%v b=%v", a.Behind(), b.Behind())
		}
		st, err := b.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range st.Subscriptions {
			if s.ID == newID && s.Status == StatusRemoved {
				t.Fatalf("the old replica removed %s", newID)
			}
		}

		// The new replica binds sessions to the new subscription (the
		// fewest clients wins ties); the old one never does.
		var onNew []string
		for i := range 12 {
			sid := "b" + string(rune('a'+i))
			al := mustAllocate(t, b, sid, PriorityNormal)
			if al.Subscription.ID == newID {
				onNew = append(onNew, sid)
			}
			if al := mustAllocate(t, a, "a"+string(rune('a'+i)), PriorityNormal); al.Subscription.ID == newID {
				t.Fatalf("old replica bound a session to %s", newID)
			}
		}
		if len(onNew) == 0 {
			t.Fatal("no session on the new subscription")
		}
		// A session bound there by the new replica comes to the old one:
		// moved, not failed.
		moved, err := a.AllocateTurn(ctx, TurnRequest{SessionID: onNew[0], Priority: PriorityNormal})
		if err != nil || moved.Subscription.ID == newID || moved.Kind != Bound {
			t.Fatalf("old replica on a session of %s: %+v, %v", newID, moved, err)
		}

		// The old replica takes the new file: no longer behind.
		cfg2 := pooltest.Config(3, 100, 20)
		cfg2.Pool = tg.Pool
		if _, err := a.Reload(ctx, cfg2); err != nil {
			t.Fatal(err)
		}
		if a.Behind() {
			t.Error("a is still behind after loading the newest config")
		}
	})
}
