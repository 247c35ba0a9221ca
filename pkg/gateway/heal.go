package gateway

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/authpool/authpool/pkg/pool"
)

// DefaultHealInterval is Options.HealInterval's default.
const DefaultHealInterval = 2 * time.Second

// healMinTimeout bounds one heal from below, whatever the interval.
const healMinTimeout = time.Second

// healer runs pool.Heal on a ticker: a Redis restarted without persistence
// has lost the pool's subscriptions, one restarted with it the scripts, and
// the readiness probe only reads, so an unready replica (which gets no
// traffic, so no allocation re-syncs) puts them back itself.
type healer struct {
	pool     *pool.Pool
	interval time.Duration
	log      *slog.Logger
	cancel   context.CancelFunc
	done     sync.WaitGroup
}

func newHealer(p *pool.Pool, interval time.Duration, log *slog.Logger) *healer {
	return &healer{pool: p, interval: interval, log: log}
}

// start runs the loop until stop. A nil healer does nothing.
func (h *healer) start() {
	if h == nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.done.Add(1)
	go func() {
		defer h.done.Done()
		t := time.NewTicker(h.interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				h.once(ctx)
			}
		}
	}()
}

func (h *healer) once(ctx context.Context) {
	// At least healMinTimeout: loading every script takes a few tens of ms
	// under load (or -race), and a shorter interval must not starve it.
	ctx, cancel := context.WithTimeout(ctx, max(h.interval, healMinTimeout))
	defer cancel()
	healed, err := h.pool.Heal(ctx)
	if len(healed) > 0 {
		h.log.WarnContext(ctx, "redis had lost part of the pool; written back", "restored", healed)
	}
	if err != nil && ctx.Err() == nil {
		h.log.DebugContext(ctx, "pool not healed", "error", err)
	}
}

// stop ends the loop and waits for it. A nil healer does nothing.
func (h *healer) stop() {
	if h == nil || h.cancel == nil {
		return
	}
	h.cancel()
	h.done.Wait()
}
