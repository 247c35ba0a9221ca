package pool

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/authpool/authpool/pkg/lua"
)

// FailureResult is what a failed turn did to its subscription.
type FailureResult struct {
	// Failures is the count of failures in a row after this one (0 when it
	// tripped the cooldown).
	Failures int
	// Tripped: this failure reached the threshold and put the subscription
	// in cooldown, with a limit_reached event (reason "failures"). Exactly
	// one of the replicas that failed at once sees it.
	Tripped bool
	// Status and Until are the subscription's status after the call.
	Status string
	Until  time.Time
}

// Failed counts a crash or timeout of a subscription's backend. The count is
// kept in Redis, so the failures of every replica add up: FailureThreshold of
// them in a row, wherever they happened, put the subscription in cooldown
// for the pool's Cooldown, as Mark with reason "failures" would.
func (p *Pool) Failed(ctx context.Context, subID string) (FailureResult, error) {
	return p.failure(ctx, subID, lua.OutcomeFailed)
}

// Succeeded ends a subscription's run of failures: the next failure counts
// from one again.
func (p *Pool) Succeeded(ctx context.Context, subID string) error {
	_, err := p.failure(ctx, subID, lua.OutcomeSucceeded)
	return err
}

// The auth cooldown: AuthCooldownMin for the first refused login of an
// episode, doubling with each further one in a row, at most AuthCooldownMax
// (a login that is gone stays gone until someone logs in again; retrying it
// every five minutes only fills the logs).
const (
	AuthCooldownMin = 5 * time.Minute
	AuthCooldownMax = 6 * time.Hour
)

// AuthFailed counts a refused login of a subscription in Redis, where every
// replica's add up: it goes to cooldown (reason "auth") for AuthCooldownMin,
// doubled for each further refusal in a row up to AuthCooldownMax, and the
// first refusal of an episode writes one auth_failed event (critical) that
// says what to do. A refusal while the subscription already cools down for
// its login (a turn that started earlier) changes nothing. The first turn
// that succeeds afterwards ends the episode with a recovered event
// (Succeeded).
func (p *Pool) AuthFailed(ctx context.Context, subID string) (FailureResult, error) {
	return p.failure(ctx, subID, lua.OutcomeAuth)
}

// failure counts one outcome of a subscription's turn in failures.lua.
func (p *Pool) failure(ctx context.Context, subID string, outcome string) (FailureResult, error) {
	if _, ok := p.conf().byID[subID]; !ok {
		return FailureResult{}, fmt.Errorf("pool: failures of %q: %w", subID, ErrUnknownSubscription)
	}
	r, err := lua.Failure(ctx, p.rdb, p.keys, lua.FailureArgs{SubID: subID, Outcome: outcome,
		Threshold: p.threshold, CooldownMS: p.cooldown.Milliseconds(),
		AuthMinMS: AuthCooldownMin.Milliseconds(), AuthMaxMS: AuthCooldownMax.Milliseconds()})
	if errors.Is(err, lua.ErrNotFound) {
		return FailureResult{}, fmt.Errorf("pool: failures of %q (not synced): %w", subID, ErrUnknownSubscription)
	}
	if err != nil {
		return FailureResult{}, fmt.Errorf("pool: failures: %w", err)
	}
	res := FailureResult{Failures: r.Failures, Tripped: r.Tripped, Status: r.Status}
	if r.UntilMS > 0 {
		res.Until = time.UnixMilli(r.UntilMS)
	}
	return res, nil
}
