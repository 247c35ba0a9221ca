package lua

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// The events stream's consumer-group operations (DESIGN §6): the Deliverer
// reads them through the pool.

// Subscriber is what a Pub/Sub wake-up hint needs of a client.
type Subscriber interface {
	Subscribe(ctx context.Context, channels ...string) *redis.PubSub
}

// CreateEventsGroup creates group on the events stream at id 0 with
// MKSTREAM, so events written before any consumer started are read too.
func CreateEventsGroup(ctx context.Context, c redis.Cmdable, k Keys, group string) error {
	if err := c.XGroupCreateMkStream(ctx, k.Events(), group, "0").Err(); err != nil {
		return fmt.Errorf("lua: create group %s: %w", group, err)
	}
	return nil
}

// ReadNewEvents hands up to count never-delivered entries to consumer,
// without blocking.
func ReadNewEvents(ctx context.Context, c redis.Cmdable, k Keys, group, consumer string, count int64) ([]redis.XMessage, error) {
	res, err := c.XReadGroup(ctx, &redis.XReadGroupArgs{
		Group: group, Consumer: consumer, Streams: []string{k.Events(), ">"},
		Count: count, Block: -1,
	}).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("lua: read events: %w", err)
	}
	var out []redis.XMessage
	for _, st := range res {
		out = append(out, st.Messages...)
	}
	return out, nil
}

// ClaimEvents is XAUTOCLAIM on the events stream: up to count entries
// pending longer than minIdle, from cursor; it returns them and the next
// cursor ("0-0": wrapped).
func ClaimEvents(ctx context.Context, c redis.Cmdable, k Keys, group, consumer string, minIdle time.Duration, cursor string, count int64) ([]redis.XMessage, string, error) {
	msgs, next, err := c.XAutoClaim(ctx, &redis.XAutoClaimArgs{
		Stream: k.Events(), Group: group, Consumer: consumer,
		MinIdle: minIdle, Start: cursor, Count: count,
	}).Result()
	if err != nil {
		return nil, cursor, fmt.Errorf("lua: claim events: %w", err)
	}
	return msgs, next, nil
}

// AckEvent acknowledges entry id.
func AckEvent(ctx context.Context, c redis.Cmdable, k Keys, group, id string) error {
	if err := c.XAck(ctx, k.Events(), group, id).Err(); err != nil {
		return fmt.Errorf("lua: ack event %s: %w", id, err)
	}
	return nil
}

// TouchEvent runs touch.lua: the entry's delivery count while consumer holds
// it (its idle time reset), else 0.
func TouchEvent(ctx context.Context, c Scripter, k Keys, group, consumer, id string) (int64, error) {
	return runInt(ctx, c, "touch event "+id, touchScript, []string{k.Events()}, group, consumer, id)
}

// DeadEvent runs dead.lua: the entry, with fields (pairs), moves to the dead
// stream (capped at deadCap, MAXLEN ~) as it is acknowledged; false when it
// was no longer pending.
func DeadEvent(ctx context.Context, c Scripter, k Keys, group, id string, deadCap int64, fields []any) (bool, error) {
	args := make([]any, 0, 3+len(fields))
	args = append(args, group, id, deadCap)
	args = append(args, fields...)
	n, err := runInt(ctx, c, "dead event "+id, deadScript, []string{k.Events(), k.EventsDead()}, args...)
	return n == 1, err
}

// TrimEvents runs trim.lua: acknowledged entries older than retention go.
func TrimEvents(ctx context.Context, c Scripter, k Keys, group string, retention time.Duration) (int64, error) {
	return runInt(ctx, c, "trim events", trimScript, []string{k.Events()}, group, retention.Milliseconds())
}

// SubscribeEvents subscribes to the events stream's wake-up hints.
func SubscribeEvents(ctx context.Context, c Subscriber, k Keys) *redis.PubSub {
	return c.Subscribe(ctx, k.Events())
}

// AddEvent writes one event to the outbox from Go, for the events no script
// decides (a config file that failed to reload), with the fields the
// scripts' emit writes and the same wake-up hint. data is a JSON object.
func AddEvent(ctx context.Context, c redis.Cmdable, k Keys, typ, severity, sub, message, data string) error {
	now, err := c.Time(ctx).Result()
	if err != nil {
		return fmt.Errorf("lua: add event: %w", err)
	}
	if err := c.XAdd(ctx, &redis.XAddArgs{Stream: k.Events(), Values: []any{"type", typ, "severity", severity,
		"subscriptionId", sub, "message", message, "data", data, "ts", now.UnixMilli()}}).Err(); err != nil {
		return fmt.Errorf("lua: add event: %w", err)
	}
	_ = c.Publish(ctx, k.Events(), typ).Err() // only a hint
	return nil
}
