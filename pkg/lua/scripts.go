// Package lua holds the Redis Lua scripts of the pool (embedded .lua files,
// one redis.Script each), the key builders, and typed wrappers that encode
// ARGV and decode replies. Every script reads time from Redis TIME and is
// passed every key it touches in KEYS, all in one Cluster slot.
package lua

import (
	"context"
	_ "embed"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
)

var (
	//go:embed codes.lua
	codesSrc string
	//go:embed clock.lua
	clockSrc string
	//go:embed lib.lua
	libSrc string
	//go:embed rank.lua
	rankSrc string
	//go:embed rank_refresh.lua
	rankRefreshSrc string
	//go:embed sync.lua
	syncSrc string
	//go:embed allocate.lua
	allocateSrc string
	//go:embed resume.lua
	resumeSrc string
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
	//go:embed gcra.lua
	gcraSrc string
	//go:embed touch.lua
	touchSrc string
	//go:embed dead.lua
	deadSrc string
	//go:embed trim.lua
	trimSrc string
	//go:embed promote.lua
	promoteSrc string
	//go:embed demote.lua
	demoteSrc string
	//go:embed failures.lua
	failuresSrc string
	//go:embed observe.lua
	observeSrc string
	//go:embed conversation_append.lua
	conversationAppendSrc string
	//go:embed conversation_load.lua
	conversationLoadSrc string
	//go:embed admin.lua
	adminSrc string
)

// newScript builds a script from the reply codes, the clock and parts:
// every script shares one list of codes and one clock.
func newScript(parts ...string) *redis.Script {
	return redis.NewScript(codesSrc + clockSrc + strings.Join(parts, ""))
}

// The scripts: every one the pool runs, here and nowhere else. Those that
// need the shared library have it prepended, so the health formula and the
// money helpers exist in one place. The hot resume path (resume.lua) has
// not: Lua makes every local function of lib.lua anew on every run.
var (
	syncScript      = newScript(libSrc, rankSrc, syncSrc)
	allocateScript  = newScript(libSrc, rankSrc, allocateSrc)
	resumeScript    = newScript(resumeSrc)
	settleScript    = newScript(libSrc, settleSrc)
	markScript      = newScript(libSrc, rankSrc, markSrc)
	releaseScript   = newScript(releaseSrc)
	maintainScript  = newScript(libSrc, rankSrc, maintainSrc)
	rebalanceScript = newScript(libSrc, rebalanceSrc)
	statusScript    = newScript(libSrc, statusSrc)
	turnScript      = newScript(libSrc, turnSrc)
	gcraScript      = newScript(gcraSrc)
	touchScript     = newScript(touchSrc)
	deadScript      = newScript(deadSrc)
	trimScript      = newScript(trimSrc)
	promoteScript   = newScript(promoteSrc)
	demoteScript    = newScript(demoteSrc)
	failuresScript  = newScript(libSrc, rankSrc, failuresSrc)
	observeScript   = newScript(libSrc, rankSrc, observeSrc)

	conversationAppendScript = newScript(conversationAppendSrc)
	conversationLoadScript   = newScript(conversationLoadSrc)
	adminScript              = newScript(libSrc, rankSrc, adminSrc)
	rankRefreshScript        = newScript(libSrc, rankSrc, rankRefreshSrc)

	all = []*redis.Script{syncScript, allocateScript, resumeScript, settleScript, markScript,
		releaseScript, maintainScript, rebalanceScript, statusScript, turnScript,
		gcraScript, touchScript, deadScript, trimScript, promoteScript, demoteScript,
		failuresScript, observeScript, conversationAppendScript, conversationLoadScript, adminScript,
		rankRefreshScript}
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

// RankInputs are what a script needs to score a subscription for the
// allocation ranking (rank.lua): the health weights and the idle age, as
// allocate is given them. The zero value passes none: the script then
// marks the subscription for scoring by the next allocate.
type RankInputs struct {
	Weights Weights
	IdleMS  int64
}

func (r RankInputs) args() []any {
	if r == (RankInputs{}) {
		return []any{""}
	}
	return append(r.Weights.args(), r.IdleMS)
}

func b01(b bool) string {
	if b {
		return "1"
	}
	return "0"
}
