package pool

import (
	"context"

	"github.com/authpool/authpool/pkg/lua"
)

// MaintainResult says what a maintenance pass did.
type MaintainResult struct {
	// DroppedClients were stale (inactive longer than staleAfterSeconds).
	DroppedClients int
	// Restored subscriptions left limited/cooldown because until passed.
	Restored int
}

// maintainChunk is the most stale clients one maintain.lua call drops: about
// 1 ms of Redis time (cyclebench), where dropping a wave of thousands in one
// call held the shard for over 10 ms.
const maintainChunk = 500

// Maintain drops stale clients, restores subscriptions whose limited or
// cooldown status has run out, and refreshes rolling weekly totals. It is
// fenced: with an epoch that has moved on it changes nothing and returns
// ErrNotLeader.
func (p *Pool) Maintain(ctx context.Context, epoch int64) (MaintainResult, error) {
	var r MaintainResult
	err := p.withSubs(ctx, func(s *lua.SubSet) error {
		r = MaintainResult{}
		// Each call drops at most maintainChunk stale clients, so that no
		// call holds the shard long; it says when more remain. Every call
		// that answers more has dropped maintainChunk, so this ends.
		for {
			dropped, restored, more, err := lua.Maintain(ctx, p.rdb, p.keys, s, epoch, p.staleMS(), p.idleMS(), p.conf().approachAt, maintainChunk, p.rank())
			if err != nil {
				return err
			}
			r.DroppedClients += dropped
			r.Restored += restored
			if !more {
				return nil
			}
		}
	})
	if err != nil {
		return MaintainResult{}, mapLuaErr("maintain", err)
	}
	return r, nil
}
