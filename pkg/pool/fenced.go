package pool

import (
	"context"
	"fmt"

	"github.com/authpool/authpool/pkg/lua"
)

// MaintainResult says what a maintenance pass did.
type MaintainResult struct {
	// DroppedClients were stale (inactive longer than staleAfterSeconds).
	DroppedClients int
	// Restored subscriptions left limited/cooldown because until passed.
	Restored int
}

// Maintain drops stale clients, restores subscriptions whose limited or
// cooldown status has run out, and refreshes rolling weekly totals. It is
// fenced: with an epoch that has moved on it changes nothing and returns
// ErrNotLeader.
func (p *Pool) Maintain(ctx context.Context, epoch int64) (MaintainResult, error) {
	var r MaintainResult
	err := p.withSubs(ctx, func(s *lua.SubSet) error {
		var err error
		r.DroppedClients, r.Restored, err = lua.Maintain(ctx, p.rdb, p.keys, s, epoch, p.staleMS(), p.approachAt)
		return err
	})
	if err != nil {
		return MaintainResult{}, mapLuaErr("maintain", err)
	}
	return r, nil
}

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
func (p *Pool) Rebalance(ctx context.Context, epoch int64) (RebalanceResult, error) {
	snap, err := p.Status(ctx)
	if err != nil {
		return RebalanceResult{}, err
	}
	var hi, lo *SubscriptionStatus
	for i := range snap.Subscriptions {
		s := &snap.Subscriptions[i]
		if s.Status != StatusAvailable && s.Status != StatusApproaching {
			continue
		}
		if hi == nil || s.WeeklyUsed > hi.WeeklyUsed {
			hi = s
		}
		if lo == nil || s.WeeklyUsed < lo.WeeklyUsed ||
			(s.WeeklyUsed == lo.WeeklyUsed && s.Clients < lo.Clients) {
			lo = s
		}
	}
	if hi == nil || lo == nil || hi.ID == lo.ID {
		return RebalanceResult{}, nil
	}
	res := RebalanceResult{From: hi.ID, To: lo.ID, Gap: hi.WeeklyUsed - lo.WeeklyUsed}
	threshold := p.cfg.Rebalancing.CostGapThreshold
	if res.Gap <= threshold {
		return res, nil
	}
	res.Needed = true
	// Candidates: the most idle clients of the source, by Redis' clock.
	nowMS := snap.Now.UnixMilli()
	limit := int64(p.cfg.Rebalancing.MaxClientsToMovePerCycle) * 4
	cands, err := lua.ClientsActiveBetween(ctx, p.rdb, p.keys, hi.ID, nowMS-p.staleMS(), nowMS-p.idleMS(), limit)
	if err != nil {
		return res, fmt.Errorf("pool: rebalance: candidates: %w", err)
	}
	// Sessions with a turn in flight do not move: leave them out, so they
	// do not take the places of idle candidates (the script checks again).
	busy, err := lua.InFlightAfter(ctx, p.rdb, p.keys, nowMS)
	if err != nil {
		return res, fmt.Errorf("pool: rebalance: turns in flight: %w", err)
	}
	inFlight := make(map[string]bool, len(busy))
	for _, sid := range busy {
		inFlight[sid] = true
	}
	valid := cands[:0]
	for _, c := range cands {
		if lua.ValidID(c) && !inFlight[c] {
			valid = append(valid, c)
		}
	}
	if len(valid) == 0 {
		return res, nil
	}
	r, err := lua.Rebalance(ctx, p.rdb, p.keys, lua.RebalanceArgs{Epoch: epoch, From: hi.ID, To: lo.ID,
		GapThreshold: FormatUSD(threshold), IdleMS: p.idleMS(), StaleMS: p.staleMS(),
		MaxMoves: p.cfg.Rebalancing.MaxClientsToMovePerCycle, Admit: p.admit(PriorityHigh), Candidates: valid})
	if err != nil {
		return res, mapLuaErr("rebalance", err)
	}
	res.Moved = r.Moved
	return res, nil
}
