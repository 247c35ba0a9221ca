package lua

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Reads that need no script: single commands on one key, typed here so
// that the pool never names a key or a command itself.

// Ping checks that Redis answers.
func Ping(ctx context.Context, c redis.Cmdable) error {
	if err := c.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("lua: ping: %w", err)
	}
	return nil
}

// Members reads the subscription SET (unsorted).
func Members(ctx context.Context, c redis.Cmdable, k Keys) ([]string, error) {
	ids, err := c.SMembers(ctx, k.Subs()).Result()
	if err != nil {
		return nil, fmt.Errorf("lua: subscription set: %w", err)
	}
	return ids, nil
}

// MemberCount is the size of the subscription SET (0 when it is missing).
func MemberCount(ctx context.Context, c redis.Cmdable, k Keys) (int64, error) {
	n, err := c.SCard(ctx, k.Subs()).Result()
	if err != nil {
		return 0, fmt.Errorf("lua: subscription set: %w", err)
	}
	return n, nil
}

// SessionFields reads a session HASH (empty when there is none).
func SessionFields(ctx context.Context, c redis.Cmdable, k Keys, sid string) (map[string]string, error) {
	h, err := c.HGetAll(ctx, k.Session(sid)).Result()
	if err != nil {
		return nil, fmt.Errorf("lua: session: %w", err)
	}
	return h, nil
}

// SessionActivity reads what a session's last activity is derived from, in
// one round trip: its client-set score on subscription sub ("active until",
// ms; 0 when sub is "" or it has no entry), its key's TTL (ms, < 0 none) and
// Redis' clock (ms).
func SessionActivity(ctx context.Context, c redis.Cmdable, k Keys, sid, sub string) (activeUntil, ttlMS, nowMS int64, err error) {
	var zs *redis.FloatCmd
	var pt *redis.DurationCmd
	var tm *redis.TimeCmd
	_, err = c.Pipelined(ctx, func(p redis.Pipeliner) error {
		if sub != "" {
			zs = p.ZScore(ctx, k.Clients(sub), sid)
		}
		pt = p.PTTL(ctx, k.Session(sid))
		tm = p.Time(ctx)
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return 0, 0, 0, fmt.Errorf("lua: session activity: %w", err)
	}
	if zs != nil && zs.Err() == nil {
		activeUntil = int64(zs.Val())
	}
	d := pt.Val()
	ttlMS = -1
	if d > 0 {
		ttlMS = d.Milliseconds()
	}
	return activeUntil, ttlMS, tm.Val().UnixMilli(), nil
}

// FallbackFields reads the fallback usage HASH (empty before any use).
func FallbackFields(ctx context.Context, c redis.Cmdable, k Keys) (map[string]string, error) {
	h, err := c.HGetAll(ctx, k.Fallback()).Result()
	if err != nil {
		return nil, fmt.Errorf("lua: fallback usage: %w", err)
	}
	return h, nil
}

// ClientsActiveBetween lists up to count sessions of subscription sub whose
// client-set score ("active until") lies strictly between afterMS and
// beforeMS, least recent first.
func ClientsActiveBetween(ctx context.Context, c redis.Cmdable, k Keys, sub string, afterMS, beforeMS, count int64) ([]string, error) {
	ids, err := c.ZRangeByScore(ctx, k.Clients(sub), &redis.ZRangeBy{
		Min: "(" + strconv.FormatInt(afterMS, 10), Max: "(" + strconv.FormatInt(beforeMS, 10), Count: count,
	}).Result()
	if err != nil {
		return nil, fmt.Errorf("lua: clients of %s: %w", sub, err)
	}
	return ids, nil
}

// LeaderInfoFields reads the leader:info HASH (empty when nobody leads).
func LeaderInfoFields(ctx context.Context, c redis.Cmdable, k Keys) (map[string]string, error) {
	h, err := c.HGetAll(ctx, k.LeaderInfo()).Result()
	if err != nil {
		return nil, fmt.Errorf("lua: leader info: %w", err)
	}
	return h, nil
}

// SessionMemory is MEMORY USAGE of a session HASH: the bytes Redis accounts
// for it (key, hash, TTL entry).
func SessionMemory(ctx context.Context, c redis.Cmdable, k Keys, sid string) (int64, error) {
	n, err := c.MemoryUsage(ctx, k.Session(sid)).Result()
	if err != nil {
		return 0, fmt.Errorf("lua: memory usage of session %s: %w", sid, err)
	}
	return n, nil
}

// InForceConfig reads the config version Redis holds (zero when none).
func InForceConfig(ctx context.Context, c redis.Cmdable, k Keys) (ConfigVersion, error) {
	h, err := c.HMGet(ctx, k.Config(), "hash", "loadedAt").Result()
	if err != nil {
		return ConfigVersion{}, fmt.Errorf("lua: config version: %w", err)
	}
	if h[0] == nil {
		return ConfigVersion{}, nil
	}
	return ConfigVersion{Hash: toStr(h[0]), LoadedAt: toInt64(h[1])}, nil
}

// ClientKeyUsage reads a named client key's usage hash, its hourly buckets
// and Redis' clock (the scripts' clock), in one round trip.
func ClientKeyUsage(ctx context.Context, c redis.Cmdable, k Keys, name string) (totals, hourly map[string]string, now time.Time, err error) {
	var th, hh *redis.MapStringStringCmd
	var tm *redis.TimeCmd
	_, err = c.Pipelined(ctx, func(p redis.Pipeliner) error {
		th = p.HGetAll(ctx, k.ClientKey(name))
		hh = p.HGetAll(ctx, k.ClientKeyHourly(name))
		tm = p.Time(ctx)
		return nil
	})
	if err != nil {
		return nil, nil, time.Time{}, fmt.Errorf("lua: client key usage: %w", err)
	}
	return th.Val(), hh.Val(), tm.Val(), nil
}
