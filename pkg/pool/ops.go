package pool

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/authpool/authpool/internal/ids"
	"github.com/authpool/authpool/pkg/lua"
)

// AllocationKind says how a request was placed.
type AllocationKind string

// Allocation kinds.
const (
	// Resumed: the session stays on the subscription it was bound to.
	Resumed AllocationKind = "resumed"
	// Bound: the session was bound to a subscription now (new, or moved).
	Bound AllocationKind = "bound"
	// Fallback: no subscription is eligible; use the fallback backend.
	Fallback AllocationKind = "fallback"
)

// Allocation is where a request goes.
type Allocation struct {
	Kind AllocationKind
	// Subscription is the bound subscription (zero for Fallback).
	Subscription SubscriptionConfig
	// CLISession is the CLI session to --resume (Resumed only, may be "").
	CLISession string
	// From is the subscription the session left, when it moved.
	From string
	// Reason says why the session moved, or why it went to the fallback.
	Reason string
	// RetryAfter is the time until the earliest reset (Fallback only).
	RetryAfter time.Duration
}

// NoOwner owns the sessions of a gateway without API keys (and of callers
// that name no owner), so that behaviour without keys is unchanged.
const NoOwner = "-"

// TurnRequest asks for the allocation of one turn of a session.
type TurnRequest struct {
	// SessionID is the client session.
	SessionID string
	// Priority is the turn's admission class ("" is normal).
	Priority Priority
	// Owner is the key id of the caller's API key (never the key itself);
	// "" is NoOwner. A session belongs to the owner that created it: for
	// any other owner it does not exist (ErrSessionNotFound).
	Owner string
	// TurnID names the turn (the settlement id it will be settled under).
	// When set, a session bound to a subscription is active for the turn's
	// lease (its client-set score, the longer of the idle age and
	// Options.TurnLease from now): the rebalancer neither moves nor drops
	// it, and its session key does not expire, until Settle (or EndTurn)
	// ends the turn (active for the idle age from then) or the lease runs
	// out unrefreshed (see Heartbeat).
	TurnID string
}

// Allocate binds sessionID to a subscription atomically: the same one while
// it can serve it, else the eligible subscription with the highest health
// score. With no eligible subscription it returns a Fallback allocation, or
// an *ExhaustedError when fallback is off. The session belongs to NoOwner;
// see AllocateTurn.
func (p *Pool) Allocate(ctx context.Context, sessionID string, pr Priority) (Allocation, error) {
	return p.AllocateTurn(ctx, TurnRequest{SessionID: sessionID, Priority: pr})
}

// AllocateTurn is Allocate for one turn of an owner's session: a session of
// another owner answers ErrSessionNotFound and is left as it was.
func (p *Pool) AllocateTurn(ctx context.Context, tr TurnRequest) (Allocation, error) {
	sessionID, pr, owner := tr.SessionID, tr.Priority, tr.Owner
	if owner == "" {
		owner = NoOwner
	}
	if !lua.ValidID(sessionID) {
		return Allocation{}, ErrInvalidSession
	}
	if !lua.ValidID(owner) {
		return Allocation{}, ErrInvalidOwner
	}
	if tr.TurnID != "" && !lua.ValidID(tr.TurnID) {
		return Allocation{}, ErrInvalidRequestID
	}
	if _, err := ParsePriority(string(pr)); err != nil {
		return Allocation{}, err
	}
	if pr == "" {
		pr = PriorityNormal
	}
	st := p.conf()
	args := lua.AllocateArgs{SessionID: sessionID, Priority: string(pr), Admit: p.admit(pr),
		ResumeLimit: p.resume, ApproachAt: p.conf().approachAt, StaleMS: p.staleMS(),
		FallbackOK: p.Config().FallbackEnabled(), Weights: p.weights, Owner: owner,
		TurnID: tr.TurnID, LeaseMS: p.turnLease.Milliseconds(), IdleMS: p.idleMS(),
		BlockAdmit: p.Config().BlockAdmissionThreshold}
	var r lua.AllocateReply
	// Fast path: this replica saw the session on a subscription; resume
	// there with the lean resume script and only that subscription's keys.
	// The script verifies it, and leaves anything it cannot decide at once
	// to the full allocate.
	if one := p.hints.singleFor(sessionID); one != nil {
		sub := one.IDs[0]
		cli, ok, err := lua.Resume(ctx, p.rdb, p.keys, lua.ResumeArgs{SessionID: sessionID, SubID: sub,
			Owner: owner, ResumeLimit: p.resume, StaleMS: args.StaleMS, IdleMS: args.IdleMS,
			TurnID: tr.TurnID, LeaseMS: args.LeaseMS})
		if errors.Is(err, lua.ErrNotFound) {
			return Allocation{}, ErrSessionNotFound
		}
		if err != nil {
			return Allocation{}, fmt.Errorf("pool: allocate: %w", err)
		}
		if ok {
			r = lua.AllocateReply{Code: lua.CodeOK, SubID: sub, Kind: string(Resumed), CLISession: cli}
		}
	}
	if r.Code != lua.CodeOK || r.Kind != string(Resumed) {
		err := p.withSubs(ctx, func(s *lua.SubSet) error {
			var err error
			a := args
			a.Known = st.known(s)
			r, err = lua.Allocate(ctx, p.rdb, p.keys, s, a)
			return err
		})
		if errors.Is(err, lua.ErrNotFound) {
			return Allocation{}, ErrSessionNotFound
		}
		if err != nil {
			return Allocation{}, fmt.Errorf("pool: allocate: %w", err)
		}
	}
	if r.Code == lua.CodeOK {
		p.hints.put(sessionID, r.SubID)
	} else {
		p.hints.drop(sessionID)
	}
	retry := time.Duration(r.RetryAfterMS) * time.Millisecond
	switch r.Code {
	case lua.CodeOK:
		sub, ok := st.byID[r.SubID]
		if !ok {
			// Bound by a replica with a newer config; this replica cannot run it.
			return Allocation{}, fmt.Errorf("pool: allocate: %s: %w", r.SubID, ErrUnknownSubscription)
		}
		return Allocation{Kind: AllocationKind(r.Kind), Subscription: sub, CLISession: r.CLISession,
			From: r.From, Reason: r.Reason}, nil
	case lua.CodeFallback:
		return Allocation{Kind: Fallback, From: r.From, Reason: r.Reason, RetryAfter: retry}, nil
	case lua.CodeExhausted:
		return Allocation{}, &ExhaustedError{Reason: r.Reason, RetryAfter: retry}
	}
	return Allocation{}, fmt.Errorf("pool: allocate: code %d: %w", r.Code, lua.ErrReply)
}

// Heartbeat refreshes the lease of a running turn: its session stays active
// (TurnLease from now) and does not expire; the gateway calls it every third
// of TurnLease while the backend runs. A session that is gone or on the
// fallback is ErrTurnNotInFlight; one bound elsewhere is left as it is.
func (p *Pool) Heartbeat(ctx context.Context, sessionID, turnID string) error {
	return p.turn(ctx, "heartbeat", sessionID, turnID, p.turnLease.Milliseconds())
}

// EndTurn ends a turn that will not be settled (it failed): its session is
// active for the idle age from now, as after a settled turn (Settle).
func (p *Pool) EndTurn(ctx context.Context, sessionID, turnID string) error {
	return p.turn(ctx, "end turn", sessionID, turnID, 0)
}

func (p *Pool) turn(ctx context.Context, op, sessionID, turnID string, leaseMS int64) error {
	if !lua.ValidID(sessionID) {
		return ErrInvalidSession
	}
	if !lua.ValidID(turnID) {
		return ErrInvalidRequestID
	}
	// The subscription this replica saw the session on first; all of them
	// when it has no hint, or the session is elsewhere.
	one := p.hints.singleFor(sessionID)
	var err error
	if one != nil {
		err = lua.Turn(ctx, p.rdb, p.keys, one, sessionID, turnID, leaseMS, p.staleMS(), p.idleMS())
	}
	if one == nil || errors.Is(err, lua.ErrStaleSubscriptions) {
		err = p.withSubs(ctx, func(s *lua.SubSet) error {
			return lua.Turn(ctx, p.rdb, p.keys, s, sessionID, turnID, leaseMS, p.staleMS(), p.idleMS())
		})
	}
	if errors.Is(err, lua.ErrNotFound) {
		return ErrTurnNotInFlight
	}
	if err != nil {
		return fmt.Errorf("pool: %s: %w", op, err)
	}
	return nil
}

// Usage is one backend answer to settle.
type Usage struct {
	// RequestID makes settlement idempotent: a retried settle counts once.
	RequestID string
	// SubscriptionID is the subscription that served it; "" for the fallback.
	SubscriptionID string
	// SessionID is the client session ("" for none).
	SessionID string
	// CostUSD is total_cost_usd of the answer.
	CostUSD float64
	// Tokens of the answer.
	InputTokens, OutputTokens, CacheCreationTokens, CacheReadTokens int64
	// Model is the model that answered.
	Model string
	// ModelUsage is the CLI's modelUsage object (keyed by model), or nil.
	ModelUsage json.RawMessage
	// CLISession is the CLI session id to resume on the next turn.
	CLISession string
	// KeyName is the name of the client key that made the request
	// (API_KEYS_FILE), "" for none: its usage is kept per key too.
	KeyName string
	// Succeeded: the turn succeeded on SubscriptionID, which ends its run
	// of failures and its login's probation as Succeeded does, in the same
	// round trip.
	Succeeded bool
}

// Settlement is the state after a settle.
type Settlement struct {
	// Duplicate is true when the request id was already settled: nothing changed.
	Duplicate  bool
	WeeklyUsed float64
	BlockCost  float64
	BurnRate   float64
	Status     string
}

// Bounds of one settled request: far above any real answer, low enough that
// the scripts' sums stay exact (integers below 2^53).
const (
	MaxCostUSD       = 1_000_000.0
	MaxRequestTokens = int64(1) << 40
)

func tokensOK(n int64) bool { return n >= 0 && n <= MaxRequestTokens }

// resumable is cli when it is an id the CLI could be asked to --resume, else
// "": the two scripts that record a session's CLI session (settle, the
// conversation append) store nothing else.
func resumable(cli string) string {
	if cli != "" && !ids.CLISession.MatchString(cli) {
		return ""
	}
	return cli
}

// Settle records one request's usage exactly once per request id, and ends
// the turn: its session is active for the idle age from now.
func (p *Pool) Settle(ctx context.Context, u Usage) (Settlement, error) {
	if !lua.ValidID(u.RequestID) {
		return Settlement{}, ErrInvalidRequestID
	}
	if u.SessionID != "" && !lua.ValidID(u.SessionID) {
		return Settlement{}, ErrInvalidSession
	}
	if u.KeyName != "" && !ValidKeyName(u.KeyName) {
		return Settlement{}, ErrInvalidKeyName
	}
	if u.SubscriptionID != "" {
		if _, ok := p.conf().byID[u.SubscriptionID]; !ok {
			return Settlement{}, fmt.Errorf("pool: settle %q: %w", u.SubscriptionID, ErrUnknownSubscription)
		}
	}
	// Bounded before the script runs: a script that failed half-way would
	// keep its request-id marker, and the retry would count as a duplicate.
	if !(u.CostUSD >= 0 && u.CostUSD <= MaxCostUSD) || !tokensOK(u.InputTokens) || !tokensOK(u.OutputTokens) ||
		!tokensOK(u.CacheCreationTokens) || !tokensOK(u.CacheReadTokens) {
		return Settlement{}, ErrInvalidUsage
	}
	mu := ""
	if len(u.ModelUsage) > 0 {
		if !json.Valid(u.ModelUsage) {
			return Settlement{}, fmt.Errorf("pool: settle: modelUsage: %w", ErrInvalidUsage)
		}
		mu = string(u.ModelUsage)
	}
	r, err := lua.Settle(ctx, p.rdb, p.keys, lua.SettleArgs{
		RequestID: u.RequestID, SubID: u.SubscriptionID, SessionID: u.SessionID,
		CostUSD: strconv.FormatFloat(u.CostUSD, 'f', 6, 64),
		Input:   u.InputTokens, Output: u.OutputTokens, CacheWrite: u.CacheCreationTokens, CacheRead: u.CacheReadTokens,
		Model: u.Model, ModelUsage: mu, CLISession: resumable(u.CLISession), ApproachAt: p.conf().approachAt,
		MarkerTTL: p.markerTTL.Milliseconds(), Retention: p.retention.Milliseconds(), StaleMS: p.staleMS(),
		Thresholds: p.conf().thresholds, KeyName: u.KeyName, IdleMS: p.idleMS(),
		Succeeded: u.Succeeded && u.SubscriptionID != "",
	})
	if err != nil {
		return Settlement{}, fmt.Errorf("pool: settle: %w", err)
	}
	if r.Duplicate {
		return Settlement{Duplicate: true}, nil
	}
	return Settlement{WeeklyUsed: atof(r.WeeklyUsed), BlockCost: atof(r.BlockCost), BurnRate: atof(r.BurnRate),
		Status: r.Status}, nil
}

// Status values of a subscription.
const (
	StatusAvailable   = "available"
	StatusApproaching = "approaching"
	StatusLimited     = "limited"
	StatusCooldown    = "cooldown"
	StatusDisabled    = "disabled"
	// StatusDraining: an operator's drain: no new bindings; the sessions
	// there stay while active and move on their next turn once idle.
	StatusDraining = "draining"
	StatusRemoved  = "removed"
)

// MarkResult is the status after a Mark.
type MarkResult struct {
	// Changed is false when the subscription already had that status (a
	// later until was kept, no event written).
	Changed bool
	Status  string
	Until   time.Time
}

// Mark sets a subscription's status: limited (until the provider's reset, or
// the end of the current block when until is zero), cooldown (until, or now +
// the cooldown), disabled, or available. It writes limit_reached and
// recovered events.
func (p *Pool) Mark(ctx context.Context, subID, status, reason string, until time.Time) (MarkResult, error) {
	if _, ok := p.conf().byID[subID]; !ok {
		return MarkResult{}, fmt.Errorf("pool: mark %q: %w", subID, ErrUnknownSubscription)
	}
	switch status {
	case StatusLimited, StatusCooldown, StatusDisabled, StatusAvailable:
	default:
		return MarkResult{}, fmt.Errorf("pool: mark %q: %w", status, ErrInvalidStatus)
	}
	var untilMS int64
	if !until.IsZero() {
		untilMS = until.UnixMilli()
	}
	r, err := lua.Mark(ctx, p.rdb, p.keys, lua.MarkArgs{SubID: subID, Status: status, Reason: reason,
		UntilMS: untilMS, CooldownMS: p.cooldown.Milliseconds(), ApproachAt: p.conf().approachAt})
	if errors.Is(err, lua.ErrNotFound) {
		return MarkResult{}, fmt.Errorf("pool: mark %q (not synced): %w", subID, ErrUnknownSubscription)
	}
	if err != nil {
		return MarkResult{}, fmt.Errorf("pool: mark: %w", err)
	}
	res := MarkResult{Changed: r.Changed, Status: r.Status}
	if r.UntilMS > 0 {
		res.Until = time.UnixMilli(r.UntilMS)
	}
	return res, nil
}

// Release ends a session, whoever owns it (operators and internal use), and
// returns the subscription it was on ("" when it was on the fallback).
func (p *Pool) Release(ctx context.Context, sessionID string) (string, error) {
	return p.release(ctx, sessionID, "")
}

// ReleaseAs ends an owner's session (a client said it is done): a session of
// another owner answers ErrSessionNotFound and is left as it was. owner ""
// is NoOwner.
func (p *Pool) ReleaseAs(ctx context.Context, sessionID, owner string) (string, error) {
	if owner == "" {
		owner = NoOwner
	}
	if !lua.ValidID(owner) {
		return "", ErrInvalidOwner
	}
	return p.release(ctx, sessionID, owner)
}

func (p *Pool) release(ctx context.Context, sessionID, owner string) (string, error) {
	if !lua.ValidID(sessionID) {
		return "", ErrInvalidSession
	}
	var sub string
	err := p.withSubs(ctx, func(s *lua.SubSet) error {
		var err error
		sub, err = lua.Release(ctx, p.rdb, p.keys, s, sessionID, owner)
		return err
	})
	if errors.Is(err, lua.ErrNotFound) && owner != "" {
		// Another owner's session stays, and so does this replica's hint.
		return "", ErrSessionNotFound
	}
	p.hints.drop(sessionID)
	if errors.Is(err, lua.ErrNotFound) {
		return "", ErrSessionNotFound
	}
	if err != nil {
		return "", fmt.Errorf("pool: release: %w", err)
	}
	return sub, nil
}

// Session is a session as stored in Redis.
type Session struct {
	ID           string
	Subscription string // "" while on the fallback
	Priority     string
	AllocatedAt  time.Time
	LastActive   time.Time
	Requests     int64
	CostUSD      float64
	Tokens       int64
	CLISession   string
	// Owner is the key id of the API key that created the session.
	Owner string
}

// Session reads one session.
func (p *Pool) Session(ctx context.Context, sessionID string) (Session, error) {
	if !lua.ValidID(sessionID) {
		return Session{}, ErrInvalidSession
	}
	h, err := lua.SessionFields(ctx, p.rdb, p.keys, sessionID)
	if err != nil {
		return Session{}, fmt.Errorf("pool: session: %w", err)
	}
	if len(h) == 0 {
		return Session{}, ErrSessionNotFound
	}
	last, err := p.lastActive(ctx, sessionID, h["sub"])
	if err != nil {
		return Session{}, fmt.Errorf("pool: session: %w", err)
	}
	return Session{ID: sessionID, Subscription: h["sub"], Priority: h["priority"],
		AllocatedAt: msTime(h["allocatedAt"]), LastActive: last,
		Requests: atoi(h["requests"]), CostUSD: atof(h["cost"]), Tokens: atoi(h["tokens"]),
		CLISession: h["cliSession"], Owner: h["owner"]}, nil
}

// lastActive derives a session's last activity, which is stored nowhere:
// on a subscription, its client-set score ("active until") less the idle
// age (the end of its last turn; now while a turn runs); on the fallback,
// the last refresh of its key's TTL (the stale age before it expires).
func (p *Pool) lastActive(ctx context.Context, sessionID, sub string) (time.Time, error) {
	until, ttl, now, err := lua.SessionActivity(ctx, p.rdb, p.keys, sessionID, sub)
	if err != nil {
		return time.Time{}, err
	}
	var ms int64
	switch {
	case until > 0:
		ms = min(until-p.idleMS(), now)
	case ttl >= 0:
		ms = min(now-(p.staleMS()-ttl), now)
	default:
		return time.Time{}, nil
	}
	return time.UnixMilli(ms), nil
}

// SessionMemory is the bytes Redis accounts for one session's hash (key,
// fields, TTL entry), for capacity planning (tests/poolbench).
func (p *Pool) SessionMemory(ctx context.Context, sessionID string) (int64, error) {
	if !lua.ValidID(sessionID) {
		return 0, ErrInvalidSession
	}
	n, err := lua.SessionMemory(ctx, p.rdb, p.keys, sessionID)
	if err != nil {
		return 0, fmt.Errorf("pool: session memory: %w", err)
	}
	return n, nil
}

func atof(s string) float64 {
	f, _ := strconv.ParseFloat(s, 64)
	return f
}

func atoi(s string) int64 {
	n, _ := strconv.ParseInt(s, 10, 64)
	return n
}

func msTime(s string) time.Time {
	n := atoi(s)
	if n <= 0 {
		return time.Time{}
	}
	return time.UnixMilli(n)
}
