package pool

import (
	"context"
	"fmt"

	"github.com/authpool/authpool/pkg/lua"
)

// RebalanceResult says what a rebalancing pass did.
type RebalanceResult struct {
	// From and To are the highest- and lowest-usage usable subscriptions.
	From, To string
	// Gap is their weeklyUsed difference in USD.
	Gap float64
	// Needed is true when the gap exceeds costGapThreshold.
	Needed bool
	// Moved is the number of idle clients moved from From to To.
	Moved int
}

// Rebalance moves up to maxClientsToMovePerCycle clients idle longer than
// idleAfterSeconds from the usable subscription with the highest weekly
// usage to the one with the lowest, when the gap exceeds costGapThreshold and
// within the destination's capacity (DESIGN §6). It is fenced like Maintain.
//
// rebalance.lua alone decides the pair and whether the gap calls for a move;
// this side only fetches the idle sessions of the source it named (the
// script must be given every key it touches) and calls it again with them.
func (p *Pool) Rebalance(ctx context.Context, epoch int64) (RebalanceResult, error) {
	args := lua.RebalanceArgs{Epoch: epoch, GapThreshold: FormatUSD(p.Config().Rebalancing.CostGapThreshold),
		IdleMS: p.idleMS(), StaleMS: p.staleMS(), MaxMoves: p.Config().Rebalancing.MaxClientsToMovePerCycle,
		Admit: p.admit(PriorityHigh), BlockAdmit: p.Config().BlockAdmissionThreshold}
	var r lua.RebalanceReply
	call := func(s *lua.SubSet) error {
		var err error
		r, err = lua.Rebalance(ctx, p.rdb, p.keys, s, args)
		return err
	}
	if err := p.withSubs(ctx, call); err != nil {
		return RebalanceResult{}, mapLuaErr("rebalance", err)
	}
	res := RebalanceResult{From: r.From, To: r.To, Gap: atof(r.Gap), Needed: r.Needed}
	if r.Code != lua.CodeNeedCandidates {
		return res, nil
	}
	cands, err := p.idleCandidates(ctx, r.From, r.NowMS)
	if err != nil || len(cands) == 0 {
		return res, err
	}
	args.From, args.To, args.Candidates = r.From, r.To, cands
	if err := p.withSubs(ctx, call); err != nil {
		return res, mapLuaErr("rebalance", err)
	}
	// A pair that changed between the calls moves nobody this cycle; the
	// result reports the pair of the latest call.
	return RebalanceResult{From: r.From, To: r.To, Gap: atof(r.Gap), Needed: r.Needed, Moved: r.Moved}, nil
}

// idleCandidates are the most idle live sessions of subscription sub by
// Redis' clock nowMS: a client-set score ("active until") before now and
// not stale. A session with a turn in flight is active, so never one of
// them (the script checks again).
func (p *Pool) idleCandidates(ctx context.Context, sub string, nowMS int64) ([]string, error) {
	limit := int64(p.Config().Rebalancing.MaxClientsToMovePerCycle) * 4
	edge := nowMS - p.staleMS() + p.idleMS()
	cands, err := lua.ClientsActiveBetween(ctx, p.rdb, p.keys, sub, edge-1, nowMS, limit)
	if err != nil {
		return nil, fmt.Errorf("pool: rebalance: candidates: %w", err)
	}
	valid := cands[:0]
	for _, c := range cands {
		if lua.ValidID(c) {
			valid = append(valid, c)
		}
	}
	return valid, nil
}
