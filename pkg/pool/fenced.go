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

// Maintain drops stale clients, restores subscriptions whose limited or
// cooldown status has run out, and refreshes rolling weekly totals. It is
// fenced: with an epoch that has moved on it changes nothing and returns
// ErrNotLeader.
func (p *Pool) Maintain(ctx context.Context, epoch int64) (MaintainResult, error) {
	var r MaintainResult
	err := p.withSubs(ctx, func(s *lua.SubSet) error {
		var err error
		r.DroppedClients, r.Restored, err = lua.Maintain(ctx, p.rdb, p.keys, s, epoch, p.staleMS(), p.conf().approachAt)
		return err
	})
	if err != nil {
		return MaintainResult{}, mapLuaErr("maintain", err)
	}
	return r, nil
}
