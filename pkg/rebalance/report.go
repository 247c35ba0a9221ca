package rebalance

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"time"

	"github.com/authpool/authpool/pkg/pool"
)

// Reporter receives what the rebalancer did and the problems it handled;
// the cmd layer turns it into log lines (SlogReporter does) and metrics.
// Its methods are called from the rebalancer's goroutines and must not block.
type Reporter interface {
	// Leadership reports a change of this replica's leadership.
	Leadership(ctx context.Context, l Leadership)
	// Cycle reports a cycle (maintenance, then rebalancing), completed or
	// failed (c.Err); a failed cycle is retried after a back-off.
	Cycle(ctx context.Context, c CycleResult)
	// Error reports a problem of the election that was handled by
	// retrying; op names what failed. err never holds a secret.
	Error(ctx context.Context, op string, err error)
}

// NopReporter reports nothing.
type NopReporter struct{}

// Leadership does nothing.
func (NopReporter) Leadership(context.Context, Leadership) {}

// Cycle does nothing.
func (NopReporter) Cycle(context.Context, CycleResult) {}

// Error does nothing.
func (NopReporter) Error(context.Context, string, error) {}

// CycleResult says what one cycle did.
type CycleResult struct {
	// Epoch is the fencing epoch the cycle ran under.
	Epoch int64
	// Maintain is the maintenance pass: stale clients dropped,
	// subscriptions restored.
	Maintain pool.MaintainResult
	// RebalancingEnabled is rebalancing.enabled; false: Rebalance is zero.
	RebalancingEnabled bool
	// Rebalance is the rebalancing pass: the cost gap, whether it exceeded
	// costGapThreshold, and the clients moved.
	Rebalance pool.RebalanceResult
	// Duration is how long the cycle took.
	Duration time.Duration
	// Err is why the cycle failed (nil: it completed). One matching
	// pool.ErrNotLeader means the epoch moved on: nothing was changed and
	// the tenure ends.
	Err error
}

// Reporters fans every report out to each of rs, in order.
func Reporters(rs ...Reporter) Reporter { return reporters(rs) }

type reporters []Reporter

func (rs reporters) Leadership(ctx context.Context, l Leadership) {
	for _, r := range rs {
		r.Leadership(ctx, l)
	}
}

func (rs reporters) Cycle(ctx context.Context, c CycleResult) {
	for _, r := range rs {
		r.Cycle(ctx, c)
	}
}

func (rs reporters) Error(ctx context.Context, op string, err error) {
	for _, r := range rs {
		r.Error(ctx, op, err)
	}
}

// Meter records the rebalancer's metrics (telemetry.Metrics is one):
// authpool_leader and authpool_rebalance_{runs_total,moves_total,duration_seconds}.
type Meter interface {
	// SetLeader records whether this replica leads.
	SetLeader(leading bool)
	// RebalanceRun counts one cycle with its result, moves and duration.
	RebalanceRun(ctx context.Context, result string, moves int, d time.Duration)
}

// Results of a cycle passed to Meter.RebalanceRun.
const (
	ResultOK     = "ok"     // the cycle completed
	ResultError  = "error"  // it failed (Redis); it is retried
	ResultFenced = "fenced" // the epoch moved on: nothing changed, the tenure ended
)

// MetricsReporter adapts m to Reporter.
func MetricsReporter(m Meter) Reporter { return metricsReporter{m: m} }

type metricsReporter struct{ m Meter }

func (r metricsReporter) Leadership(_ context.Context, l Leadership) { r.m.SetLeader(l.Leader) }

func (r metricsReporter) Cycle(ctx context.Context, c CycleResult) {
	result := ResultOK
	switch {
	case errors.Is(c.Err, pool.ErrNotLeader):
		result = ResultFenced
	case c.Err != nil:
		result = ResultError
	}
	r.m.RebalanceRun(ctx, result, c.Rebalance.Moved, c.Duration)
}

func (metricsReporter) Error(context.Context, string, error) {}

// SlogReporter adapts l to Reporter for the cmd layer, with structured
// equivalents of the seeds' lines ("Rebalancing needed: cost gap $10.00",
// "Moved 2 clients from sub1 to sub2"): a cycle that moved nothing and did
// no maintenance logs at DEBUG only.
func SlogReporter(l *slog.Logger) Reporter { return slogReporter{l: l} }

type slogReporter struct{ l *slog.Logger }

func (s slogReporter) Leadership(ctx context.Context, l Leadership) {
	if l.Leader {
		s.l.InfoContext(ctx, "Gained leadership", "holder", l.Holder, "epoch", l.Epoch, "since", l.Since)
		return
	}
	if l.Cause == nil {
		return // the initial report of a standby
	}
	level := slog.LevelWarn
	if errors.Is(l.Cause, ErrResigned) {
		level = slog.LevelInfo
	}
	s.l.Log(ctx, level, "Lost leadership", "holder", l.Holder, "epoch", l.Epoch, "cause", l.Cause.Error())
}

func (s slogReporter) Cycle(ctx context.Context, c CycleResult) {
	if c.Err != nil {
		// A fenced refusal is told by the "Lost leadership" that follows.
		if !errors.Is(c.Err, pool.ErrNotLeader) {
			s.l.WarnContext(ctx, "Rebalancer cycle failed; retrying", "epoch", c.Epoch, "error", c.Err.Error())
		}
		return
	}
	m, r := c.Maintain, c.Rebalance
	if m.DroppedClients > 0 || m.Restored > 0 {
		s.l.InfoContext(ctx, "Maintenance", "epoch", c.Epoch,
			"droppedClients", m.DroppedClients, "restored", m.Restored)
	}
	if r.Needed {
		s.l.InfoContext(ctx, "Rebalancing needed", "costGap", usd(r.Gap), "from", r.From, "to", r.To)
	}
	if r.Moved > 0 {
		s.l.InfoContext(ctx, "Moved clients", "moved", r.Moved, "from", r.From, "to", r.To)
	}
	s.l.DebugContext(ctx, "Rebalancer cycle", "epoch", c.Epoch, "rebalancingEnabled", c.RebalancingEnabled,
		"costGap", usd(r.Gap), "moved", r.Moved, "durationMs", c.Duration.Milliseconds())
}

func (s slogReporter) Error(ctx context.Context, op string, err error) {
	s.l.WarnContext(ctx, "Rebalancer could not "+op+"; retrying", "error", err.Error())
}

// usd formats dollars the way the seeds' lines do: "$10.00".
func usd(v float64) string { return "$" + strconv.FormatFloat(v, 'f', 2, 64) }

var (
	_ Reporter = NopReporter{}
	_ Reporter = reporters(nil)
	_ Reporter = metricsReporter{}
	_ Reporter = slogReporter{}
)
