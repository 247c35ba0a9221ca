// Package lua holds the Redis Lua scripts of the pool (embedded .lua files,
// one redis.Script each), the key builders, and typed wrappers that encode
// ARGV and decode replies. Every script reads time from Redis TIME and is
// passed every key it touches in KEYS, all in one Cluster slot.
package lua

import (
	"context"
	_ "embed"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
)

var (
	//go:embed lib.lua
	libSrc string
	//go:embed sync.lua
	syncSrc string
	//go:embed allocate.lua
	allocateSrc string
	//go:embed settle.lua
	settleSrc string
	//go:embed mark.lua
	markSrc string
	//go:embed release.lua
	releaseSrc string
	//go:embed maintain.lua
	maintainSrc string
	//go:embed rebalance.lua
	rebalanceSrc string
	//go:embed status.lua
	statusSrc string
	//go:embed turn.lua
	turnSrc string
)

// The scripts. Those that need the shared library have it prepended, so the
// health formula and the money helpers exist in one place.
var (
	syncScript      = redis.NewScript(syncSrc)
	allocateScript  = redis.NewScript(libSrc + allocateSrc)
	settleScript    = redis.NewScript(libSrc + settleSrc)
	markScript      = redis.NewScript(libSrc + markSrc)
	releaseScript   = redis.NewScript(releaseSrc)
	maintainScript  = redis.NewScript(libSrc + maintainSrc)
	rebalanceScript = redis.NewScript(libSrc + rebalanceSrc)
	statusScript    = redis.NewScript(libSrc + statusSrc)
	turnScript      = redis.NewScript(libSrc + turnSrc)

	all = []*redis.Script{syncScript, allocateScript, settleScript, markScript,
		releaseScript, maintainScript, rebalanceScript, statusScript, turnScript}
)

// Reply codes shared by the scripts.
const (
	CodeOK          = 0
	CodeFallback    = 1
	CodeExhausted   = 2
	CodeStaleSubs   = 3
	CodeStaleEpoch  = 4
	CodeDuplicate   = 5
	CodeNotFound    = 6
	CodeUnchanged   = 8
	CodeNothingToDo = 9
	CodeResumeMiss  = 10
)

// Sentinel errors of the wrappers.
var (
	// ErrStaleSubscriptions: the subscription SET changed since the caller
	// read it; reload the list and call again.
	ErrStaleSubscriptions = errors.New("lua: subscription list changed")
	// ErrStaleEpoch: a fenced script was called with an epoch that has moved
	// on; the caller is no longer the leader and nothing was changed.
	ErrStaleEpoch = errors.New("lua: stale fencing epoch")
	// ErrNotFound: the session or subscription does not exist.
	ErrNotFound = errors.New("lua: not found")
	// ErrReply: the script answered in a shape the wrapper does not know.
	ErrReply = errors.New("lua: unexpected script reply")
)

// Scripter is what the wrappers need of a Redis client.
type Scripter interface {
	redis.Scripter
}

var _ Scripter = (redis.UniversalClient)(nil)

// Load loads every script into the script cache, so that pipelined or
// first calls find them by SHA.
func Load(ctx context.Context, c Scripter) error {
	for _, s := range all {
		if err := s.Load(ctx, c).Err(); err != nil {
			return fmt.Errorf("lua: load scripts: %w", err)
		}
	}
	return nil
}

// Loaded reports whether every script is in the server's script cache.
func Loaded(ctx context.Context, c Scripter) (bool, error) {
	shas := make([]string, len(all))
	for i, s := range all {
		shas[i] = s.Hash()
	}
	ok, err := c.ScriptExists(ctx, shas...).Result()
	if err != nil {
		return false, fmt.Errorf("lua: script exists: %w", err)
	}
	for _, b := range ok {
		if !b {
			return false, nil
		}
	}
	return true, nil
}

// SubSet is an ordered list of subscription ids with their key triplets
// (sub, clients, hourly), built once and reused on every call.
type SubSet struct {
	IDs     []string
	triples []string
	clients []string
	ids     []any
}

// SubSet builds the key triplets of ids.
func (k Keys) SubSet(ids []string) *SubSet {
	s := &SubSet{IDs: append([]string(nil), ids...)}
	for _, id := range ids {
		s.triples = append(s.triples, k.Sub(id), k.Clients(id), k.Hourly(id))
		s.clients = append(s.clients, k.Clients(id))
		s.ids = append(s.ids, id)
	}
	return s
}

// Weights are the health-score weights (DESIGN §5).
type Weights struct {
	Weekly, Block, BlockRef, Clients, Burn, BurnFree, IdleBonus float64
}

// DefaultWeights are the earlier version's weights:
// 100 − 0.5·weekly% − 0.3·block% − 5·clients − 2·max(0, burn−3) + 10 when idle,
// block% relative to 25 USD.
var DefaultWeights = Weights{Weekly: 0.5, Block: 0.3, BlockRef: 25, Clients: 5, Burn: 2, BurnFree: 3, IdleBonus: 10}

func (w Weights) args() []any {
	return []any{w.Weekly, w.Block, w.BlockRef, w.Clients, w.Burn, w.BurnFree, w.IdleBonus}
}

func b01(b bool) string {
	if b {
		return "1"
	}
	return "0"
}
