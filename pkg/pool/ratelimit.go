package pool

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/authpool/authpool/pkg/lua"
)

// RateLimiter is a per-subject GCRA limit kept in Redis
// (authpool:{P}:ratelimit:<subject>), so every replica counts against the
// same budget.
type RateLimiter struct {
	rdb      redis.UniversalClient
	keys     lua.Keys
	interval time.Duration
	burst    int
}

// RateLimiter allows perMinute requests a minute per subject, with a burst
// of the same size, in p's pool. perMinute <= 0 returns nil: no limit.
func (p *Pool) RateLimiter(perMinute int) *RateLimiter {
	return newRateLimiter(p.rdb, p.keys, perMinute)
}

// NewRateLimiter is RateLimiter for a gateway without a pool
// (AUTH_POOL_ENABLED=false), its keys in the pool named poolName.
func NewRateLimiter(rdb redis.UniversalClient, poolName string, perMinute int) (*RateLimiter, error) {
	if !ValidID(poolName) {
		return nil, fmt.Errorf("pool: rate limiter: %w: %q", ErrInvalidPoolName, poolName)
	}
	return newRateLimiter(rdb, lua.NewKeys(poolName), perMinute), nil
}

func newRateLimiter(rdb redis.UniversalClient, k lua.Keys, perMinute int) *RateLimiter {
	if perMinute <= 0 {
		return nil
	}
	return &RateLimiter{rdb: rdb, keys: k, interval: time.Minute / time.Duration(perMinute), burst: perMinute}
}

// Burst is how many requests may arrive at once (the per-minute limit).
func (l *RateLimiter) Burst() int { return l.burst }

// RateDecision is the outcome of one Allow.
type RateDecision struct {
	Allowed    bool
	Remaining  int
	RetryAfter time.Duration
}

// Allow counts one request of subject (ValidID; else ErrInvalidSubject).
func (l *RateLimiter) Allow(ctx context.Context, subject string) (RateDecision, error) {
	if !ValidID(subject) {
		return RateDecision{}, ErrInvalidSubject
	}
	interval := l.interval.Milliseconds()
	if interval < 1 {
		interval = 1
	}
	r, err := lua.RateLimit(ctx, l.rdb, l.keys, subject, interval, l.burst)
	if err != nil {
		return RateDecision{}, fmt.Errorf("pool: rate limit: %w", err)
	}
	return RateDecision{Allowed: r.Allowed, Remaining: r.Remaining,
		RetryAfter: time.Duration(r.RetryAfterMS) * time.Millisecond}, nil
}
