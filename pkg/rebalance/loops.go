package rebalance

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/authpool/authpool/internal/backoff"
	"github.com/authpool/authpool/pkg/pool"
)

// fenced is what the loops need of the pool.
type fenced interface {
	Maintain(ctx context.Context, epoch int64) (pool.MaintainResult, error)
	Rebalance(ctx context.Context, epoch int64) (pool.RebalanceResult, error)
}

var _ fenced = (*pool.Pool)(nil)

// LoopsParams configure Loops.
type LoopsParams struct {
	// Pool is the pool to maintain and rebalance. Required.
	Pool *pool.Pool
	// Interval between cycles. Default rebalancing.intervalSeconds of the
	// pool's config.
	Interval time.Duration
	// Reporter receives each cycle and each handled error. Default NopReporter.
	Reporter Reporter
}

// retryBase is the first wait after a failed cycle; it doubles up to the
// interval, so a restarted Redis is used again within seconds.
const retryBase = time.Second

// Loops are the leader's periodic work (DESIGN §6): every interval,
// maintain, then rebalance when rebalancing is enabled, each fenced by the
// leader's epoch.
type Loops struct {
	pool      fenced
	interval  time.Duration
	rebalance bool
	report    Reporter
}

// NewLoops checks p and returns Loops.
func NewLoops(p LoopsParams) (*Loops, error) {
	if p.Pool == nil {
		return nil, fmt.Errorf("%w: Pool is required", ErrInvalidParams)
	}
	if p.Interval < 0 {
		return nil, fmt.Errorf("%w: Interval must not be negative", ErrInvalidParams)
	}
	cfg := p.Pool.Config()
	if p.Interval == 0 {
		p.Interval = time.Duration(cfg.Rebalancing.IntervalSeconds) * time.Second
	}
	if p.Reporter == nil {
		p.Reporter = NopReporter{}
	}
	return &Loops{pool: p.Pool, interval: p.Interval, rebalance: cfg.RebalancingEnabled(), report: p.Reporter}, nil
}

// Interval is the time between cycles.
func (l *Loops) Interval() time.Duration { return l.interval }

// Run is a leader's Work: a cycle at once, then one every interval, until
// ctx ends (it returns nil) or a fenced call finds that the epoch moved on
// (it returns an error matching pool.ErrNotLeader). A failed cycle is
// reported and retried after a back-off shorter than the interval.
func (l *Loops) Run(ctx context.Context, epoch int64) error {
	failures := 0
	for {
		_, err := l.Cycle(ctx, epoch)
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, pool.ErrNotLeader):
			return err
		}
		wait := l.interval
		if err != nil {
			failures++
			wait = min(wait, backoff.Next(failures, retryBase, l.interval))
		} else {
			failures = 0
		}
		if !backoff.Sleep(ctx, wait, nil) {
			return nil
		}
	}
}

// Cycle runs one cycle under epoch and reports it: Maintain, then Rebalance
// when rebalancing is enabled. Errors (reported too) match pool.ErrNotLeader
// when the epoch has moved on; nothing was changed then.
func (l *Loops) Cycle(ctx context.Context, epoch int64) (CycleResult, error) {
	start := time.Now()
	res := CycleResult{Epoch: epoch, RebalancingEnabled: l.rebalance}
	var err error
	res.Maintain, err = l.pool.Maintain(ctx, epoch)
	if err != nil {
		err = fmt.Errorf("rebalance: maintain: %w", err)
	} else if l.rebalance {
		res.Rebalance, err = l.pool.Rebalance(ctx, epoch)
		if err != nil {
			err = fmt.Errorf("rebalance: rebalance: %w", err)
		}
	}
	res.Duration, res.Err = time.Since(start), err
	if ctx.Err() == nil { // a cycle cut short by the end of the tenure is no news
		l.report.Cycle(ctx, res)
	}
	return res, err
}
