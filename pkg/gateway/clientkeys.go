package gateway

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/gin-gonic/gin"
)

// keyNameCtx carries the request's client key name to settle, which runs
// detached from the request.
type keyNameCtx struct{}

func withKeyName(ctx context.Context, name string) context.Context {
	if name == "" {
		return ctx
	}
	return context.WithValue(ctx, keyNameCtx{}, name)
}

func keyNameOf(ctx context.Context) string {
	n, _ := ctx.Value(keyNameCtx{}).(string)
	return n
}

// clientKeyOf is the named key the request came in with (zero for
// API_KEYS or no keys).
func clientKeyOf(c *gin.Context) ClientKey {
	k, _ := c.Get(ctxClientKey)
	ck, _ := k.(ClientKey)
	return ck
}

// admitKey applies the named key's allow-list and weekly budget to a
// request for model, before anything is allocated or spent: a model
// outside models is ErrModelNotAllowed; a key whose rolling 7-day cost has
// reached weeklyBudget is ErrQuotaExceeded with the wait until enough of
// the oldest spend leaves the window.
func (s *Server) admitKey(c *gin.Context, model string) error {
	k := clientKeyOf(c)
	if k.Name == "" {
		return nil
	}
	if len(k.Models) > 0 && !slices.Contains(k.Models, model) {
		return fmt.Errorf("%w: %s", ErrModelNotAllowed, k.Name)
	}
	if k.WeeklyBudget > 0 && s.pool != nil {
		// The key's turns answered here just before are settled after
		// their answers: count them (bounded wait).
		s.pending.wait(c.Request.Context(), keyPending(k.Name), pendingWait)
		u, err := s.pool.ClientKeyUsage(c.Request.Context(), k.Name)
		if err != nil {
			return poolErr(err)
		}
		if u.Weekly >= k.WeeklyBudget {
			return &RetryError{Err: ErrQuotaExceeded, After: max(time.Until(u.ResetAt(k.WeeklyBudget)), time.Second)}
		}
	}
	return nil
}

// admitClient admits the request's named key for model (admitKey), writing
// the refusal, and names the key on the request's context so that
// whatever the request settles (a turn on the pool, a passed-through tool
// request) counts against it. Both dialects call it before they branch,
// so no path reaches a backend around the key's budget or models.
func (s *Server) admitClient(c *gin.Context, model string) bool {
	if err := s.admitKey(c, model); err != nil {
		writeError(c, err)
		return false
	}
	c.Request = c.Request.WithContext(withKeyName(c.Request.Context(), clientKeyOf(c).Name))
	return true
}
