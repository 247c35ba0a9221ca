package lua

import "context"

// Failure outcomes of failures.lua.
const (
	OutcomeFailed    = "failed"    // a crash or timeout
	OutcomeAuth      = "auth"      // the login was refused
	OutcomeSucceeded = "succeeded" // a turn that worked
)

// FailureArgs are the inputs of failures.lua.
type FailureArgs struct {
	SubID string
	// Outcome is OutcomeFailed, OutcomeAuth or OutcomeSucceeded (which
	// resets the counts and ends an auth episode).
	Outcome string
	// Threshold is how many failures in a row trip the cooldown (≥ 1).
	Threshold  int
	CooldownMS int64
	// AuthMinMS and AuthMaxMS bound the auth cooldown: the first refused
	// login cools down AuthMinMS, each further one in a row twice as long,
	// up to AuthMaxMS.
	AuthMinMS, AuthMaxMS int64
}

// FailureReply is failures.lua's answer.
type FailureReply struct {
	// Failures is the count in a row after the call (0 after a trip or a
	// success); for an auth outcome, the refused logins in a row.
	Failures int
	// Tripped: this call put the subscription in cooldown (with its
	// limit_reached or, first of an auth episode, auth_failed event); for a
	// success, it ended an auth episode (recovered event).
	Tripped bool
	Status  string
	UntilMS int64
}

// Failure runs failures.lua: it counts one failed, refused (or successful)
// turn of a subscription in Redis, so every replica adds to the same count.
func Failure(ctx context.Context, c Scripter, k Keys, a FailureArgs) (FailureReply, error) {
	cooldown := a.CooldownMS
	if a.Outcome == OutcomeAuth {
		cooldown = a.AuthMinMS
	}
	keys := []string{k.Sub(a.SubID), k.Events(), k.Rank(), k.RankAt()}
	v, err := run(ctx, c, "failures "+a.SubID, failuresScript, keys, 4, a.SubID, a.Outcome, a.Threshold, cooldown,
		a.AuthMaxMS)
	if err != nil {
		return FailureReply{}, err
	}
	return FailureReply{Failures: v.int(1), Tripped: v.code() == CodeOK, Status: v.str(2), UntilMS: v.int64(3)}, nil
}
