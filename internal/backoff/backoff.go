// Package backoff is the one retry wait of authpool: exponential, capped,
// with equal jitter. Every loop that retries Redis or a webhook uses it, so
// replicas that failed together come back apart, and never sooner than half
// the nominal wait (full jitter could retry at once, which a Redis that just
// came back does not need from every replica).
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Sleep waits d, or until wake fires (nil: never), or ctx ends; it reports
// false when ctx ended. d ≤ 0 does not wait.
func Sleep(ctx context.Context, d time.Duration, wake <-chan struct{}) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-wake:
	case <-t.C:
	}
	return true
}

// Next is the wait before retry number attempt (1 for the first retry):
// base·2^(attempt−1), capped at max, then drawn uniformly from [d/2, d]
// (equal jitter). An attempt below 1 counts as 1; a max below base is base.
func Next(attempt int, base, max time.Duration) time.Duration {
	return Jitter(Exp(attempt, base, max))
}

// Exp is Next without the jitter: base·2^(attempt−1), capped at max.
func Exp(attempt int, base, max time.Duration) time.Duration {
	max = maxOf(max, base)
	d := base
	for i := 1; i < attempt && d < max; i++ {
		d *= 2
	}
	return min(d, max)
}

// Jitter draws uniformly from [d/2, d], so waits that start together drift
// apart.
func Jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	half := d / 2
	return half + rand.N(d-half+1)
}

func maxOf(a, b time.Duration) time.Duration {
	if a > b {
		return a
	}
	return b
}
