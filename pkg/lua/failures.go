package lua

import "context"

// FailureArgs are the inputs of failures.lua.
type FailureArgs struct {
	SubID string
	// Failed counts a crash or timeout; false is a success, which resets
	// the count.
	Failed bool
	// Threshold is how many failures in a row trip the cooldown (≥ 1).
	Threshold  int
	CooldownMS int64
}

// FailureReply is failures.lua's answer.
type FailureReply struct {
	// Failures is the count in a row after the call (0 after a trip or a
	// success).
	Failures int
	// Tripped: this call put the subscription in cooldown and wrote its
	// limit_reached event.
	Tripped bool
	Status  string
	UntilMS int64
}

// Failure runs failures.lua: it counts one failed (or successful) turn of a
// subscription in Redis, so every replica adds to the same count.
func Failure(ctx context.Context, c Scripter, k Keys, a FailureArgs) (FailureReply, error) {
	outcome := "succeeded"
	if a.Failed {
		outcome = "failed"
	}
	keys := []string{k.Sub(a.SubID), k.Events()}
	v, err := run(ctx, c, "failures "+a.SubID, failuresScript, keys, 4, a.SubID, outcome, a.Threshold, a.CooldownMS)
	if err != nil {
		return FailureReply{}, err
	}
	return FailureReply{Failures: v.int(1), Tripped: v.code() == CodeOK, Status: v.str(2), UntilMS: v.int64(3)}, nil
}
