package lua

import (
	"context"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"
)

// Promote runs promote.lua: a new fencing epoch, never below Redis' clock in
// ms, and the leader:info record, while the lock is held with value. value
// "" skips the lock check and holder "" the record (the in-process mode,
// which has no lock). ok is false when the lock is not held with value.
func Promote(ctx context.Context, c Scripter, k Keys, value, holder string) (epoch, sinceMS int64, ok bool, err error) {
	v, err := run(ctx, c, "promote", promoteScript, []string{k.Leader(), k.Epoch(), k.LeaderInfo()}, 3, value, holder)
	if err != nil {
		return 0, 0, false, err
	}
	if v.code() == CodeLockLost {
		return 0, 0, false, nil
	}
	epoch, err1 := strconv.ParseInt(v.str(1), 10, 64)
	sinceMS, err2 := strconv.ParseInt(v.str(2), 10, 64)
	if v.code() != CodeOK || err1 != nil || err2 != nil || epoch <= 0 {
		return 0, 0, false, fmt.Errorf("lua: promote: %w", ErrReply)
	}
	return epoch, sinceMS, true, nil
}

// Demote runs demote.lua: the leader:info record of holder's tenure at epoch
// is deleted, a newer leader's is left alone.
func Demote(ctx context.Context, c Scripter, k Keys, holder string, epoch int64) error {
	_, err := runInt(ctx, c, "demote", demoteScript, []string{k.LeaderInfo()}, holder, strconv.FormatInt(epoch, 10))
	return err
}

// PublishLeaderHint publishes holder on the leader channel: the lock is free.
func PublishLeaderHint(ctx context.Context, c redis.Cmdable, k Keys, holder string) error {
	if err := c.Publish(ctx, k.LeaderChannel(), holder).Err(); err != nil {
		return fmt.Errorf("lua: publish leader hint: %w", err)
	}
	return nil
}

// SubscribeLeaderHints subscribes to the leader channel.
func SubscribeLeaderHints(ctx context.Context, c Subscriber, k Keys) *redis.PubSub {
	return c.Subscribe(ctx, k.LeaderChannel())
}
