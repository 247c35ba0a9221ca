package gateway

import (
	"context"
	"errors"
	"time"

	"github.com/authpool/authpool/pkg/backend"
	"github.com/authpool/authpool/pkg/pool"
)

// observeLimits records the CLI's rate_limit_event readings of a turn, whether it
// succeeded or hit a limit, before the turn is settled or judged: the pool
// plans against the real windows, not only the weeklyBudget estimate. A
// limit error without a result still says which window it rejected and
// when that resets. A failure is logged: the next turn observes again.
func (s *Server) observeLimits(ctx context.Context, subID string, res *backend.Result, err error) {
	var rls []backend.RateLimit
	var le *backend.LimitError
	switch {
	case res != nil:
		rls = res.RateLimits
	case errors.As(err, &le) && le.Result != nil:
		rls = le.Result.RateLimits
	case le != nil && le.Window != "":
		rls = []backend.RateLimit{{Status: backend.RateLimitRejected, Window: le.Window, ResetsAt: le.ResetAt,
			ObservedAt: time.Now()}}
	}
	obs := observations(rls)
	if len(obs) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), bookkeepingTimeout)
	defer cancel()
	if _, err := s.pool.Observe(ctx, subID, obs); err != nil {
		s.log.WarnContext(ctx, "rate limit readings not recorded", "subscription", subID, "error", err)
	}
}

// observations turns rate_limit_event readings into per-window
// observations, oldest first. An event speaks of its binding window
// (rateLimitType: status, utilization, reset) and, in newer CLIs, of both
// windows (unifiedWindows: utilization and reset); the binding window's own
// fields win where both say something. An event that names no window (a
// bare one) observes nothing.
func observations(rls []backend.RateLimit) []pool.Observation {
	var out []pool.Observation
	for _, r := range rls {
		at := r.ObservedAt
		if at.IsZero() {
			at = time.Now()
		}
		for _, w := range []string{pool.WindowFiveHour, pool.WindowSevenDay} {
			uw, unified := r.Windows[w]
			top := r.Window == w
			if !unified && !top {
				continue
			}
			o := pool.Observation{Window: w, Utilization: uw.Utilization, ResetAt: uw.ResetsAt, ObservedAt: at}
			if top {
				o.Status = r.Status
				if r.Utilization != nil {
					o.Utilization = r.Utilization
				}
				if !r.ResetsAt.IsZero() {
					o.ResetAt = r.ResetsAt
				}
			}
			out = append(out, o)
		}
	}
	return out
}
