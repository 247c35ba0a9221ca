package pool

import (
	"errors"
	"fmt"
	"time"

	"github.com/authpool/authpool/pkg/lua"
)

// Sentinel errors of the pool. Callers match them with errors.Is; the HTTP
// edge maps them to statuses in one place.
var (
	// ErrInvalidSession: a session id that does not match ^[A-Za-z0-9_-]{1,128}$.
	ErrInvalidSession = errors.New("pool: invalid session id")
	// ErrInvalidOwner: an owner (API key id) that does not match ^[A-Za-z0-9_-]{1,128}$.
	ErrInvalidOwner = errors.New("pool: invalid session owner")
	// ErrInvalidRequestID: a request id that does not match ^[A-Za-z0-9_-]{1,128}$.
	ErrInvalidRequestID = errors.New("pool: invalid request id")
	// ErrInvalidPriority: a priority other than low, normal or high.
	ErrInvalidPriority = errors.New("pool: invalid priority")
	// ErrInvalidStatus: a status Mark does not set.
	ErrInvalidStatus = errors.New("pool: invalid status")
	// ErrInvalidUsage: negative, non-finite or out-of-bounds cost or tokens
	// (see MaxCostUSD, MaxRequestTokens).
	ErrInvalidUsage = errors.New("pool: invalid usage")
	// ErrUnknownSubscription: no subscription with that id.
	ErrUnknownSubscription = errors.New("pool: unknown subscription")
	// ErrSessionNotFound: no live session with that id, or one that belongs
	// to another owner (API key).
	ErrSessionNotFound = errors.New("pool: session not found")
	// ErrTurnNotInFlight: a heartbeat or end for a turn whose session is
	// gone (released, expired) or on the fallback: nothing to keep active.
	ErrTurnNotInFlight = errors.New("pool: turn not in flight")
	// ErrPoolExhausted: no subscription is eligible and fallback is off. The
	// error is an *ExhaustedError carrying the reason and the retry delay.
	ErrPoolExhausted = errors.New("pool: pool exhausted")
	// ErrSubscriptionNotFound: an operator named a subscription that is not
	// in the pool, or one the config removed.
	ErrSubscriptionNotFound = errors.New("pool: subscription not found")
	// ErrRefused: an operator's move the state does not allow (the
	// destination is full, not usable, or the session is already there).
	ErrRefused = errors.New("pool: refused")
	// ErrNotLeader: a fenced operation ran with an epoch that has moved on;
	// nothing was changed.
	ErrNotLeader = errors.New("pool: fencing epoch moved on (not the leader)")
)

// ExhaustedError is returned (wrapping ErrPoolExhausted) when no subscription
// can take a request and fallback is off.
type ExhaustedError struct {
	// Reason is why no subscription was eligible: capacity, weekly_budget,
	// all_unavailable or no_subscriptions.
	Reason string
	// RetryAfter is the time until the earliest limited or cooling-down
	// subscription resets; zero when unknown.
	RetryAfter time.Duration
}

func (e *ExhaustedError) Error() string {
	return fmt.Sprintf("%s (%s)", ErrPoolExhausted, e.Reason)
}

// Is makes errors.Is(err, ErrPoolExhausted) true.
func (e *ExhaustedError) Is(target error) bool { return target == ErrPoolExhausted }

func mapLuaErr(op string, err error) error {
	switch {
	case errors.Is(err, lua.ErrStaleEpoch):
		return fmt.Errorf("pool: %s: %w", op, ErrNotLeader)
	default:
		return fmt.Errorf("pool: %s: %w", op, err)
	}
}
