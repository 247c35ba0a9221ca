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

// Issue 8, finding 7: Redis loses its data (a restart without persistence,
// a failover to an empty replica, a FLUSHALL) while a leader is paused. The
// leader that promotes afterwards must get an epoch the paused one's fenced
// calls cannot match; a counter that restarts at 1 gave it the same epoch.
func TestDeposedLeaderIsFencedAfterDataLoss(t *testing.T) {
	tg := redistest.Real(t)
	ctx := context.Background()
	p := newPool(t, tg.Client, testConfig(2, 100, 10))
	keys := keysOf(p)

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
