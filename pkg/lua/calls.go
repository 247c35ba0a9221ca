package lua

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"
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
	// TurnID, when set, keeps a session bound to a subscription active
	// for max(IdleMS, LeaseMS) from now (a turn in flight), else IdleMS.
	TurnID  string
	LeaseMS int64
	// IdleMS is the idle age: the cap counts sessions active within it.
	IdleMS int64
	// BlockAdmit is the block admission threshold: no new binding on a
	// subscription whose observed 5-hour utilization is at or over it
	// (0: none).
	BlockAdmit float64
	// Known, when set, holds one byte per subscription of the SubSet: '1'
	// for one the caller can run, '0' for one it does not know (a newer
	// config's). Empty: all known.
	Known string
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
	return allocate(ctx, c, k, subs, a, allocateScript)
}

// allocate runs script (allocate.lua, or a test's variant of it) over subs.
func allocate(ctx context.Context, c Scripter, k Keys, subs *SubSet, a AllocateArgs, script *redis.Script) (AllocateReply, error) {
	keys := make([]string, 0, 4+len(subs.triples))
	keys = append(keys, k.Subs(), k.Session(a.SessionID), k.Events())
	keys = append(keys, subs.triples...)
	keys = append(keys, k.Rank(), k.RankAt())
	args := make([]any, 0, 19+len(subs.ids))
	args = append(args, a.SessionID, a.Priority, a.Admit, a.ResumeLimit, a.ApproachAt, a.StaleMS, b01(a.FallbackOK))
	args = append(args, a.Weights.args()...)
	mode := "full"
	if a.ResumeOnly {
		mode = "resume"
	}
	args = append(args, mode, len(subs.ids))
	args = append(args, subs.ids...)
	args = append(args, a.Owner, a.TurnID, a.LeaseMS, a.IdleMS, blockAdmit(a.BlockAdmit), a.Known)
	v, err := run(ctx, c, "allocate", script, keys, 7, args...)
	if v == nil {
		return AllocateReply{}, err
	}
	return AllocateReply{Code: v.code(), SubID: v.str(1), Kind: v.str(2), CLISession: v.str(3),
		From: v.str(4), Reason: v.str(5), RetryAfterMS: v.int64(6)}, err
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
	KeyName    string // the client key's name, "" for none
	IdleMS     int64  // the session is active for this long after the turn
	// Succeeded: the turn succeeded on SubID; its run of failures and its
	// login's probation end (as failures.lua's succeeded).
	Succeeded bool
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
	clientKey := k.Base() + ":key:-" // never written: KEYS stay fixed without a name
	if a.KeyName != "" {
		clientKey = k.ClientKey(a.KeyName)
	}
	keys := []string{k.Req(a.RequestID), sub, hourly, clients, sess, k.Usage(), k.Events(),
		clientKey, clientKey + ":hourly", k.RankAt()}
	args := make([]any, 0, 17+len(a.Thresholds))
	args = append(args, a.RequestID, a.SubID, a.SessionID, a.CostUSD, a.Input, a.Output, a.CacheWrite, a.CacheRead,
		a.Model, a.ModelUsage, a.CLISession, a.ApproachAt, a.MarkerTTL, a.Retention, a.StaleMS, len(a.Thresholds))
	for _, t := range a.Thresholds {
		args = append(args, t)
	}
	args = append(args, a.KeyName, a.IdleMS, b01(a.Succeeded))
	v, err := run(ctx, c, "settle", settleScript, keys, 5, args...)
	if err != nil {
		return SettleReply{}, err
	}
	return SettleReply{Duplicate: v.code() == CodeDuplicate, WeeklyUsed: v.str(1), BlockCost: v.str(2),
		BurnRate: v.str(3), Status: v.str(4)}, nil
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
	keys := []string{k.Sub(a.SubID), k.Hourly(a.SubID), k.Events(), k.Rank(), k.RankAt()}
	v, err := run(ctx, c, "mark "+a.SubID, markScript, keys, 3,
		a.SubID, a.Status, a.Reason, a.UntilMS, a.CooldownMS, a.ApproachAt)
	if err != nil {
		return MarkReply{}, err
	}
	return MarkReply{Changed: v.code() == CodeOK, Status: v.str(1), UntilMS: v.int64(2)}, nil
}

// Release runs release.lua and returns the subscription the session was on
// ("" for the fallback). A session of another owner is ErrNotFound; owner
// "" releases whatever the owner.
func Release(ctx context.Context, c Scripter, k Keys, subs *SubSet, sessionID, owner string) (string, error) {
	keys := make([]string, 0, 3+len(subs.clients))
	keys = append(keys, k.Session(sessionID))
	keys = append(keys, subs.clients...)
	keys = append(keys, k.Turns(sessionID), k.RankAt())
	args := make([]any, 0, 2+len(subs.ids))
	args = append(args, sessionID, len(subs.ids))
	args = append(args, subs.ids...)
	args = append(args, owner)
	v, err := run(ctx, c, "release", releaseScript, keys, 2, args...)
	if err != nil {
		return "", err
	}
	return v.str(1), nil
}

// Turn runs turn.lua over subs: a running turn's heartbeat keeps the
// session active until leaseMS from now (and its key at least staleMS
// alive); leaseMS 0 ends a failed turn (active for idleMS from now). Only
// on the subscription the session is bound to, never moving its score
// back. No such session, or one on the fallback, is ErrNotFound; a
// subscription not among subs is ErrStaleSubs.
func Turn(ctx context.Context, c Scripter, k Keys, subs *SubSet, sessionID, turnID string, leaseMS, staleMS, idleMS int64) error {
	keys := make([]string, 0, 1+len(subs.clients))
	keys = append(keys, k.Session(sessionID))
	keys = append(keys, subs.clients...)
	args := make([]any, 0, 6+len(subs.ids))
	args = append(args, sessionID, turnID, leaseMS, staleMS, idleMS, len(subs.ids))
	args = append(args, subs.ids...)
	_, err := run(ctx, c, "turn", turnScript, keys, 1, args...)
	return err
}

// ResumeArgs are the inputs of resume.lua, the lean hinted resume.
type ResumeArgs struct {
	SessionID, SubID, Owner string
	ResumeLimit             float64
	StaleMS, IdleMS         int64
	TurnID                  string
	LeaseMS                 int64
}

// Resume runs resume.lua: the session resumes on SubID (ok, with the CLI
// session to --resume), or the caller must run Allocate (ok false: nothing
// changed). Another owner's session is ErrNotFound.
func Resume(ctx context.Context, c Scripter, k Keys, a ResumeArgs) (cliSession string, ok bool, err error) {
	keys := []string{k.Session(a.SessionID), k.Sub(a.SubID), k.Clients(a.SubID)}
	v, err := run(ctx, c, "resume", resumeScript, keys, 2, a.SessionID, a.SubID, a.Owner, a.ResumeLimit,
		a.StaleMS, a.IdleMS, a.TurnID, a.LeaseMS)
	if v == nil || err != nil {
		return "", false, err
	}
	return v.str(1), v.code() == CodeOK, nil
}

// SyncSub is one configured subscription's static fields.
type SyncSub struct {
	ID, Email, Type, ConfigDir string
	WeeklyBudget               string // decimal USD
	MaxClients                 int
}

// ConfigVersion is a config's version: its content hash and the time it
// was loaded (Unix ms). Versions order by LoadedAt, then Hash.
type ConfigVersion struct {
	Hash     string
	LoadedAt int64
}

// SyncReply is sync.lua's answer.
type SyncReply struct {
	Added, Removed int
	// InForce is the version Redis holds after the call: the caller's, or
	// a newer one (then ErrOlderConfig and nothing was written).
	InForce ConfigVersion
}

// Sync runs sync.lua: when v is not older than the version in force,
// configured subscriptions upserted, the others of existing (the SET's
// members as read by the caller) marked removed, v recorded.
func Sync(ctx context.Context, c Scripter, k Keys, v ConfigVersion, subs []SyncSub, existing []string) (SyncReply, error) {
	keys := []string{k.Subs(), k.Config(), k.Events()}
	args := []any{v.Hash, v.LoadedAt, len(subs)}
	for _, s := range subs {
		keys = append(keys, k.Sub(s.ID))
		args = append(args, s.ID, s.Email, s.Type, s.ConfigDir, s.WeeklyBudget, s.MaxClients)
	}
	args = append(args, len(existing))
	for _, id := range existing {
		keys = append(keys, k.Sub(id))
		args = append(args, id)
	}
	keys = append(keys, k.Rank(), k.RankAt())
	r, err := run(ctx, c, "sync", syncScript, keys, 5, args...)
	if r == nil {
		return SyncReply{}, err
	}
	return SyncReply{Added: r.int(1), Removed: r.int(2), InForce: ConfigVersion{Hash: r.str(3), LoadedAt: r.int64(4)}}, err
}

// RankRefresh runs rank_refresh.lua: it scores the subscriptions of subs
// (a few at a time: the caller chunks) for the allocation ranking, and
// returns how many it scored.
func RankRefresh(ctx context.Context, c Scripter, k Keys, subs *SubSet, rank RankInputs) (int, error) {
	keys := make([]string, 0, 2+len(subs.triples))
	keys = append(keys, subs.triples...)
	keys = append(keys, k.Rank(), k.RankAt())
	args := make([]any, 0, 9+len(subs.ids))
	args = append(args, len(subs.ids))
	args = append(args, subs.ids...)
	args = append(args, rank.args()...)
	v, err := run(ctx, c, "rank refresh", rankRefreshScript, keys, 2, args...)
	if err != nil {
		return 0, err
	}
	return v.int(1), nil
}

// Maintain runs maintain.lua under the fencing epoch. limit bounds the stale
// clients one call drops (0: all); more says the call stopped at that bound
// and stale clients may remain, so the caller calls again. rank: the
// inputs with which every subscription's ranking value is refreshed.
func Maintain(ctx context.Context, c Scripter, k Keys, subs *SubSet, epoch int64, staleMS, idleMS int64, approachAt float64, limit int, rank RankInputs) (dropped, restored int, more bool, err error) {
	keys := make([]string, 0, 4+len(subs.triples))
	keys = append(keys, k.Epoch(), k.Events())
	keys = append(keys, subs.triples...)
	keys = append(keys, k.Rank(), k.RankAt())
	args := make([]any, 0, 14+len(subs.ids))
	args = append(args, epoch, staleMS, approachAt, len(subs.ids))
	args = append(args, subs.ids...)
	args = append(args, limit, idleMS)
	args = append(args, rank.args()...)
	v, err := run(ctx, c, "maintain", maintainScript, keys, 4, args...)
	if err != nil {
		return 0, 0, false, err
	}
	return v.int(1), v.int(2), v.int(3) == 1, nil
}

// RebalanceArgs are the inputs of rebalance.lua.
type RebalanceArgs struct {
	Epoch        int64
	GapThreshold string // decimal USD
	IdleMS       int64
	StaleMS      int64
	MaxMoves     int
	Admit        float64
	// From and To are the pair an earlier call answered (CodeNeedCandidates)
	// and Candidates the idle sessions on From, most idle first; all empty
	// on the first call.
	From, To   string
	Candidates []string
	// BlockAdmit: no session moves to a subscription whose observed
	// 5-hour utilization is at or over it (0: none).
	BlockAdmit float64
}

// RebalanceReply is rebalance.lua's answer.
type RebalanceReply struct {
	// Code is CodeOK (moved), CodeNeedCandidates (call again with From, To
	// and From's idle sessions) or CodeNothingToDo.
	Code     int
	Moved    int
	Gap      string // decimal USD
	From, To string // the pair the script chose ("" when there is none)
	Needed   bool   // the gap exceeds the threshold
	NowMS    int64  // Redis' clock
}

// Rebalance runs rebalance.lua under the fencing epoch over subs: the
// script chooses the pair and decides whether the gap calls for a move.
func Rebalance(ctx context.Context, c Scripter, k Keys, subs *SubSet, a RebalanceArgs) (RebalanceReply, error) {
	keys := make([]string, 0, 4+len(subs.triples)+len(a.Candidates))
	keys = append(keys, k.Epoch(), k.Events(), k.Subs())
	keys = append(keys, subs.triples...)
	args := make([]any, 0, 10+len(subs.ids)+len(a.Candidates))
	args = append(args, a.Epoch, a.GapThreshold, a.IdleMS, a.StaleMS, a.MaxMoves, a.Admit, len(subs.ids))
	args = append(args, subs.ids...)
	args = append(args, a.From, a.To, len(a.Candidates))
	for _, sid := range a.Candidates {
		keys = append(keys, k.Session(sid))
		args = append(args, sid)
	}
	args = append(args, blockAdmit(a.BlockAdmit))
	v, err := run(ctx, c, "rebalance", rebalanceScript, keys, 7, args...)
	if err != nil {
		return RebalanceReply{}, err
	}
	return RebalanceReply{Code: v.code(), Moved: v.int(1), Gap: v.str(2), From: v.str(3), To: v.str(4),
		Needed: v.int(5) == 1, NowMS: v.int64(6)}, nil
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
		args = append(args, a.IdleMS)
	}
	s, err := statusScript.Run(ctx, c, keys, args...).Text()
	if err != nil {
		return nil, fmt.Errorf("lua: status: %w", err)
	}
	return []byte(s), nil
}

// blockAdmit is ARGV's block admission threshold: ” when there is none.
func blockAdmit(f float64) any {
	if f <= 0 {
		return ""
	}
	return f
}
