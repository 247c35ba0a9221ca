package rebalance

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/authpool/authpool/pkg/lua"
	"github.com/authpool/authpool/pkg/pool"
)

// poolKeys names a test pool: its name, for the pool's handles, and its keys,
// for the assertions on the lock and the channel that no pool method reads.
type poolKeys struct {
	lua.Keys
	name string
}

func newKeys(name string) poolKeys { return poolKeys{Keys: lua.NewKeys(name), name: name} }

func keysOf(p *pool.Pool) poolKeys { return newKeys(p.Config().Pool) }

// leader is the pool's leadership state on client c: an elector's promotion,
// hints and demotion go through its own (fault-injected) client.
func (k poolKeys) leader(t testing.TB, c redis.UniversalClient) *pool.Leader {
	t.Helper()
	l, err := pool.NewLeader(c, k.name)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// readLeaderInfo reads the leader:info record of the pool k.
func readLeaderInfo(ctx context.Context, c redis.UniversalClient, k poolKeys) (LeaderInfo, bool, error) {
	l, err := pool.NewLeader(c, k.name)
	if err != nil {
		return LeaderInfo{}, false, err
	}
	return l.Info(ctx)
}
