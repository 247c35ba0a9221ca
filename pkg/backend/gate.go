package backend

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// queueRetryAfter is the wait suggested to a request refused for a full
// queue: turns take seconds, so a slot is likely free by then.
const queueRetryAfter = time.Second

// Load is a snapshot of a backend's concurrency.
type Load struct {
	// Running is the number of turns running.
	Running int
	// Waiting is the number of turns queued for a slot.
	Waiting int
}

// gate admits at most max turns at once and lets at most queue more wait;
// beyond that it refuses at once.
type gate struct {
	name  string
	slots chan struct{}
	queue int

	mu      sync.Mutex
	waiting int
}

func newGate(name string, max, queue int) *gate {
	return &gate{name: name, slots: make(chan struct{}, max), queue: queue}
}

// acquire waits for a slot; release it with the returned func.
func (g *gate) acquire(ctx context.Context) (func(), error) {
	release := func() { <-g.slots }
	select {
	case g.slots <- struct{}{}:
		return release, nil
	default:
	}
	g.mu.Lock()
	if g.waiting >= g.queue {
		g.mu.Unlock()
		return nil, &QueueFullError{Backend: g.name, RetryAfter: queueRetryAfter}
	}
	g.waiting++
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		g.waiting--
		g.mu.Unlock()
	}()
	select {
	case g.slots <- struct{}{}:
		return release, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: waiting for a slot of %s: %w", ErrCanceled, g.name, context.Cause(ctx))
	}
}

func (g *gate) load() Load {
	g.mu.Lock()
	defer g.mu.Unlock()
	return Load{Running: len(g.slots), Waiting: g.waiting}
}
