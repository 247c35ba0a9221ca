package rebalance

import "github.com/authpool/authpool/pkg/pool"

// LeaderInfo is the authpool:{P}:leader:info record of the current leader;
// read it with (*pool.Leader).Info.
type LeaderInfo = pool.LeaderInfo
