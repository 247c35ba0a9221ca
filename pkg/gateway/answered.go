package gateway

import (
	"context"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/authpool/authpool/pkg/backend"
	"github.com/authpool/authpool/pkg/telemetry"
)

// ctxAfter holds the bookkeeping of an answered turn (its settle and stored
// turn), run once the answer is out by afterAnswer.
const ctxAfter = "authpool.after"

// pendingWait bounds how long a turn waits for the bookkeeping of the
// session's previous turn on this replica (see pendingTurns).
const pendingWait = 2 * time.Second

// pendingTurns are the sessions whose answered turn is still being settled
// by this replica. What the session's next turn reads (the stored turn, the
// CLI session to resume) is written before the answer goes out; the settle
// that follows it counts the turn's usage (and a named key's weekly spend),
// so a new turn of such a session, or of such a key, waits for it (at most
// pendingWait) before it allocates or checks the budget. It waits only for
// the settles already running when it arrives, never for later ones, so a
// busy key is not held by a stream of overlapping settles. A turn on
// another replica does not wait: within that window (about a millisecond)
// a budgeted key may pass its budget by a turn.
type pendingTurns struct {
	mu   sync.Mutex
	m    map[string]map[chan struct{}]struct{} // key -> its settles running, each closed when done
	n    int                                   // bookkeeping not finished yet, every session
	zero chan struct{}                         // closed when n drops to 0; nil while n is 0
}

// begin marks each key (a session id, keyPending of a client key) as
// settling; end it with the returned func.
func (p *pendingTurns) begin(keys ...string) (end func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil {
		p.m = map[string]map[chan struct{}]struct{}{}
	}
	done := make(chan struct{})
	for _, k := range keys {
		if p.m[k] == nil {
			p.m[k] = map[chan struct{}]struct{}{}
		}
		p.m[k][done] = struct{}{}
	}
	if p.n == 0 {
		p.zero = make(chan struct{})
	}
	p.n++
	return func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		close(done)
		for _, k := range keys {
			delete(p.m[k], done)
			if len(p.m[k]) == 0 {
				delete(p.m, k)
			}
		}
		if p.n--; p.n == 0 {
			close(p.zero)
			p.zero = nil
		}
	}
}

// keyPending is the pendingTurns key of a named client key: a NUL never
// appears in a session id.
func keyPending(name string) string { return "\x00key:" + name }

// wait waits until the settles of key (a session id, keyPending) running
// when it is called have finished, at most max or until ctx ends.
func (p *pendingTurns) wait(ctx context.Context, key string, max time.Duration) {
	p.mu.Lock()
	running := make([]chan struct{}, 0, len(p.m[key]))
	for done := range p.m[key] {
		running = append(running, done)
	}
	p.mu.Unlock()
	if len(running) == 0 {
		return
	}
	t := time.NewTimer(max)
	defer t.Stop()
	for _, done := range running {
		select {
		case <-done:
		case <-t.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

// idle waits until every bookkeeping started has finished, or ctx ends.
func (p *pendingTurns) idle(ctx context.Context) error {
	p.mu.Lock()
	zero := p.zero
	p.mu.Unlock()
	if zero == nil {
		return nil
	}
	select {
	case <-zero:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// afterTurn is the bookkeeping of a turn that produced an answer. What the
// session's next turn reads is written at once, before the answer goes out:
// the turn is stored in the session's conversation and the CLI session it
// left is recorded, in one script, so that the next turn sees both on every
// replica (one that replays the conversation, one that resumes the CLI
// session). The rest is returned to run after the answer (afterAnswer): its
// usage is settled (retried in the background if Redis fails) and the
// subscription's run of failures ends (subID "" on the fallback); sid
// counts as settling from now until it has run.
func (s *Server) afterTurn(ctx context.Context, t *turn, reqID, turnID, subID, sid string,
	res *backend.Result, pl *placement) func() {
	if s.remember(ctx, t, sid, turnID, subID, res, pl) {
		// The append recorded the CLI session: the settle, which may land
		// late (retried after a Redis outage), must not write it again over
		// a newer turn's.
		shallow := *res
		shallow.CLISessionID = ""
		res = &shallow
	}
	timingsOf(ctx).mark(msStore) // no-op without timings
	ctx = context.WithoutCancel(ctx)
	keys := []string{sid}
	if name := keyNameOf(ctx); name != "" {
		// The key's weekly budget counts this turn once it is settled.
		keys = append(keys, keyPending(name))
	}
	end := s.pending.begin(keys...)
	return func() {
		defer end()
		// This runs in a goroutine of its own (afterAnswer): a panic here
		// must not take the process, and every other settle, down with it.
		defer func() {
			if r := recover(); r != nil {
				s.log.ErrorContext(ctx, "panic in a turn's settle", "settle_id", turnID, "panic", r)
				telemetry.CapturePanic(ctx, r, map[string]string{telemetry.TagRequestID: reqID})
			}
		}()
		if s.beforeSettle != nil {
			s.beforeSettle()
		}
		// The settle also ends the subscription's run of failures.
		s.settle(ctx, reqID, turnID, subID, sid, res, subID != "")
		if tm := timingsOf(ctx); tm != nil {
			tm.mark(msSettle)
			tm.log(ctx, s.log, reqID)
		}
	}
}

// afterAnswer runs the answered turn's bookkeeping (afterTurn) once the
// handler has returned: the answer has been written and flushed. It also
// runs after a panic, so that a session is never left settling.
func (s *Server) afterAnswer(c *gin.Context) {
	defer func() {
		if v, ok := c.Get(ctxAfter); ok {
			if f, ok := v.(func()); ok && f != nil {
				go f()
			}
		}
	}()
	c.Next()
}

// setAfter hands the turn's bookkeeping to afterAnswer; after may be nil.
func setAfter(c *gin.Context, after func()) {
	if after == nil {
		return
	}
	if tm := timingsOf(c.Request.Context()); tm != nil {
		tm.deferred = true
	}
	c.Set(ctxAfter, after)
}
