package lua

import (
	"context"
	"fmt"
	"strconv"
)

// AllocateArgs are the inputs of allocate.lua.
type AllocateArgs struct {
	SessionID   string
	Priority    string
	Admit       float64 // admission limit of the priority (weekly fraction)
	ResumeLimit float64 // a bound session stays while its weekly fraction is under this
	ApproachAt  float64 // weekly fraction at which a subscription turns approaching
	StaleMS     int64
	FallbackOK  bool
	Weights     Weights
	// ResumeOnly: subs holds the one subscription the caller believes the
	// session is on; the script resumes there or answers CodeResumeMiss.
	ResumeOnly bool
	// Owner is the caller's key id. A session belongs to the owner that
	// created it; for another owner the script answers CodeNotFound.
	Owner string
	// TurnID, when set, gives a session bound to a subscription an
	// in-flight lease for the turn, LeaseMS long.
	TurnID  string
	LeaseMS int64
	// IdleMS is the idle age: the cap counts sessions active within it.
	IdleMS int64
}

// AllocateReply is allocate.lua's answer.
type AllocateReply struct {
	Code         int    // CodeOK, CodeFallback or CodeExhausted
	SubID        string // the bound subscription (CodeOK)
	Kind         string // resumed | bound | fallback | exhausted
	CLISession   string // the CLI session to --resume (resumed only)
	From         string // the subscription the session left, if it moved
	Reason       string // why it moved, or why no subscription was eligible
	RetryAfterMS int64  // until the earliest reset, when none was eligible
}

// Allocate runs allocate.lua over subs.
func Allocate(ctx context.Context, c Scripter, k Keys, subs *SubSet, a AllocateArgs) (AllocateReply, error) {
	keys := make([]string, 0, 4+len(subs.triples))
	keys = append(keys, k.Subs(), k.Session(a.SessionID), k.Events())
	keys = append(keys, subs.triples...)
	keys = append(keys, k.Inflight())
	args := make([]any, 0, 19+len(subs.ids))
	args = append(args, a.SessionID, a.Priority, a.Admit, a.ResumeLimit, a.ApproachAt, a.StaleMS, b01(a.FallbackOK))
	args = append(args, a.Weights.args()...)
	mode := "full"
	if a.ResumeOnly {
		mode = "resume"
	}
	args = append(args, mode, len(subs.ids))
	args = append(args, subs.ids...)
	args = append(args, a.Owner, a.TurnID, a.LeaseMS, a.IdleMS)
	v, err := allocateScript.Run(ctx, c, keys, args...).Slice()
	if err != nil {
		return AllocateReply{}, fmt.Errorf("lua: allocate: %w", err)
	}
	if len(v) != 7 {
		return AllocateReply{}, fmt.Errorf("lua: allocate: %w", ErrReply)
	}
	r := AllocateReply{Code: toInt(v[0]), SubID: toStr(v[1]), Kind: toStr(v[2]), CLISession: toStr(v[3]),
		From: toStr(v[4]), Reason: toStr(v[5]), RetryAfterMS: int64(toInt(v[6]))}
	switch r.Code {
	case CodeStaleSubs:
		return r, fmt.Errorf("lua: allocate: %w", ErrStaleSubscriptions)
	case CodeNotFound:
		return r, fmt.Errorf("lua: allocate: %w", ErrNotFound)
	}
	return r, nil
}

// SettleArgs are the inputs of settle.lua.
type SettleArgs struct {
	RequestID  string
	SubID      string // "" for fallback usage
	SessionID  string // "" for none
	CostUSD    string // decimal USD
	Input      int64
	Output     int64
	CacheWrite int64
	CacheRead  int64
	Model      string
	ModelUsage string // JSON object keyed by model, or ""
	CLISession string
	ApproachAt float64
	MarkerTTL  int64 // ms
	Retention  int64 // ms
	StaleMS    int64
	Thresholds []string
}

// SettleReply is settle.lua's answer.
type SettleReply struct {
	Duplicate  bool
	WeeklyUsed string
	BlockCost  string
	BurnRate   string
	Status     string
}

// Settle runs settle.lua.
func Settle(ctx context.Context, c Scripter, k Keys, a SettleArgs) (SettleReply, error) {
	var sub, hourly, clients string
	if a.SubID == "" {
		sub, hourly, clients = k.Fallback(), k.FallbackHourly(), k.Fallback()+":clients"
	} else {
		sub, hourly, clients = k.Sub(a.SubID), k.Hourly(a.SubID), k.Clients(a.SubID)
	}
	sess := k.Base() + ":session:-" // a never-written key keeps KEYS fixed when there is no session
	if a.SessionID != "" {
		sess = k.Session(a.SessionID)
	}
	keys := []string{k.Req(a.RequestID), sub, hourly, clients, sess, k.Usage(), k.Events(), k.Inflight()}
	args := make([]any, 0, 16+len(a.Thresholds))
	args = append(args, a.RequestID, a.SubID, a.SessionID, a.CostUSD, a.Input, a.Output, a.CacheWrite, a.CacheRead,
		a.Model, a.ModelUsage, a.CLISession, a.ApproachAt, a.MarkerTTL, a.Retention, a.StaleMS, len(a.Thresholds))
	for _, t := range a.Thresholds {
		args = append(args, t)
	}
	v, err := settleScript.Run(ctx, c, keys, args...).Slice()
	if err != nil {
		return SettleReply{}, fmt.Errorf("lua: settle: %w", err)
	}
	if len(v) != 5 {
		return SettleReply{}, fmt.Errorf("lua: settle: %w", ErrReply)
	}
	return SettleReply{Duplicate: toInt(v[0]) == CodeDuplicate, WeeklyUsed: toStr(v[1]), BlockCost: toStr(v[2]),
		BurnRate: toStr(v[3]), Status: toStr(v[4])}, nil
}

// MarkArgs are the inputs of mark.lua.
type MarkArgs struct {
	SubID      string
	Status     string // limited | cooldown | disabled | available
	Reason     string
	UntilMS    int64 // 0: the script's default (block end / now + cooldown)
	CooldownMS int64
	ApproachAt float64
}

// MarkReply is mark.lua's answer.
type MarkReply struct {
	Changed bool
	Status  string
	UntilMS int64
}

// Mark runs mark.lua.
func Mark(ctx context.Context, c Scripter, k Keys, a MarkArgs) (MarkReply, error) {
	keys := []string{k.Sub(a.SubID), k.Hourly(a.SubID), k.Events()}
	v, err := markScript.Run(ctx, c, keys, a.SubID, a.Status, a.Reason, a.UntilMS, a.CooldownMS, a.ApproachAt).Slice()
	if err != nil {
		return MarkReply{}, fmt.Errorf("lua: mark: %w", err)
	}
	if len(v) != 3 {
		return MarkReply{}, fmt.Errorf("lua: mark: %w", ErrReply)
	}
	if toInt(v[0]) == CodeNotFound {
		return MarkReply{}, fmt.Errorf("lua: mark %s: %w", a.SubID, ErrNotFound)
	}
	until, _ := strconv.ParseInt(toStr(v[2]), 10, 64)
	return MarkReply{Changed: toInt(v[0]) == CodeOK, Status: toStr(v[1]), UntilMS: until}, nil
}

// Release runs release.lua and returns the subscription the session was on
// ("" for the fallback). A session of another owner is ErrNotFound; owner
// "" releases whatever the owner.
func Release(ctx context.Context, c Scripter, k Keys, subs *SubSet, sessionID, owner string) (string, error) {
	keys := make([]string, 0, 3+len(subs.clients))
	keys = append(keys, k.Session(sessionID))
	keys = append(keys, subs.clients...)
	keys = append(keys, k.Inflight(), k.Turns(sessionID))
	args := make([]any, 0, 2+len(subs.ids))
	args = append(args, sessionID, len(subs.ids))
	args = append(args, subs.ids...)
	args = append(args, owner)
	v, err := releaseScript.Run(ctx, c, keys, args...).Slice()
	if err != nil {
		return "", fmt.Errorf("lua: release: %w", err)
	}
	if len(v) != 2 {
		return "", fmt.Errorf("lua: release: %w", ErrReply)
	}
	switch toInt(v[0]) {
	case CodeNotFound:
		return "", fmt.Errorf("lua: release: %w", ErrNotFound)
	case CodeStaleSubs:
		return "", fmt.Errorf("lua: release: %w", ErrStaleSubscriptions)
	}
	return toStr(v[1]), nil
}

// Turn runs turn.lua: it refreshes the in-flight lease of a running turn to
// leaseMS from now (keeping the session key at least staleMS alive), or
// ends the turn when leaseMS is 0. A turn that is not in flight (settled,
// ended, or its lease ran out and was cleaned up) is ErrNotFound.
func Turn(ctx context.Context, c Scripter, k Keys, sessionID, turnID string, leaseMS, staleMS int64) error {
	keys := []string{k.Session(sessionID), k.Inflight()}
	v, err := turnScript.Run(ctx, c, keys, sessionID, turnID, leaseMS, staleMS).Slice()
	if err != nil {
		return fmt.Errorf("lua: turn: %w", err)
	}
	if len(v) != 1 {
		return fmt.Errorf("lua: turn: %w", ErrReply)
	}
	if toInt(v[0]) == CodeNotFound {
		return fmt.Errorf("lua: turn: %w", ErrNotFound)
	}
	return nil
}

// SyncSub is one configured subscription's static fields.
type SyncSub struct {
	ID, Email, Type, ConfigDir string
	WeeklyBudget               string // decimal USD
	MaxClients                 int
}

// Sync runs sync.lua: configured subscriptions upserted, the others of
// existing (the SET's members as read by the caller) marked removed.
func Sync(ctx context.Context, c Scripter, k Keys, subs []SyncSub, existing []string) (added, removed int, err error) {
	keys := []string{k.Subs()}
	args := []any{len(subs)}
	for _, s := range subs {
		keys = append(keys, k.Sub(s.ID))
		args = append(args, s.ID, s.Email, s.Type, s.ConfigDir, s.WeeklyBudget, s.MaxClients)
	}
	args = append(args, len(existing))
	for _, id := range existing {
		keys = append(keys, k.Sub(id))
		args = append(args, id)
	}
	v, err := syncScript.Run(ctx, c, keys, args...).Slice()
	if err != nil {
		return 0, 0, fmt.Errorf("lua: sync: %w", err)
	}
	if len(v) != 3 {
		return 0, 0, fmt.Errorf("lua: sync: %w", ErrReply)
	}
	if toInt(v[0]) == CodeStaleSubs {
		return 0, 0, fmt.Errorf("lua: sync: %w", ErrStaleSubscriptions)
	}
	return toInt(v[1]), toInt(v[2]), nil
}

// Maintain runs maintain.lua under the fencing epoch.
func Maintain(ctx context.Context, c Scripter, k Keys, subs *SubSet, epoch int64, staleMS int64, approachAt float64) (dropped, restored int, err error) {
	keys := make([]string, 0, 3+len(subs.triples))
	keys = append(keys, k.Epoch(), k.Events())
	keys = append(keys, subs.triples...)
	keys = append(keys, k.Inflight())
	args := make([]any, 0, 4+len(subs.ids))
	args = append(args, epoch, staleMS, approachAt, len(subs.ids))
	args = append(args, subs.ids...)
	v, err := maintainScript.Run(ctx, c, keys, args...).Slice()
	if err != nil {
		return 0, 0, fmt.Errorf("lua: maintain: %w", err)
	}
	if len(v) != 3 {
		return 0, 0, fmt.Errorf("lua: maintain: %w", ErrReply)
	}
	if toInt(v[0]) == CodeStaleEpoch {
		return 0, 0, fmt.Errorf("lua: maintain: %w", ErrStaleEpoch)
	}
	return toInt(v[1]), toInt(v[2]), nil
}

// RebalanceArgs are the inputs of rebalance.lua.
type RebalanceArgs struct {
	Epoch        int64
	From, To     string
	GapThreshold string // decimal USD
	IdleMS       int64
	StaleMS      int64
	MaxMoves     int
	Admit        float64
	Candidates   []string // session ids on From, most idle first
}

// RebalanceReply is rebalance.lua's answer.
type RebalanceReply struct {
	Moved  int
	Gap    string // decimal USD
	NoMove bool   // gap under threshold, a side unusable, or no room
}

// Rebalance runs rebalance.lua under the fencing epoch.
func Rebalance(ctx context.Context, c Scripter, k Keys, a RebalanceArgs) (RebalanceReply, error) {
	keys := []string{k.Epoch(), k.Events(), k.Sub(a.From), k.Clients(a.From), k.Hourly(a.From),
		k.Sub(a.To), k.Clients(a.To), k.Hourly(a.To), k.Inflight()}
	args := []any{a.Epoch, a.From, a.To, a.GapThreshold, a.IdleMS, a.StaleMS, a.MaxMoves, a.Admit, len(a.Candidates)}
	for _, sid := range a.Candidates {
		keys = append(keys, k.Session(sid))
		args = append(args, sid)
	}
	v, err := rebalanceScript.Run(ctx, c, keys, args...).Slice()
	if err != nil {
		return RebalanceReply{}, fmt.Errorf("lua: rebalance: %w", err)
	}
	if len(v) != 3 {
		return RebalanceReply{}, fmt.Errorf("lua: rebalance: %w", ErrReply)
	}
	switch toInt(v[0]) {
	case CodeStaleEpoch:
		return RebalanceReply{}, fmt.Errorf("lua: rebalance: %w", ErrStaleEpoch)
	case CodeNothingToDo:
		return RebalanceReply{NoMove: true, Gap: toStr(v[2])}, nil
	}
	return RebalanceReply{Moved: toInt(v[1]), Gap: toStr(v[2])}, nil
}

// StatusArgs are the inputs of status.lua.
type StatusArgs struct {
	StaleMS    int64
	ApproachAt float64
	Weights    Weights
	IdleMS     int64 // > 0: count active and idle clients apart
}

// Status runs status.lua and returns its JSON document.
func Status(ctx context.Context, c Scripter, k Keys, subs *SubSet, a StatusArgs) ([]byte, error) {
	keys := make([]string, 0, 2+len(subs.triples))
	keys = append(keys, k.Subs())
	keys = append(keys, subs.triples...)
	args := make([]any, 0, 11+len(subs.ids))
	args = append(args, a.StaleMS, a.ApproachAt)
	args = append(args, a.Weights.args()...)
	args = append(args, len(subs.ids))
	args = append(args, subs.ids...)
	if a.IdleMS > 0 {
		keys = append(keys, k.Inflight())
		args = append(args, a.IdleMS)
	}
	s, err := statusScript.Run(ctx, c, keys, args...).Text()
	if err != nil {
		return nil, fmt.Errorf("lua: status: %w", err)
	}
	return []byte(s), nil
}

func toInt(v any) int {
	switch x := v.(type) {
	case int64:
		return int(x)
	case string:
		n, _ := strconv.Atoi(x)
		return n
	}
	return -1
}

func toStr(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case int64:
		return strconv.FormatInt(x, 10)
	}
	return ""
}
