package lua

import (
	"context"
	"strconv"
)

// Observation is one window's reading from a rate_limit_event.
type Observation struct {
	Window      string   // five_hour | seven_day
	Utilization *float64 // nil: not said
	ResetMS     int64    // 0: not said
	Status      string   // allowed | allowed_warning | rejected | "" (not said)
	// AtMS is when the gateway read the line: it orders observations
	// across replicas (newest wins).
	AtMS int64
}

// ObserveArgs are the inputs of observe.lua.
type ObserveArgs struct {
	SubID        string
	ApproachAt   float64
	Thresholds   []string
	Observations []Observation // oldest first
	Rank         RankInputs
}

// ObserveReply is observe.lua's answer.
type ObserveReply struct {
	Applied int    // observations newer than what was stored
	Status  string // the subscription's status afterwards
}

// Observe runs observe.lua: it records a subscription's window readings,
// the newest observation of each window winning.
func Observe(ctx context.Context, c Scripter, k Keys, a ObserveArgs) (ObserveReply, error) {
	keys := []string{k.Sub(a.SubID), k.Hourly(a.SubID), k.Events(), k.Clients(a.SubID), k.Rank(), k.RankAt()}
	args := make([]any, 0, 4+len(a.Thresholds)+5*len(a.Observations))
	args = append(args, a.SubID, a.ApproachAt, len(a.Thresholds))
	for _, t := range a.Thresholds {
		args = append(args, t)
	}
	args = append(args, len(a.Observations))
	for _, o := range a.Observations {
		util := ""
		if o.Utilization != nil {
			util = strconv.FormatFloat(*o.Utilization, 'f', -1, 64)
		}
		args = append(args, o.Window, util, o.ResetMS, o.Status, o.AtMS)
	}
	args = append(args, a.Rank.args()...)
	v, err := run(ctx, c, "observe "+a.SubID, observeScript, keys, 3, args...)
	if err != nil {
		return ObserveReply{}, err
	}
	return ObserveReply{Applied: v.int(1), Status: v.str(2)}, nil
}
