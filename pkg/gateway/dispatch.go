package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.opentelemetry.io/otel/codes"

	"github.com/authpool/authpool/pkg/backend"
	"github.com/authpool/authpool/pkg/pool"
	"github.com/authpool/authpool/pkg/telemetry"
)

// Allocation header values.
const (
	AllocSubscription = "subscription"
	AllocFallback     = "fallback"
)

// bookkeepingTimeout bounds a settle, mark or release that runs after the
// client may have gone: the backend has already spent, so it must be counted.
const bookkeepingTimeout = 5 * time.Second

// placement is where the current attempt runs; the stream's headers read it
// when the first event goes out.
type placement struct {
	kind string // AllocSubscription or AllocFallback
	sub  string // subscription id ("" for the fallback)
	// truncated: the session's stored conversation has lost its oldest
	// turns to conversationMaxBytes.
	truncated bool
}

// maxRetries bounds how often one request is re-allocated after limit or
// auth answers. Each such answer makes its subscription unusable, so every
// retry lands elsewhere; a pool whose subscriptions all turn out limited
// still reaches the fallback within the request.
const maxRetries = 3

// serve runs one turn through the pool: allocate, run, and hands back the
// bookkeeping of the answered turn (after: settle, stored turn; see
// afterTurn) for the caller to run once the answer is out. Every attempt
// is settled under a settlement id the server makes (newRequestID): the
// client's X-Request-ID (reqID) only correlates logs and traces, so a client
// that repeats it can neither hide its usage nor touch another client's.
// A subscription that answers with a usage limit is settled for what that
// turn reported and marked limited, one that refuses its credentials is
// put in cooldown; then the turn is allocated again and run
// on another subscription or the fallback (up to maxRetries times), unless
// text has already been relayed to the client. relayed may be nil (no
// streaming).
func (s *Server) serve(ctx context.Context, t *turn, sid, reqID string, pl *placement,
	onDelta func(string), relayed func() bool) (res *backend.Result, after func(), err error) {
	timingsOf(ctx).mark(msDecode)
	if s.pool == nil {
		pl.kind = AllocFallback
		if s.backends.Fallback == nil {
			return nil, nil, ErrNoFallback
		}
		res, err := s.run(ctx, s.backends.Fallback, "", backend.Target{}, t.replayRequest(t.own()), onDelta)
		return res, nil, err
	}
	// The session's previous turn on this replica may still be settling:
	// its settle records the CLI session this turn resumes.
	s.pending.wait(ctx, sid, pendingWait)
	// A turn that will resume its CLI session and sends no system prompt
	// needs the stored one: read it while the allocation runs rather than
	// after it (one Redis round trip fewer in a row).
	var early <-chan storedConvo
	if t.system == "" && !t.fresh {
		early = s.readConvo(ctx, t, sid)
	}
	var lastErr error
	for attempt := 0; attempt <= s.retries; attempt++ {
		// The attempt's settlement id also names its in-flight lease.
		turnID := newRequestID()
		alloc, err := s.allocate(ctx, pool.TurnRequest{SessionID: sid, Priority: t.priority, Owner: t.owner,
			TurnID: turnID})
		if err != nil {
			return nil, nil, poolErr(err)
		}
		timingsOf(ctx).mark(msAlloc)
		if alloc.Kind == pool.Fallback {
			*pl = placement{kind: AllocFallback}
			if s.backends.Fallback == nil {
				return nil, nil, &RetryError{Err: ErrNoFallback, After: alloc.RetryAfter}
			}
			// The fallback holds no CLI session: the stored conversation
			// becomes its messages.
			cv, err := s.convo(ctx, t, sid, true, pl)
			if err != nil {
				return nil, nil, err
			}
			res, err := s.run(ctx, s.backends.Fallback, "", backend.Target{}, t.replayRequest(cv), onDelta)
			if err != nil {
				return nil, nil, err
			}
			return res, s.afterTurn(ctx, t, reqID, turnID, "", sid, res, pl), nil
		}
		sub := alloc.Subscription
		*pl = placement{kind: AllocSubscription, sub: sub.ID}
		stop := s.heartbeat(ctx, sid, turnID)
		res, err := s.runOn(ctx, alloc, t, sid, pl, early, onDelta)
		early = nil // read before the first allocation only
		stop()
		s.observeLimits(ctx, sub.ID, res, err)
		if err == nil {
			return res, s.afterTurn(ctx, t, reqID, turnID, sub.ID, sid, res, pl), nil
		}
		if le := (*backend.LimitError)(nil); errors.As(err, &le) && le.Result != nil {
			// The turn that hit the limit reported what it spent: it is
			// counted like any other (which also ends its lease).
			s.settle(ctx, reqID, turnID, sub.ID, sid, le.Result, false)
		} else {
			s.endTurn(ctx, sid, turnID)
		}
		lastErr = err
		if !s.judge(ctx, sub.ID, err) || ctx.Err() != nil || (relayed != nil && relayed()) {
			return nil, nil, err
		}
	}
	return nil, nil, lastErr
}

// judge acts on a subscription's failed turn and reports whether the turn
// may run again elsewhere: a usage limit marks it limited until the reset it
// gave, refused credentials put it in cooldown ("auth"), and crashes or
// timeouts count towards a cooldown ("failures") without a retry.
func (s *Server) judge(ctx context.Context, subID string, err error) (retry bool) {
	var le *backend.LimitError
	switch {
	case errors.As(err, &le):
		// The window the CLI's rejected rate_limit_event named is the
		// reason, so the limit_reached event says which window is spent.
		reason := "limit"
		if le.Window == backend.WindowFiveHour || le.Window == backend.WindowSevenDay {
			reason = le.Window
		}
		s.mark(ctx, subID, pool.StatusLimited, reason, le.ResetAt)
		return true
	case errors.Is(err, backend.ErrLimited):
		s.mark(ctx, subID, pool.StatusLimited, "limit", time.Time{})
		return true
	case errors.Is(err, backend.ErrAuth):
		s.authFailed(ctx, subID)
		return true
	case errors.Is(err, backend.ErrTimeout), errors.Is(err, backend.ErrBackend):
		if ctx.Err() == nil {
			s.failed(ctx, subID)
		}
	}
	return false
}

// runOn runs the turn on the allocated subscription. The session's CLI
// session is a cache of its stored conversation: while the session stays on
// its subscription the turn continues it (--resume) with the new turn only;
// otherwise — a new binding, a move, or a CLI that does not hold that
// session because it ran in another replica's config dir — the stored
// conversation is replayed ahead of the turn in a new CLI session, whose id
// the settle records for the next turn.
func (s *Server) runOn(ctx context.Context, alloc pool.Allocation, t *turn, sid string, pl *placement,
	early <-chan storedConvo, onDelta func(string)) (*backend.Result, error) {
	sub := alloc.Subscription
	b, token := s.subBackend(sub.ID)
	if b == nil {
		return nil, fmt.Errorf("%w: %s", ErrNoBackend, sub.ID)
	}
	tgt := backend.Target{ConfigDir: sub.ConfigDir, OAuthToken: token}
	resume := ""
	if alloc.Kind == pool.Resumed && alloc.CLISession != "" {
		resume = alloc.CLISession
	}
	var cv convo
	var err error
	if resume != "" && early != nil {
		cv, err = s.convoRead(ctx, t, sid, pl, early)
	} else {
		cv, err = s.convo(ctx, t, sid, resume == "", pl)
	}
	if err != nil {
		return nil, err
	}
	if resume != "" {
		res, err := s.run(ctx, b, sub.ID, tgt, t.resumeRequest(resume, cv), onDelta)
		if !errors.Is(err, backend.ErrSessionNotFound) {
			return res, err
		}
		s.log.InfoContext(ctx, "cli session not in this config dir; replaying the stored conversation",
			"subscription", sub.ID)
		if cv, err = s.convo(ctx, t, sid, true, pl); err != nil {
			return nil, err
		}
	}
	return s.run(ctx, b, sub.ID, tgt, t.replayRequest(cv), onDelta)
}

// convo reads what the turn continues: the stored system prompt, and with
// withTurns the stored turns to replay. A turn that resumes its CLI session
// and sends its own system prompt needs nothing stored.
func (s *Server) convo(ctx context.Context, t *turn, sid string, withTurns bool, pl *placement) (convo, error) {
	if t.fresh || (!withTurns && t.system != "") {
		return t.own(), nil
	}
	c, err := s.pool.Conversation(ctx, sid, t.owner, withTurns)
	if err != nil {
		return convo{}, poolErr(err)
	}
	pl.truncated = pl.truncated || c.Truncated
	return t.convoFrom(c), nil
}

// storedConvo is a stored conversation read ahead (readConvo).
type storedConvo struct {
	c   pool.Conversation
	err error
}

// readConvo reads the session's stored system prompt (no turns) in the
// background.
func (s *Server) readConvo(ctx context.Context, t *turn, sid string) <-chan storedConvo {
	out := make(chan storedConvo, 1)
	go func() {
		c, err := s.pool.Conversation(ctx, sid, t.owner, false)
		out <- storedConvo{c, err}
	}()
	return out
}

// convoRead is convo(withTurns false) from the read ahead; when that read
// failed (a session new before its allocation), it reads again.
func (s *Server) convoRead(ctx context.Context, t *turn, sid string, pl *placement,
	early <-chan storedConvo) (convo, error) {
	select {
	case r := <-early:
		if r.err == nil {
			pl.truncated = pl.truncated || r.c.Truncated
			return t.convoFrom(r.c), nil
		}
	case <-ctx.Done():
		return convo{}, context.Cause(ctx)
	}
	return s.convo(ctx, t, sid, false, pl)
}

// storeTimeout bounds remember, which runs before the answer goes out.
const storeTimeout = time.Second

// remember appends the answered turn to the session's stored conversation,
// once per settlement id, and records the CLI session the turn left on
// subscription subID ("" the fallback) for the next turn's --resume; it
// reports whether it did. A failure is logged, not returned: the client
// has its answer, and the settle then records the CLI session; only a
// later replay would miss the turn.
func (s *Server) remember(ctx context.Context, t *turn, sid, turnID, subID string, res *backend.Result, pl *placement) bool {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
	defer cancel()
	ap, err := s.pool.AppendTurn(ctx, pool.TurnRecord{SessionID: sid, TurnID: turnID, Owner: t.owner,
		User: t.newTurn, Assistant: res.Text, System: t.system, SubscriptionID: subID, CLISession: res.CLISessionID})
	if err != nil {
		s.log.WarnContext(ctx, "turn not stored in the session's conversation; a replay will miss it",
			"settle_id", turnID, "error", err)
		return false
	}
	pl.truncated = pl.truncated || ap.Truncated
	return true
}

// poolErr keeps the pool's own answers and reads anything else (a network
// error, a timeout) as Redis being unreachable.
func poolErr(err error) error {
	switch {
	case errors.Is(err, pool.ErrInvalidSession), errors.Is(err, pool.ErrInvalidPriority),
		errors.Is(err, pool.ErrSessionNotFound),
		errors.Is(err, pool.ErrPoolExhausted), errors.Is(err, pool.ErrUnknownSubscription),
		errors.Is(err, context.Canceled):
		return err
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// settle records the answer's usage under settleID, the server-made id of
// this attempt; reqID is the client-facing request id, for the log only. A
// failure is not returned: the answer exists and the client should have it.
// The settlement is retried in the background until it lands (it is
// idempotent by its id), so a short Redis outage loses no usage. ok: the
// turn succeeded, which ends the subscription's run of failures (and its
// login's probation) in the same call.
func (s *Server) settle(ctx context.Context, reqID, settleID, subID, sid string, res *backend.Result, ok bool) {
	ctx = context.WithoutCancel(ctx)
	u := pool.Usage{RequestID: settleID, SubscriptionID: subID, SessionID: sid, CostUSD: res.CostUSD, Succeeded: ok,
		InputTokens: res.Usage.InputTokens, OutputTokens: res.Usage.OutputTokens,
		CacheCreationTokens: res.Usage.CacheCreationInputTokens, CacheReadTokens: res.Usage.CacheReadInputTokens,
		Model: res.Model, CLISession: res.CLISessionID, KeyName: keyNameOf(ctx)}
	if len(res.ModelUsage) > 0 {
		if mu, err := json.Marshal(res.ModelUsage); err == nil {
			u.ModelUsage = mu
		}
	}
	sctx, cancel := context.WithTimeout(ctx, bookkeepingTimeout)
	defer cancel()
	_, err := s.settleOnce(sctx, u)
	if err == nil {
		return
	}
	p := &pendingSettle{ctx: ctx, reqID: reqID, usage: u, since: time.Now(), attempts: 1}
	if permanent(err) {
		s.settleDropped(p, dropInvalid, err)
		return
	}
	s.log.WarnContext(ctx, "settle failed: retrying in the background", "request_id", reqID,
		"settle_id", settleID, "subscription", subID, "error", err)
	s.settles.add(p)
}

// settleOnce runs one settle in a span of its own and counts its result.
func (s *Server) settleOnce(ctx context.Context, u pool.Usage) (pool.Settlement, error) {
	ctx, span := s.tracer.Start(ctx, "pool.settle")
	defer span.End()
	st, err := s.pool.Settle(ctx, u)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, "settle failed")
		return st, err
	}
	s.settled(ctx, span, st)
	return st, nil
}

// settledLate logs a settlement that landed on a background retry.
func (s *Server) settledLate(p *pendingSettle, st pool.Settlement) {
	s.log.InfoContext(p.ctx, "settle landed after a retry", "request_id", p.reqID, "settle_id", p.usage.RequestID,
		"subscription", p.usage.SubscriptionID, "attempts", p.attempts, "duplicate", st.Duplicate)
}

// settleDropped reports a settlement given up: its usage is lost, so it is
// an error with everything an operator needs to account for it by hand.
func (s *Server) settleDropped(p *pendingSettle, reason string, err error) {
	s.metrics.SettleDropped(p.ctx, reason)
	attrs := []any{"reason", reason, "request_id", p.reqID, "settle_id", p.usage.RequestID,
		"subscription", p.usage.SubscriptionID, "cost_usd", p.usage.CostUSD, "attempts", p.attempts}
	if err != nil {
		attrs = append(attrs, "error", err)
	}
	s.log.ErrorContext(p.ctx, "settle dropped: usage not recorded", attrs...)
	cause := err
	if cause == nil {
		cause = errors.New("gateway: settle dropped (" + reason + ")")
	}
	telemetry.CaptureError(p.ctx, cause, map[string]string{telemetry.TagRequestID: p.reqID,
		telemetry.TagSubscriptionID: p.usage.SubscriptionID})
}

// heartbeat refreshes the turn's lease every third of its length
// while the backend runs, so the rebalancer neither moves nor drops a
// session whose turn outlasts the idle age; stop ends it. A replica that dies
// stops refreshing, and the lease runs out by itself. It is a timer, not a
// goroutine: a turn shorter than a third of the lease (nearly all) costs no
// goroutine to start and none to wake when it stops.
func (s *Server) heartbeat(ctx context.Context, sid, turnID string) (stop func()) {
	every := s.pool.TurnLease() / 3
	if every <= 0 {
		return func() {}
	}
	hctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var (
		mu sync.Mutex // held while a refresh runs, and to set t
		t  *time.Timer
	)
	beat := func() {
		mu.Lock()
		defer mu.Unlock()
		if hctx.Err() != nil {
			return
		}
		cctx, ccancel := context.WithTimeout(hctx, bookkeepingTimeout)
		err := s.pool.Heartbeat(cctx, sid, turnID)
		ccancel()
		if hctx.Err() != nil {
			return
		}
		if err != nil {
			s.log.WarnContext(ctx, "turn heartbeat failed: the turn may count as idle", "error", err)
		}
		t.Reset(every)
	}
	mu.Lock()
	t = time.AfterFunc(every, beat)
	mu.Unlock()
	return func() {
		cancel()
		// A refresh in progress finishes (or is cancelled) before the
		// turn's settle or end, which clear the lease.
		mu.Lock()
		t.Stop()
		mu.Unlock()
	}
}

// endTurn ends a turn that failed (a settled turn ends with its settle): its
// session counts as active for the idle age from now. A failure is
// harmless: the lease runs out.
func (s *Server) endTurn(ctx context.Context, sid, turnID string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), bookkeepingTimeout)
	defer cancel()
	if err := s.pool.EndTurn(ctx, sid, turnID); err != nil && !errors.Is(err, pool.ErrTurnNotInFlight) {
		s.log.WarnContext(ctx, "end of a failed turn not recorded; its lease runs out by itself", "error", err)
	}
}

// mark changes a subscription's status after what its backend answered.
func (s *Server) mark(ctx context.Context, subID, status, reason string, until time.Time) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), bookkeepingTimeout)
	defer cancel()
	r, err := s.pool.Mark(ctx, subID, status, reason, until)
	if err != nil {
		s.log.ErrorContext(ctx, "mark failed", "subscription", subID, "status", status, "error", err)
		return
	}
	s.log.WarnContext(ctx, "subscription marked", "subscription", subID, "status", r.Status,
		"reason", reason, "until", r.Until, "changed", r.Changed)
}

// failed counts a crash or timeout in the pool, where every replica's add
// up; the pool puts the subscription in cooldown at its threshold.
func (s *Server) failed(ctx context.Context, subID string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), bookkeepingTimeout)
	defer cancel()
	r, err := s.pool.Failed(ctx, subID)
	if err != nil {
		s.log.ErrorContext(ctx, "failure not counted", "subscription", subID, "error", err)
		return
	}
	if r.Tripped {
		s.log.WarnContext(ctx, "subscription marked", "subscription", subID, "status", r.Status,
			"reason", "failures", "until", r.Until, "changed", true)
	}
}

// authFailed counts a refused login in the pool: a doubling cooldown and,
// first of an episode, an auth_failed event.
func (s *Server) authFailed(ctx context.Context, subID string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), bookkeepingTimeout)
	defer cancel()
	r, err := s.pool.AuthFailed(ctx, subID)
	if err != nil {
		s.log.ErrorContext(ctx, "auth failure not counted", "subscription", subID, "error", err)
		return
	}
	s.log.WarnContext(ctx, "subscription marked", "subscription", subID, "status", r.Status,
		"reason", "auth", "until", r.Until, "changed", r.Tripped, "refusals", r.Failures)
}
