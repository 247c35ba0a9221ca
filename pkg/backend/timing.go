package backend

import (
	"context"
	"time"
)

// RunTimes are the milestones of one CLI run, for a caller that wants its
// phase breakdown (the gateway's Server-Timing): when the process started,
// when its first line of output arrived and when it exited. Zero fields
// were not reached. The last run under a context wins.
type RunTimes struct {
	Started, FirstByte, Exited time.Time
}

type runTimesKey struct{}

// WithRunTimes returns ctx asking the claude-cli backend to record its runs'
// milestones in t.
func WithRunTimes(ctx context.Context, t *RunTimes) context.Context {
	return context.WithValue(ctx, runTimesKey{}, t)
}

// runTimesOf is the RunTimes ctx asks for, or nil.
func runTimesOf(ctx context.Context) *RunTimes {
	t, _ := ctx.Value(runTimesKey{}).(*RunTimes)
	return t
}
