package pool_test

import (
	"context"
	"testing"
	"time"

	"github.com/authpool/authpool/internal/pooltest"
	"github.com/authpool/authpool/internal/testutil"

	. "github.com/authpool/authpool/pkg/pool"
)

// The embedded Redis expires keys as time passes (miniredis alone does not),
// so sessions of the single-process default really go stale.
func TestEmbeddedExpiresKeys(t *testing.T) {
	e, err := NewEmbedded(10 * time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ctx := context.Background()
	p := New(e.Client, pooltest.Config(1, 100, 5), Options{})
	if err := p.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.Client.Set(ctx, "k", "v", 50*time.Millisecond).Err(); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 2*time.Second, "the expiry of a key with a 50 ms TTL",
		func() bool { return e.Client.Exists(ctx, "k").Val() == 0 })
	if a := mustAllocate(t, p, "s1", PriorityNormal); a.Kind != Bound {
		t.Fatalf("allocate on embedded Redis: %+v", a)
	}
}
