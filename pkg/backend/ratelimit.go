package backend

import (
	"math"
	"time"
)

// Statuses of a rate_limit_event.
const (
	RateLimitAllowed  = "allowed"
	RateLimitWarning  = "allowed_warning"
	RateLimitRejected = "rejected"
)

// Windows of a rate_limit_event.
const (
	WindowFiveHour = "five_hour"
	WindowSevenDay = "seven_day"
)

// RateLimit is one rate_limit_event of the CLI (fixtures/claude-cli,
// rate-limit-events.jsonl): where the subscription's usage windows stood.
// The CLI's versions differ in what they print, so every field is optional.
type RateLimit struct {
	// Status is allowed, allowed_warning or rejected; "" when absent.
	Status string
	// Window is the window the status speaks of (five_hour, seven_day); ""
	// when absent.
	Window string
	// ResetsAt is when that window resets; zero when absent.
	ResetsAt time.Time
	// Utilization is the fraction of that window used, 0..1; nil when absent.
	Utilization *float64
	// Windows are the readings of every window the event carries
	// (unifiedWindows), keyed by window name.
	Windows map[string]WindowReading
	// ObservedAt is when the line was read: the pool keeps the newest
	// reading of each window, ordered by this time, not by when a replica
	// gets round to recording it.
	ObservedAt time.Time
}

// WindowReading is one window of unifiedWindows.
type WindowReading struct {
	// Utilization is the fraction used, 0..1; nil when absent.
	Utilization *float64
	// ResetsAt is when the window resets; zero when absent.
	ResetsAt time.Time
}

// rateLimitInfo is rate_limit_info as printed. Numbers decode as float64
// whether or not they have a point (utilization is the integer 1 at
// rejection).
type rateLimitInfo struct {
	Status         string   `json:"status"`
	ResetsAt       *float64 `json:"resetsAt"`
	RateLimitType  string   `json:"rateLimitType"`
	Utilization    *float64 `json:"utilization"`
	UnifiedWindows map[string]struct {
		Utilization *float64 `json:"utilization"`
		ResetsAt    *float64 `json:"resetsAt"`
	} `json:"unifiedWindows"`
}

// knownStatus is s when it is one of the statuses the CLI prints, else "":
// the status is stored in Redis and shown by the admin API, so nothing else
// passes.
func knownStatus(s string) string {
	switch s {
	case RateLimitAllowed, RateLimitWarning, RateLimitRejected:
		return s
	}
	return ""
}

// maxWindows bounds the windows kept from one event.
const maxWindows = 8

func (i *rateLimitInfo) reading() RateLimit {
	r := RateLimit{Status: knownStatus(i.Status), Window: clip(i.RateLimitType), ResetsAt: unixSeconds(i.ResetsAt),
		Utilization: fraction(i.Utilization)}
	for name, w := range i.UnifiedWindows {
		if len(r.Windows) == maxWindows {
			break
		}
		if r.Windows == nil {
			r.Windows = map[string]WindowReading{}
		}
		r.Windows[clip(name)] = WindowReading{Utilization: fraction(w.Utilization), ResetsAt: unixSeconds(w.ResetsAt)}
	}
	return r
}

// clip bounds a name the CLI printed before it is kept.
func clip(s string) string {
	if len(s) > 32 {
		return s[:32]
	}
	return s
}

// unixSeconds is a resetsAt (Unix seconds) as a time; zero when absent or
// out of any sensible range.
func unixSeconds(v *float64) time.Time {
	if v == nil || math.IsNaN(*v) || *v <= 0 || *v > 1e11 {
		return time.Time{}
	}
	return time.Unix(int64(*v), 0).UTC()
}

// fraction keeps a utilization in [0, 1]; nil when absent or not a number.
func fraction(v *float64) *float64 {
	if v == nil || math.IsNaN(*v) || math.IsInf(*v, 0) {
		return nil
	}
	f := min(max(*v, 0), 1)
	return &f
}

// rejection returns the last rejected reading of rls, if any: the CLI says
// there, on its own channel, that a window is spent.
func rejection(rls []RateLimit) (RateLimit, bool) {
	for i := len(rls) - 1; i >= 0; i-- {
		if rls[i].Status == RateLimitRejected {
			return rls[i], true
		}
	}
	return RateLimit{}, false
}
