package pool

import (
	"context"
	"testing"
	"time"
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
	p := New(e.Client, testConfig(1, 100, 5), Options{})
	if err := p.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.Client.Set(ctx, "k", "v", 50*time.Millisecond).Err(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for e.Client.Exists(ctx, "k").Val() == 1 {
		if time.Now().After(deadline) {
			t.Fatal("key with a 50 ms TTL still there after 2 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if a := mustAllocate(t, p, "s1", PriorityNormal); a.Kind != Bound {
		t.Fatalf("allocate on embedded Redis: %+v", a)
	}
}
