package gateway

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authpool/authpool/pkg/pool"
)

// flakySettle fails while down is set, and records every settled id once.
type flakySettle struct {
	down    atomic.Bool
	mu      sync.Mutex
	settled map[string]int
}

func (f *flakySettle) settle(_ context.Context, u pool.Usage) (pool.Settlement, error) {
	if f.down.Load() {
		return pool.Settlement{}, errors.New("dial tcp: connection refused")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.settled[u.RequestID]++
	return pool.Settlement{}, nil
}

func (f *flakySettle) count(id string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.settled[id]
}

type dropLog struct {
	mu      sync.Mutex
	reasons map[string]string // settle id → reason
	backlog int
}

func newTestRetry(f *flakySettle, size int, d *dropLog) *settleRetry {
	return newSettleRetry(settleRetryParams{Settle: f.settle, Size: size, MaxAge: time.Hour,
		OnSettled: func(*pendingSettle, pool.Settlement) {},
		OnDrop: func(p *pendingSettle, reason string, _ error) {
			d.mu.Lock()
			d.reasons[p.usage.RequestID] = reason
			d.mu.Unlock()
		},
		OnBacklog: func(delta int) { d.mu.Lock(); d.backlog += delta; d.mu.Unlock() }})
}

func pending(id string) *pendingSettle {
	return &pendingSettle{ctx: context.Background(), usage: pool.Usage{RequestID: id}, since: time.Now()}
}

// TestSettleRetryLandsDropsAndDrains (issue 8, finding 5): queued
// settlements land once Redis is back; a full queue drops (and reports) the
// surplus; Shutdown drains what is queued, and drops what cannot land by its
// deadline.
func TestSettleRetryLandsDropsAndDrains(t *testing.T) {
	f := &flakySettle{settled: map[string]int{}}
	f.down.Store(true)
	d := &dropLog{reasons: map[string]string{}}
	q := newTestRetry(f, 2, d)
	q.Start()
	q.add(pending("a"))
	q.add(pending("b"))
	time.Sleep(50 * time.Millisecond) // the worker holds a; b waits in the queue
	q.add(pending("c"))
	q.add(pending("d")) // over the bound
	d.mu.Lock()
	if d.reasons["d"] != dropQueueFull {
		t.Errorf("drops = %v, want d dropped as queue_full", d.reasons)
	}
	d.mu.Unlock()
	f.down.Store(false)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := q.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	for _, id := range []string{"a", "b", "c"} {
		if n := f.count(id); n != 1 {
			t.Errorf("%s settled %d times, want 1", id, n)
		}
	}
	if d.backlog != 0 {
		t.Errorf("backlog after drain = %d", d.backlog)
	}
	q.add(pending("late"))
	if d.reasons["late"] != dropShutdown {
		t.Errorf("a settlement after shutdown was not dropped: %v", d.reasons)
	}

	// Redis never comes back: the deadline drops what is left.
	f2 := &flakySettle{settled: map[string]int{}}
	f2.down.Store(true)
	d2 := &dropLog{reasons: map[string]string{}}
	q2 := newTestRetry(f2, 8, d2)
	q2.Start()
	q2.add(pending("x"))
	q2.add(pending("y"))
	ctx2, cancel2 := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel2()
	if err := q2.Shutdown(ctx2); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("shutdown = %v, want the deadline", err)
	}
	if d2.reasons["x"] != dropShutdown || d2.reasons["y"] != dropShutdown || d2.backlog != 0 {
		t.Errorf("drops = %v, backlog %d", d2.reasons, d2.backlog)
	}
}
