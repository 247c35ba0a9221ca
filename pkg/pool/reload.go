package pool

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/authpool/authpool/pkg/lua"
)

// Version identifies a config: the hash of what was loaded and when. The
// newest config wins across replicas (DESIGN §10): Redis keeps the version
// in force (authpool:{P}:config) and a sync of an older one writes nothing.
type Version struct {
	// Hash is the hex SHA-256 of the file's bytes and the overrides.
	Hash string
	// LoadedAt is when the file was read.
	LoadedAt time.Time
}

// Short is the hash's first 12 characters, for log lines.
func (v Version) Short() string { return v.Hash[:min(12, len(v.Hash))] }

// Version is the config's version (set by LoadConfig, or by New for a
// Config built in code).
func (c *Config) Version() Version { return c.version }

func (v Version) lua() lua.ConfigVersion {
	return lua.ConfigVersion{Hash: v.Hash, LoadedAt: v.LoadedAt.UnixMilli()}
}

// ErrPoolNameChanged: a reloaded config names another pool; every key would
// move, so it needs a restart.
var ErrPoolNameChanged = errors.New("pool: the pool name cannot change without a restart")

// state is a config in force and what is derived from it, swapped whole so
// that a request sees one config from start to end.
type state struct {
	cfg        *Config
	byID       map[string]SubscriptionConfig
	thresholds []string
	approachAt float64
}

func newState(cfg *Config, v Version) *state {
	if cfg.version.Hash == "" {
		cfg.version = v
	}
	if cfg.version.Hash == "" {
		// Built in code: the version is the content, as of now.
		b, _ := json.Marshal(cfg)
		sum := sha256.Sum256(b)
		cfg.version = Version{Hash: hex.EncodeToString(sum[:]), LoadedAt: time.Now()}
	}
	st := &state{cfg: cfg, byID: map[string]SubscriptionConfig{}}
	for _, s := range cfg.Subscriptions {
		st.byID[s.ID] = s
	}
	ths := cfg.UsageThresholds()
	for _, t := range ths {
		st.thresholds = append(st.thresholds, strconv.FormatFloat(t, 'f', -1, 64))
	}
	st.approachAt = cfg.WeeklyBudgetThreshold
	if len(ths) > 0 {
		st.approachAt = ths[0]
	}
	return st
}

func (st *state) ids() []string {
	ids := make([]string, 0, len(st.cfg.Subscriptions))
	for _, s := range st.cfg.Subscriptions {
		ids = append(ids, s.ID)
	}
	slices.Sort(ids)
	return ids
}

// known is allocate.lua's mask of subs: '1' for a subscription of this
// replica's config, '0' for one only a newer config has.
func (st *state) known(subs *lua.SubSet) string {
	b := make([]byte, len(subs.IDs))
	all := true
	for i, id := range subs.IDs {
		b[i] = '0'
		if _, ok := st.byID[id]; ok {
			b[i] = '1'
		} else {
			all = false
		}
	}
	if all {
		return ""
	}
	return string(b)
}

// ReloadResult says what a Reload changed.
type ReloadResult struct {
	// Added and Removed are the subscription ids the new config added and
	// dropped, as this replica sees it.
	Added, Removed []string
	// Behind: Redis holds a newer config than this one; the pool took it
	// for what this replica serves, but did not write the subscription list.
	Behind bool
}

// Reload makes cfg (validated, of the same pool name) the pool's config and
// syncs it to Redis. The swap is atomic: a request in flight keeps the
// config it started with. The caller builds the backends of added
// subscriptions first, so that none is allocated before it can run.
func (p *Pool) Reload(ctx context.Context, cfg *Config) (ReloadResult, error) {
	cfg = withDefaults(cfg)
	if poolName(cfg) != p.name {
		return ReloadResult{}, ErrPoolNameChanged
	}
	old := p.conf()
	st := newState(cfg, Version{})
	var res ReloadResult
	for _, id := range st.ids() {
		if _, ok := old.byID[id]; !ok {
			res.Added = append(res.Added, id)
		}
	}
	for _, id := range old.ids() {
		if _, ok := st.byID[id]; !ok {
			res.Removed = append(res.Removed, id)
		}
	}
	p.st.Store(st)
	p.hints.reset(st.ids())
	err := p.Sync(ctx)
	res.Behind = p.Behind()
	return res, err
}

// Behind reports whether Redis held a newer config version than this
// replica's at its last sync: then the replica allocates only among the
// subscriptions it knows and leaves the list to the newer config.
func (p *Pool) Behind() bool { return p.behind.Load() }

// InForce reads the config version Redis holds (zero before any sync).
func (p *Pool) InForce(ctx context.Context) (Version, error) {
	v, err := lua.InForceConfig(ctx, p.rdb, p.keys)
	if err != nil {
		return Version{}, fmt.Errorf("pool: %w", err)
	}
	if v.Hash == "" {
		return Version{}, nil
	}
	return Version{Hash: v.Hash, LoadedAt: time.UnixMilli(v.LoadedAt)}, nil
}

// ReloadFailed writes one config_reload_failed event: the file at source
// changed but did not validate, and the running config stays. problems are
// "path: message" lines (never secrets: the config holds none, token
// variables are named, not read).
func (p *Pool) ReloadFailed(ctx context.Context, source string, problems []string) error {
	data, err := json.Marshal(map[string]any{"source": source, "problems": problems, "configHash": p.conf().cfg.version.Hash})
	if err != nil {
		return fmt.Errorf("pool: reload failed event: %w", err)
	}
	msg := fmt.Sprintf("Config reload failed: %d problem(s) in %s; the running config stays", len(problems), source)
	if err := lua.AddEvent(ctx, p.rdb, p.keys, "config_reload_failed", "warning", "", msg, string(data)); err != nil {
		return fmt.Errorf("pool: %w", err)
	}
	return nil
}

// CheckBehind compares this replica's config version with the one in force
// in Redis and returns whether the replica is behind (a newer version is in
// force). On a read error it returns the last known answer.
func (p *Pool) CheckBehind(ctx context.Context) bool {
	v, err := p.InForce(ctx)
	if err != nil {
		return p.Behind()
	}
	mine := p.conf().cfg.version
	at, mineAt := v.LoadedAt.UnixMilli(), mine.LoadedAt.UnixMilli() // Redis keeps ms
	behind := v.Hash != "" && v.Hash != mine.Hash && (at > mineAt || at == mineAt && v.Hash > mine.Hash)
	p.behind.Store(behind)
	return behind
}
