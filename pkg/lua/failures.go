package lua

import (
	"context"
	_ "embed"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"
)

//go:embed failures.lua
var failuresSrc string

var failuresScript = redis.NewScript(libSrc + failuresSrc)

// The script joins the others here rather than in scripts.go's list, so the
// file stays the script's one home; Load and Loaded see it all the same.
func init() { all = append(all, failuresScript) }

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
	v, err := failuresScript.Run(ctx, c, keys, a.SubID, outcome, a.Threshold, a.CooldownMS).Slice()
	if err != nil {
		return FailureReply{}, fmt.Errorf("lua: failures: %w", err)
	}
	if len(v) != 4 {
		return FailureReply{}, fmt.Errorf("lua: failures: %w", ErrReply)
	}
	if toInt(v[0]) == CodeNotFound {
		return FailureReply{}, fmt.Errorf("lua: failures %s: %w", a.SubID, ErrNotFound)
	}
	until, _ := strconv.ParseInt(toStr(v[3]), 10, 64)
	return FailureReply{Failures: toInt(v[1]), Tripped: toInt(v[0]) == CodeOK, Status: toStr(v[2]),
		UntilMS: until}, nil
}
