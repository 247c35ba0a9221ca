package gateway

import (
	"fmt"
	"strconv"

	"github.com/gin-gonic/gin"

	"github.com/authpool/authpool/pkg/pool"
)

// rateLimit applies the per-client limit (pool.RateLimiter, a GCRA kept in
// Redis so every replica counts against the same budget) to the subject
// apiAuth recorded. A Redis failure refuses the request (503): the same
// Redis is needed to allocate.
func (s *Server) rateLimit(c *gin.Context) {
	limiter := s.limiter
	if k := clientKeyOf(c); k.RateLimitPerMinute > 0 {
		limiter = s.newLimiter(k.RateLimitPerMinute) // the key's own rate, with or without a pool
	}
	if limiter == nil {
		markTiming(c, msAuth)
		c.Next()
		return
	}
	subject := c.GetString(ctxSubject)
	if !pool.ValidID(subject) {
		writeError(c, fmt.Errorf("gateway: rate limit: invalid subject: %w", ErrInvalidRequest))
		return
	}
	d, err := limiter.Allow(c.Request.Context(), subject)
	if err != nil {
		writeError(c, fmt.Errorf("gateway: rate limit: %w: %w", ErrUnavailable, err))
		return
	}
	c.Header("X-RateLimit-Limit", strconv.Itoa(limiter.Burst()))
	c.Header("X-RateLimit-Remaining", strconv.Itoa(d.Remaining))
	if !d.Allowed {
		writeError(c, &RetryError{Err: ErrRateLimited, After: d.RetryAfter})
		return
	}
	markTiming(c, msAuth)
	c.Next()
}
