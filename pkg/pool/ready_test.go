package pool_test

import (
	"context"
	"errors"
	"testing"

	"github.com/authpool/authpool/internal/redistest"

	"github.com/authpool/authpool/internal/pooltest"
	. "github.com/authpool/authpool/pkg/pool"
)

// Ready only reads: a Redis that lost the pool reports it and stays as it
// is, until the allocate path re-syncs it.
func TestReadyReadsAndNeverWrites(t *testing.T) {
	redistest.Each(t, func(t *testing.T, tg *redistest.Target) {
		ctx := context.Background()
		p := newPool(t, tg, pooltest.Config(2, 100, 10))
		if err := p.Ready(ctx); err != nil {
			t.Fatalf("ready after sync: %v", err)
		}
		if err := tg.Client.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		if err := p.Ready(ctx); !errors.Is(err, ErrScriptsNotLoaded) {
			t.Fatalf("ready without scripts: %v", err)
		}
		if err := tg.Client.FlushAll(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		if err := p.Ready(ctx); !errors.Is(err, ErrScriptsNotLoaded) && !errors.Is(err, ErrNotSynced) {
			t.Fatalf("ready on an emptied Redis: %v", err)
		}
		if n, _ := tg.Client.DBSize(ctx).Result(); n != 0 {
			t.Fatalf("ready wrote %d keys", n)
		}
		mustAllocate(t, p, "s1", PriorityNormal) // the allocate path re-syncs
		if err := p.Ready(ctx); err != nil {
			t.Fatalf("ready after the re-sync: %v", err)
		}
	})
}

func TestFallbackUsage(t *testing.T) {
	redistest.Each(t, func(t *testing.T, tg *redistest.Target) {
		ctx := context.Background()
		p := newPool(t, tg, pooltest.Config(1, 100, 10))
		if u, err := p.FallbackUsage(ctx); err != nil || u != (FallbackUsage{}) {
			t.Fatalf("fallback usage before any = %+v, %v", u, err)
		}
		mustSettle(t, p, Usage{RequestID: "r1", CostUSD: 1.25, InputTokens: 10, OutputTokens: 5})
		mustSettle(t, p, Usage{RequestID: "r2", CostUSD: 0.5, InputTokens: 1})
		u, err := p.FallbackUsage(ctx)
		if err != nil || u.WeeklyUsed != 1.75 || u.Requests != 2 || u.Tokens != 16 {
			t.Fatalf("fallback usage = %+v, %v; want 1.75 USD, 2 requests, 16 tokens", u, err)
		}
	})
}

// The handles built from a pool name alone refuse a name that cannot be part
// of a key (moved from notify's option checks with the stream).
func TestNameOnlyHandlesRefuseBadNames(t *testing.T) {
	tg := redistest.Mini(t)
	for _, bad := range []string{"", "a:b", "a{b}", "a b"} {
		if _, err := NewEvents(tg.Client, bad); !errors.Is(err, ErrInvalidPoolName) {
			t.Errorf("NewEvents(%q): %v", bad, err)
		}
		if _, err := NewLeader(tg.Client, bad); !errors.Is(err, ErrInvalidPoolName) {
			t.Errorf("NewLeader(%q): %v", bad, err)
		}
		if _, err := NewRateLimiter(tg.Client, bad, 10); !errors.Is(err, ErrInvalidPoolName) {
			t.Errorf("NewRateLimiter(%q): %v", bad, err)
		}
	}
}
