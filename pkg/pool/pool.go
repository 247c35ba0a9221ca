// Package pool is the domain of authpool: the pool of Claude subscriptions kept
// in Redis and changed only through the atomic scripts of pkg/lua, so that any
// number of gateway replicas can allocate at once without over-filling a
// subscription or counting a request twice.
package pool

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/authpool/authpool/internal/ids"
	"github.com/authpool/authpool/pkg/lua"
)

// Priority is a request's admission class.
type Priority string

// The priorities. Each admits new sessions up to its own weekly fraction:
// low = threshold − 0.10, normal = threshold, high = min(0.95, threshold + 0.10)
// but never under normal's (a threshold above 0.95 admits high as normal).
const (
	PriorityLow    Priority = "low"
	PriorityNormal Priority = "normal"
	PriorityHigh   Priority = "high"
)

// ParsePriority accepts low, normal, high and "" (normal).
func ParsePriority(s string) (Priority, error) {
	switch s {
	case "", "normal":
		return PriorityNormal, nil
	case "low":
		return PriorityLow, nil
	case "high":
		return PriorityHigh, nil
	}
	return "", ErrInvalidPriority
}

// ValidSessionID reports whether s is an acceptable session id.
func ValidSessionID(s string) bool { return ids.ValidSession(s) }

// ValidID reports whether s may become part of a Redis key: a session,
// request, turn or subscription id, a key id, a rate-limit subject or a pool
// name (^[A-Za-z0-9_-]{1,128}$).
func ValidID(s string) bool { return lua.ValidID(s) }

// Options tune the pool beyond the config file. The zero value means the
// defaults below.
type Options struct {
	// Weights of the health score. Default lua.DefaultWeights.
	Weights *lua.Weights
	// ResumeLimit is the weekly fraction under which a bound session stays on
	// its subscription. Default 0.98.
	ResumeLimit float64
	// Cooldown is how long a subscription rests after repeated failures.
	// Default 5 minutes.
	Cooldown time.Duration
	// FailureThreshold is how many crashes or timeouts in a row, counted in
	// Redis across every replica, put a subscription in cooldown (reason
	// "failures"). Default 3.
	FailureThreshold int
	// MarkerTTL keeps settlement markers so a retried settle counts once.
	// Default 24 h.
	MarkerTTL time.Duration
	// UsageRetention is how long usage stream entries are kept. Default 7 days.
	UsageRetention time.Duration
	// TurnLease is how long a turn in flight stays active without a
	// Heartbeat: the most a replica that died mid-turn pins its session.
	// Default idleAfterSeconds (the gateway refreshes it every third). A
	// lease longer than idleAfterSeconds also outlasts the turn's end: an
	// end never moves a session's activity back.
	TurnLease time.Duration
}

// Defaults of Options.
const (
	DefaultResumeLimit      = 0.98
	DefaultCooldown         = 5 * time.Minute
	DefaultFailureThreshold = 3
	DefaultMarkerTTL        = 24 * time.Hour
	DefaultUsageRetention   = 7 * 24 * time.Hour
)

// Pool is the pool of one config over one Redis. It is safe for concurrent
// use; several Pool values (replicas) may share one Redis.
type Pool struct {
	rdb       redis.UniversalClient
	st        atomic.Pointer[state] // the config in force, swapped whole by Reload
	name      string
	keys      lua.Keys
	weights   lua.Weights
	resume    float64
	cooldown  time.Duration
	threshold int // FailureThreshold
	markerTTL time.Duration
	retention time.Duration
	turnLease time.Duration
	behind    atomic.Bool // Redis holds a newer config version than this replica's
	subs      atomic.Pointer[lua.SubSet]
	reload    sync.Mutex
	resync    sync.Mutex // one re-sync after a data loss at a time
	hints     *hints
}

// New returns the pool of cfg (already validated) over rdb. Call Sync before
// serving.
func New(rdb redis.UniversalClient, cfg *Config, opts Options) *Pool {
	cfg = withDefaults(cfg)
	p := &Pool{rdb: rdb, name: poolName(cfg), keys: lua.NewKeys(poolName(cfg)),
		weights: lua.DefaultWeights, resume: DefaultResumeLimit, cooldown: DefaultCooldown,
		threshold: DefaultFailureThreshold,
		markerTTL: DefaultMarkerTTL, retention: DefaultUsageRetention}
	if opts.Weights != nil {
		p.weights = *opts.Weights
	}
	if opts.ResumeLimit > 0 {
		p.resume = opts.ResumeLimit
	}
	if opts.Cooldown > 0 {
		p.cooldown = opts.Cooldown
	}
	if opts.FailureThreshold > 0 {
		p.threshold = opts.FailureThreshold
	}
	if opts.MarkerTTL > 0 {
		p.markerTTL = opts.MarkerTTL
	}
	if opts.UsageRetention > 0 {
		p.retention = opts.UsageRetention
	}
	p.turnLease = time.Duration(cfg.IdleAfterSeconds) * time.Second
	if opts.TurnLease > 0 {
		p.turnLease = opts.TurnLease
	}
	st := newState(cfg, Version{})
	p.st.Store(st)
	ids := st.ids()
	p.subs.Store(p.keys.SubSet(ids))
	p.hints = newHints(p.keys, ids)
	return p
}

// withDefaults returns a copy of cfg whose zero numbers are the defaults, so a
// Config built in code (tests, embedding) behaves like one loaded from a file.
func withDefaults(in *Config) *Config {
	c := *in
	c.applyDefaults()
	return &c
}

func poolName(cfg *Config) string {
	if cfg.Pool == "" {
		return DefaultPoolName
	}
	return cfg.Pool
}

// TurnLease is how long a turn stays in flight without a Heartbeat; call
// Heartbeat more often than that (a third of it) while a turn runs.
func (p *Pool) TurnLease() time.Duration { return p.turnLease }

// Config returns the pool's configuration in force (Reload swaps it).
func (p *Pool) Config() *Config { return p.conf().cfg }

func (p *Pool) conf() *state { return p.st.Load() }

// Subscription returns the configured subscription id.
func (p *Pool) Subscription(id string) (SubscriptionConfig, bool) {
	s, ok := p.conf().byID[id]
	return s, ok
}

// Sync loads the scripts and writes the configured subscriptions' static
// fields into Redis, marking subscriptions no longer configured as removed,
// unless Redis holds a newer config version than this one: then it writes
// nothing, and the pool is Behind until a sync of a version at least as new.
// It is idempotent: every replica runs it at start-up and on a reload.
func (p *Pool) Sync(ctx context.Context) error {
	if err := lua.Load(ctx, p.rdb); err != nil {
		return fmt.Errorf("pool: sync: %w", err)
	}
	st := p.conf()
	subs := make([]lua.SyncSub, 0, len(st.cfg.Subscriptions))
	for _, s := range st.cfg.Subscriptions {
		budget := s.WeeklyBudget
		subs = append(subs, lua.SyncSub{ID: s.ID, Email: s.Email, Type: s.Type, ConfigDir: s.ConfigDir,
			WeeklyBudget: strconv.FormatFloat(budget, 'f', 6, 64), MaxClients: st.cfg.MaxClients(s)})
	}
	for attempt := 0; ; attempt++ {
		existing, err := p.members(ctx)
		if err != nil {
			return fmt.Errorf("pool: sync: %w", err)
		}
		_, err = lua.Sync(ctx, p.rdb, p.keys, st.cfg.version.lua(), subs, existing)
		if errors.Is(err, lua.ErrStaleSubscriptions) && attempt < 5 {
			continue
		}
		if errors.Is(err, lua.ErrOlderConfig) {
			// Not a failure: a newer replica's list stands; this one serves
			// what it knows (allocate's known mask) and says it is behind.
			p.behind.Store(true)
			return p.refreshSubs(ctx)
		}
		if err != nil {
			return fmt.Errorf("pool: sync: %w", err)
		}
		p.behind.Store(false)
		if err := p.refreshSubs(ctx); err != nil {
			return err
		}
		return p.refreshRank(ctx)
	}
}

// rankChunk is how many subscriptions one rank_refresh.lua call scores:
// well under a millisecond of Redis time.
const rankChunk = 20

// refreshRank scores every subscription for the allocation ranking after a
// sync marked them for scoring, a few per call, so that the first new
// binding after a sync does not score the whole pool in one long call.
func (p *Pool) refreshRank(ctx context.Context) error {
	ids := p.subs.Load().IDs
	for i := 0; i < len(ids); i += rankChunk {
		chunk := p.keys.SubSet(ids[i:min(i+rankChunk, len(ids))])
		if _, err := lua.RankRefresh(ctx, p.rdb, p.keys, chunk, p.rank()); err != nil {
			return fmt.Errorf("pool: sync: ranking: %w", err)
		}
	}
	return nil
}

func (p *Pool) members(ctx context.Context) ([]string, error) {
	ids, err := lua.Members(ctx, p.rdb, p.keys)
	if err != nil {
		return nil, err
	}
	for _, id := range ids {
		if !lua.ValidID(id) {
			return nil, fmt.Errorf("pool: subscription set holds an invalid id: %w", ErrUnknownSubscription)
		}
	}
	slices.Sort(ids)
	return ids, nil
}

// refreshSubs re-reads the subscription SET (another replica may have synced
// a different config); the scripts detect a stale list by its size.
func (p *Pool) refreshSubs(ctx context.Context) error {
	p.reload.Lock()
	defer p.reload.Unlock()
	ids, err := p.members(ctx)
	if err != nil {
		return err
	}
	p.subs.Store(p.keys.SubSet(ids))
	return nil
}

// withSubs runs fn with the current subscription list, reloading it when a
// script reports it stale. An empty list means Redis lost the pool (a
// restart without persistence, a flush): the config is written again, so
// replicas carry on without a restart of their own. (Only then: a replica
// must not re-sync a list that merely differs, or an old config would mark
// a newer one's subscriptions removed during a rollout.)
func (p *Pool) withSubs(ctx context.Context, fn func(*lua.SubSet) error) error {
	for attempt := 0; ; attempt++ {
		err := fn(p.subs.Load())
		if !errors.Is(err, lua.ErrStaleSubscriptions) || attempt >= 3 {
			return err
		}
		if rerr := p.refreshSubs(ctx); rerr != nil {
			return rerr
		}
		if len(p.subs.Load().IDs) == 0 && len(p.Config().Subscriptions) > 0 {
			if rerr := p.resyncEmpty(ctx); rerr != nil {
				return rerr
			}
		}
	}
}

// resyncEmpty writes the config again when the subscription set is still
// empty once this caller holds the lock: of the requests that found it
// empty at once, one syncs and the others reuse its work.
func (p *Pool) resyncEmpty(ctx context.Context) error {
	p.resync.Lock()
	defer p.resync.Unlock()
	if err := p.refreshSubs(ctx); err != nil {
		return err
	}
	if len(p.subs.Load().IDs) > 0 {
		return nil
	}
	return p.Sync(ctx)
}

func (p *Pool) admit(pr Priority) float64 {
	t := p.Config().WeeklyBudgetThreshold
	switch pr {
	case PriorityLow:
		return t - 0.10
	case PriorityHigh:
		// The 0.95 cap keeps headroom under the resume limit; it must not
		// put high below normal when the threshold itself is above it.
		return math.Max(t, math.Min(0.95, t+0.10))
	}
	return t
}

func (p *Pool) staleMS() int64 { return int64(p.Config().StaleAfterSeconds) * 1000 }
func (p *Pool) idleMS() int64  { return int64(p.Config().IdleAfterSeconds) * 1000 }

// rank is what the scripts that refresh the allocation ranking need: the
// weights and idle age allocate scores with.
func (p *Pool) rank() lua.RankInputs { return lua.RankInputs{Weights: p.weights, IdleMS: p.idleMS()} }
