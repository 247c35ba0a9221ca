package pool

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/authpool/authpool/pkg/lua"
)

// Usage windows of a subscription, as the CLI names them.
const (
	WindowFiveHour = "five_hour"
	WindowSevenDay = "seven_day"
)

// Sources of a window's figure in a Snapshot.
const (
	// SourceObserved: a rate_limit_event reading whose window has not reset.
	SourceObserved = "observed"
	// SourceReset: the observed window has reset since; it counts as 0
	// until the next reading.
	SourceReset = "reset"
	// SourceEstimate: nothing observed; the weeklyBudget estimate stands.
	SourceEstimate = "estimate"
)

// Observation is one window's reading from one of the CLI's
// rate_limit_event lines.
type Observation struct {
	// Window is WindowFiveHour or WindowSevenDay; others are ignored.
	Window string
	// Utilization is the fraction of the window used, 0..1; nil when the
	// CLI did not say.
	Utilization *float64
	// ResetAt is when the window resets; zero when not said.
	ResetAt time.Time
	// Status is allowed, allowed_warning, rejected, or "" (not said).
	Status string
	// ObservedAt is when the gateway read the line. It decides which of
	// two readings is newer, whichever replica records it first.
	ObservedAt time.Time
}

// ObserveResult is what recording observations did.
type ObserveResult struct {
	// Applied counts the observations newer than what was stored.
	Applied int
	// Status is the subscription's status afterwards.
	Status string
}

// Observe records a subscription's window readings, oldest first, in one
// atomic script: per window the newest observation wins, so a slower
// replica's older reading never overwrites a newer one. A usable
// subscription turns approaching on a current allowed_warning or a
// utilization at or over the approaching threshold, and the enabled
// usage_threshold rules fire once per crossing per window period. A
// rejected reading does not mark the subscription limited by itself: the
// turn it ended is a limit error, which Mark handles.
func (p *Pool) Observe(ctx context.Context, subID string, obs []Observation) (ObserveResult, error) {
	if _, ok := p.conf().byID[subID]; !ok {
		return ObserveResult{}, fmt.Errorf("pool: observe %q: %w", subID, ErrUnknownSubscription)
	}
	a := lua.ObserveArgs{SubID: subID, ApproachAt: p.conf().approachAt, Thresholds: p.conf().thresholds}
	for _, o := range obs {
		if (o.Window != WindowFiveHour && o.Window != WindowSevenDay) || o.ObservedAt.IsZero() {
			continue
		}
		lo := lua.Observation{Window: o.Window, Utilization: o.Utilization, Status: o.Status,
			AtMS: o.ObservedAt.UnixMilli()}
		if !o.ResetAt.IsZero() {
			lo.ResetMS = o.ResetAt.UnixMilli()
		}
		a.Observations = append(a.Observations, lo)
	}
	if len(a.Observations) == 0 {
		return ObserveResult{}, nil
	}
	a.Rank = p.rank()
	r, err := lua.Observe(ctx, p.rdb, p.keys, a)
	if errors.Is(err, lua.ErrNotFound) {
		return ObserveResult{}, fmt.Errorf("pool: observe %q (not synced): %w", subID, ErrUnknownSubscription)
	}
	if err != nil {
		return ObserveResult{}, fmt.Errorf("pool: observe: %w", err)
	}
	return ObserveResult{Applied: r.Applied, Status: r.Status}, nil
}

// WindowStatus is one usage window of a subscription in a Snapshot.
type WindowStatus struct {
	// Utilization is the last observed fraction; nil when none was.
	Utilization *float64
	// Used is the fraction admission and health use: Utilization while the
	// window is current, 0 once it has reset; nil when nothing was observed
	// (Source estimate).
	Used *float64
	// ResetAt is the observed reset; zero when unknown.
	ResetAt time.Time
	// Status is the observed status (allowed, allowed_warning, rejected).
	Status string
	// ObservedAt is when it was observed; zero when never.
	ObservedAt time.Time
	// Current: the window has not reset since the observation.
	Current bool
	// Source is SourceObserved, SourceReset or SourceEstimate.
	Source string
}

type rawWindow struct {
	Utilization string `json:"utilization"`
	Used        string `json:"used"`
	Reset       int64  `json:"reset"`
	ObservedAt  int64  `json:"observedAt"`
	Status      string `json:"status"`
	Current     bool   `json:"current"`
	Source      string `json:"source"`
}

func (w rawWindow) status() WindowStatus {
	return WindowStatus{Utilization: optFrac(w.Utilization), Used: optFrac(w.Used), ResetAt: optMS(w.Reset),
		Status: w.Status, ObservedAt: optMS(w.ObservedAt), Current: w.Current, Source: w.Source}
}

func optFrac(s string) *float64 {
	if s == "" {
		return nil
	}
	f := atof(s)
	return &f
}
