package pool

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/authpool/authpool/pkg/lua"
)

// Errors of Ready and of the name-only constructors.
var (
	// ErrRedisUnavailable: Redis does not answer.
	ErrRedisUnavailable = errors.New("pool: redis does not answer")
	// ErrScriptsNotLoaded: Redis answers but lacks some of the pool's
	// scripts (restarted, or its script cache flushed).
	ErrScriptsNotLoaded = errors.New("pool: scripts are not loaded")
	// ErrNotSynced: Redis answers but holds no subscription set (never
	// synced, or its data was lost).
	ErrNotSynced = errors.New("pool: subscription set missing (not synced)")
	// ErrInvalidPoolName: a pool name that does not match ^[A-Za-z0-9_-]{1,128}$.
	ErrInvalidPoolName = errors.New("pool: invalid pool name")
	// ErrInvalidSubject: a rate-limit subject that does not match ^[A-Za-z0-9_-]{1,128}$.
	ErrInvalidSubject = errors.New("pool: invalid rate-limit subject")
	// ErrInvalidLeader: a promotion without a lock value.
	ErrInvalidLeader = errors.New("pool: invalid leader")
)

// Ready reports whether the pool can serve: Redis answers, the scripts are
// loaded and the subscription set is there. It only reads: an emptied Redis
// is written again by the paths that find the set empty and re-sync
// (allocate, and the leader's rebalancing pass); missing scripts
// are LoadScripts' to load. The error matches ErrRedisUnavailable,
// ErrScriptsNotLoaded or ErrNotSynced.
func (p *Pool) Ready(ctx context.Context) error {
	if err := lua.Ping(ctx, p.rdb); err != nil {
		return fmt.Errorf("%w: %w", ErrRedisUnavailable, err)
	}
	loaded, err := lua.Loaded(ctx, p.rdb)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrRedisUnavailable, err)
	}
	if !loaded {
		return ErrScriptsNotLoaded
	}
	n, err := lua.MemberCount(ctx, p.rdb, p.keys)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrRedisUnavailable, err)
	}
	if n == 0 {
		return ErrNotSynced
	}
	return nil
}

// LoadScripts loads every script into Redis' script cache. It writes no
// key: a Redis restarted with persistence keeps the pool's data but not its
// scripts, and a probe may load them without touching the pool.
func (p *Pool) LoadScripts(ctx context.Context) error {
	if err := lua.Load(ctx, p.rdb); err != nil {
		return fmt.Errorf("pool: %w", err)
	}
	return nil
}

// Ping checks that Redis answers, nothing more.
func (p *Pool) Ping(ctx context.Context) error {
	if err := lua.Ping(ctx, p.rdb); err != nil {
		return fmt.Errorf("%w: %w", ErrRedisUnavailable, err)
	}
	return nil
}

// FallbackUsage is the usage served by the fallback backend, kept like a
// subscription's (authpool:{P}:fallback).
type FallbackUsage struct {
	// WeeklyUsed is the rolling 7-day cost in USD, as of the last settle.
	WeeklyUsed float64
	// Requests and Tokens are totals since the pool's data began.
	Requests, Tokens int64
}

// FallbackUsage reads the fallback's usage (zero before any).
func (p *Pool) FallbackUsage(ctx context.Context) (FallbackUsage, error) {
	h, err := lua.FallbackFields(ctx, p.rdb, p.keys)
	if err != nil {
		return FallbackUsage{}, fmt.Errorf("pool: fallback usage: %w", err)
	}
	req, _ := strconv.ParseInt(h["requests"], 10, 64)
	tok, _ := strconv.ParseInt(h["tokens"], 10, 64)
	return FallbackUsage{WeeklyUsed: atof(h["weeklyUsed"]), Requests: req, Tokens: tok}, nil
}

// Heal puts back what a Redis restart took from the pool and returns what
// it restored ("scripts", "subscriptions"; none when nothing was missing):
// the scripts (a restart with persistence keeps the data but not the
// script cache) and the subscriptions (one without persistence loses
// both). A replica runs it in the background, so that the readiness probe
// only reads and an unready replica, which gets no traffic, still recovers.
func (p *Pool) Heal(ctx context.Context) ([]string, error) {
	var healed []string
	err := p.Ready(ctx)
	if errors.Is(err, ErrScriptsNotLoaded) {
		if err := p.LoadScripts(ctx); err != nil {
			return healed, err
		}
		healed = append(healed, "scripts")
		err = p.Ready(ctx)
	}
	if errors.Is(err, ErrNotSynced) && len(p.Config().Subscriptions) > 0 {
		if err := p.resyncEmpty(ctx); err != nil {
			return healed, err
		}
		return append(healed, "subscriptions"), nil
	}
	if errors.Is(err, ErrNotSynced) {
		err = nil // a pool with no subscriptions has nothing to write back
	}
	return healed, err
}
