package rebalance

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/authpool/authpool/pkg/lua"
)

var (
	//go:embed promote.lua
	promoteSrc    string
	promoteScript = redis.NewScript(promoteSrc)

	//go:embed demote.lua
	demoteSrc    string
	demoteScript = redis.NewScript(demoteSrc)
)

// ErrReply reports a script reply of an unexpected shape.
var ErrReply = errors.New("rebalance: unexpected script reply")

// promote runs promote.lua: epoch 0 means the lock is no longer held with
// value. A granted epoch is never below Redis' clock in ms, so it stays above
// the epochs granted before Redis lost its data.
func promote(ctx context.Context, c redis.Scripter, k lua.Keys, value, holder string) (int64, time.Time, error) {
	v, err := promoteScript.Run(ctx, c, []string{k.Leader(), k.Epoch(), k.LeaderInfo()}, value, holder).Slice()
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("rebalance: promote: %w", err)
	}
	if len(v) != 2 {
		return 0, time.Time{}, fmt.Errorf("rebalance: promote: %w", ErrReply)
	}
	es, ok := v[0].(string)
	since, ok2 := v[1].(string)
	epoch, err1 := strconv.ParseInt(es, 10, 64)
	ms, err2 := strconv.ParseInt(since, 10, 64)
	if !ok || !ok2 || err1 != nil || err2 != nil {
		return 0, time.Time{}, fmt.Errorf("rebalance: promote: %w", ErrReply)
	}
	return epoch, time.UnixMilli(ms), nil
}

// demote runs demote.lua.
func demote(ctx context.Context, c redis.Scripter, k lua.Keys, holder string, epoch int64) error {
	err := demoteScript.Run(ctx, c, []string{k.LeaderInfo()}, holder, strconv.FormatInt(epoch, 10)).Err()
	if err != nil {
		return fmt.Errorf("rebalance: demote: %w", err)
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

// ReadLeaderInfo reads the leader:info record of the pool keyed by k; ok is
// false when no replica leads (none took the lead yet, or the last one
// resigned).
func ReadLeaderInfo(ctx context.Context, c redis.Cmdable, k lua.Keys) (info LeaderInfo, ok bool, err error) {
	h, err := c.HGetAll(ctx, k.LeaderInfo()).Result()
	if err != nil {
		return LeaderInfo{}, false, fmt.Errorf("rebalance: read leader info: %w", err)
	}
	if h["holder"] == "" {
		return LeaderInfo{}, false, nil
	}
	epoch, err1 := strconv.ParseInt(h["epoch"], 10, 64)
	since, err2 := strconv.ParseInt(h["since"], 10, 64)
	if err1 != nil || err2 != nil {
		return LeaderInfo{}, false, fmt.Errorf("rebalance: read leader info: malformed record: %w", ErrReply)
	}
	return LeaderInfo{Holder: h["holder"], Epoch: epoch, Since: time.UnixMilli(since)}, true, nil
}
