package gateway

import (
	"context"
	_ "embed"
	"fmt"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/redis/go-redis/v9"

	"github.com/authpool/authpool/internal/ids"
	"github.com/authpool/authpool/pkg/lua"
)

//go:embed gcra.lua
var gcraSource string

var gcraScript = redis.NewScript(gcraSource)

// scripter is what the rate limiter needs of a Redis client.
type scripter interface {
	redis.Scripter
}

// RateLimiter is a per-client GCRA limit kept in Redis, so every replica
// counts against the same budget.
type RateLimiter struct {
	rdb      scripter
	keys     lua.Keys
	interval time.Duration
	burst    int
}

// NewRateLimiter allows perMinute requests a minute per subject, with a burst
// of the same size. perMinute <= 0 returns nil: no limit.
func NewRateLimiter(rdb scripter, keys lua.Keys, perMinute int) *RateLimiter {
	if perMinute <= 0 {
		return nil
	}
	return &RateLimiter{rdb: rdb, keys: keys, interval: time.Minute / time.Duration(perMinute), burst: perMinute}
}

// Decision is the outcome of one Allow.
type Decision struct {
	Allowed    bool
	Remaining  int
	RetryAfter time.Duration
}

// Allow counts one request of subject (^[A-Za-z0-9_-]{1,128}$).
func (l *RateLimiter) Allow(ctx context.Context, subject string) (Decision, error) {
	if !ids.ValidKey(subject) {
		return Decision{}, fmt.Errorf("gateway: rate limit: invalid subject: %w", ErrInvalidRequest)
	}
	interval := l.interval.Milliseconds()
	if interval < 1 {
		interval = 1
	}
	res, err := gcraScript.Run(ctx, l.rdb, []string{l.keys.RateLimit(subject)}, interval, l.burst).Int64Slice()
	if err != nil {
		return Decision{}, fmt.Errorf("gateway: rate limit: %w: %w", ErrUnavailable, err)
	}
	if len(res) != 3 {
		return Decision{}, fmt.Errorf("gateway: rate limit: reply of %d fields: %w", len(res), ErrUnavailable)
	}
	return Decision{Allowed: res[0] == 1, Remaining: int(res[1]),
		RetryAfter: time.Duration(res[2]) * time.Millisecond}, nil
}

// rateLimit applies the limiter to the subject apiAuth recorded. A Redis
// failure refuses the request (503): the same Redis is needed to allocate.
func (s *Server) rateLimit(c *gin.Context) {
	if s.limiter == nil {
		c.Next()
		return
	}
	d, err := s.limiter.Allow(c.Request.Context(), c.GetString(ctxSubject))
	if err != nil {
		writeError(c, err)
		return
	}
	c.Header("X-RateLimit-Limit", strconv.Itoa(s.limiter.burst))
	c.Header("X-RateLimit-Remaining", strconv.Itoa(d.Remaining))
	if !d.Allowed {
		writeError(c, &RetryError{Err: ErrRateLimited, After: d.RetryAfter})
		return
	}
	c.Next()
}
