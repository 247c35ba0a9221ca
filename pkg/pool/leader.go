package pool

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/authpool/authpool/pkg/lua"
)

// Leader is the rebalancer leadership's state in Redis (DESIGN §6): the
// fencing epoch, the leader:info record and the hint channel, plus the name
// of the lock. The lock itself is redsync's, on a client of the elector's
// own; everything else goes through here.
type Leader struct {
	rdb  redis.UniversalClient
	keys lua.Keys
}

// Leader is the leadership state of p's pool.
func (p *Pool) Leader() *Leader { return &Leader{rdb: p.rdb, keys: p.keys} }

// NewLeader is the leadership state of the pool named poolName on rdb, for
// callers without a pool config (tests, probes).
func NewLeader(rdb redis.UniversalClient, poolName string) (*Leader, error) {
	if !ValidID(poolName) {
		return nil, fmt.Errorf("pool: leader: %w: %q", ErrInvalidPoolName, poolName)
	}
	return &Leader{rdb: rdb, keys: lua.NewKeys(poolName)}, nil
}

// LockName is the key of the redsync lock, authpool:{P}:leader.
func (l *Leader) LockName() string { return l.keys.Leader() }

// Promote makes the holder of the lock (set with lockValue) the leader: a
// new fencing epoch, never below Redis' clock in ms so that it stays above
// the epochs granted before a loss of Redis' data, and the leader:info
// record — only while the lock is still held with lockValue. Epoch 0 means
// it is not (nothing changed).
func (l *Leader) Promote(ctx context.Context, lockValue, holder string) (epoch int64, since time.Time, err error) {
	if lockValue == "" {
		return 0, time.Time{}, fmt.Errorf("pool: promote: %w: no lock value", ErrInvalidLeader)
	}
	e, ms, ok, err := lua.Promote(ctx, l.rdb, l.keys, lockValue, holder)
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("pool: promote: %w", err)
	}
	if !ok {
		return 0, time.Time{}, nil
	}
	return e, time.UnixMilli(ms), nil
}

// Demote removes the leader:info record of holder's tenure at epoch, so
// operators never read a holder that no longer leads; a newer leader's
// record is left alone.
func (l *Leader) Demote(ctx context.Context, holder string, epoch int64) error {
	if err := lua.Demote(ctx, l.rdb, l.keys, holder, epoch); err != nil {
		return fmt.Errorf("pool: demote: %w", err)
	}
	return nil
}

// LeaderInfo is the authpool:{P}:leader:info record of the current leader.
type LeaderInfo struct {
	// Holder is the leading replica's id.
	Holder string `json:"holder"`
	// Epoch is its fencing epoch.
	Epoch int64 `json:"epoch"`
	// Since is when it took the lead (Redis time).
	Since time.Time `json:"since"`
}

// Info reads the leader:info record; ok is false when no replica leads
// (none took the lead yet, or the last one resigned).
func (l *Leader) Info(ctx context.Context) (info LeaderInfo, ok bool, err error) {
	h, err := lua.LeaderInfoFields(ctx, l.rdb, l.keys)
	if err != nil {
		return LeaderInfo{}, false, fmt.Errorf("pool: read leader info: %w", err)
	}
	if h["holder"] == "" {
		return LeaderInfo{}, false, nil
	}
	epoch, err1 := strconv.ParseInt(h["epoch"], 10, 64)
	since, err2 := strconv.ParseInt(h["since"], 10, 64)
	if err1 != nil || err2 != nil {
		return LeaderInfo{}, false, fmt.Errorf("pool: read leader info: malformed record: %w", lua.ErrReply)
	}
	return LeaderInfo{Holder: h["holder"], Epoch: epoch, Since: time.UnixMilli(since)}, true, nil
}

// Hint tells the standbys that holder gave the lock up: they try at once
// instead of at their next timed attempt. It is only a hint (Pub/Sub).
func (l *Leader) Hint(ctx context.Context, holder string) error {
	if err := lua.PublishLeaderHint(ctx, l.rdb, l.keys, holder); err != nil {
		return fmt.Errorf("pool: leader hint: %w", err)
	}
	return nil
}

// Hints subscribes to the hints; each message's payload is the holder that
// gave the lock up. Close the PubSub when done.
func (l *Leader) Hints(ctx context.Context) *redis.PubSub {
	return lua.SubscribeLeaderHints(ctx, l.rdb, l.keys)
}

// NextEpoch takes a new fencing epoch without an election, for the one
// process on its Redis (the in-process mode of cmd/api). It runs the
// elector's promotion, so its epochs follow the same rule: never below
// Redis' clock in ms, so they keep growing across a loss of Redis' data.
func (p *Pool) NextEpoch(ctx context.Context) (int64, error) {
	e, _, _, err := lua.Promote(ctx, p.rdb, p.keys, "", "")
	if err != nil {
		return 0, fmt.Errorf("pool: next epoch: %w", err)
	}
	return e, nil
}
