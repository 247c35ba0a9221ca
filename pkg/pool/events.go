package pool

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/authpool/authpool/pkg/lua"
)

// DeadEventsCap bounds the dead stream (MAXLEN ~): it is for an operator to
// inspect, not an archive.
const DeadEventsCap = 10000

// Events is the pool's notification outbox, the authpool:{P}:events stream,
// as its consumer groups read it (DESIGN §6): read, claim, hold, acknowledge,
// dead-letter, trim. The scripts that change the pool write the events.
type Events struct {
	rdb  redis.UniversalClient
	keys lua.Keys
}

// Events is the outbox of p's pool.
func (p *Pool) Events() *Events { return &Events{rdb: p.rdb, keys: p.keys} }

// NewEvents is the outbox of the pool named poolName on rdb, for callers
// without a pool config.
func NewEvents(rdb redis.UniversalClient, poolName string) (*Events, error) {
	if !ValidID(poolName) {
		return nil, fmt.Errorf("pool: events: %w: %q", ErrInvalidPoolName, poolName)
	}
	return &Events{rdb: rdb, keys: lua.NewKeys(poolName)}, nil
}

// Stream is the stream's key, for log lines.
func (e *Events) Stream() string { return e.keys.Events() }

// CreateGroup creates group at id 0 with MKSTREAM, so events written before
// its first consumer ever started are delivered too (an event in the outbox
// is owed to the operator). An existing group is kept as it is.
func (e *Events) CreateGroup(ctx context.Context, group string) error {
	err := lua.CreateEventsGroup(ctx, e.rdb, e.keys, group)
	var re redis.Error
	if err != nil && !(errors.As(err, &re) && strings.HasPrefix(re.Error(), "BUSYGROUP ")) {
		return fmt.Errorf("pool: events: %w", err)
	}
	return nil
}

// ReadNew hands up to count never-delivered entries to consumer. It does
// not block: a blocking read would hold a pooled connection and could not
// be interrupted by shutdown.
func (e *Events) ReadNew(ctx context.Context, group, consumer string, count int) ([]redis.XMessage, error) {
	msgs, err := lua.ReadNewEvents(ctx, e.rdb, e.keys, group, consumer, int64(count))
	if err != nil {
		return nil, fmt.Errorf("pool: events: %w", err)
	}
	return msgs, nil
}

// Claim gives consumer up to count entries pending longer than minIdle in
// any consumer of group, scanning from cursor; it returns them and the
// cursor of the next call ("0-0": wrapped).
func (e *Events) Claim(ctx context.Context, group, consumer string, minIdle time.Duration, cursor string, count int) ([]redis.XMessage, string, error) {
	msgs, next, err := lua.ClaimEvents(ctx, e.rdb, e.keys, group, consumer, minIdle, cursor, int64(count))
	if err != nil {
		return nil, cursor, fmt.Errorf("pool: events: %w", err)
	}
	return msgs, next, nil
}

// Touch renews consumer's hold on entry id and returns its delivery count;
// 0 means the entry is no longer consumer's (acknowledged or claimed).
func (e *Events) Touch(ctx context.Context, group, consumer, id string) (int64, error) {
	n, err := lua.TouchEvent(ctx, e.rdb, e.keys, group, consumer, id)
	if err != nil {
		return 0, fmt.Errorf("pool: events: %w", err)
	}
	return n, nil
}

// Ack acknowledges a delivered entry.
func (e *Events) Ack(ctx context.Context, group, id string) error {
	if err := lua.AckEvent(ctx, e.rdb, e.keys, group, id); err != nil {
		return fmt.Errorf("pool: events: %w", err)
	}
	return nil
}

// MoveToDead stores entry id with fields (name, value pairs) in the dead
// stream and acknowledges it, atomically; moved is false when another
// consumer had already finished it.
func (e *Events) MoveToDead(ctx context.Context, group, id string, fields []any) (moved bool, err error) {
	moved, err = lua.DeadEvent(ctx, e.rdb, e.keys, group, id, DeadEventsCap, fields)
	if err != nil {
		return false, fmt.Errorf("pool: events: %w", err)
	}
	return moved, nil
}

// Trim removes the entries group has acknowledged that are older than
// retention, and returns how many went; entries never delivered to the
// group, or still pending, stay whatever their age.
func (e *Events) Trim(ctx context.Context, group string, retention time.Duration) (int64, error) {
	n, err := lua.TrimEvents(ctx, e.rdb, e.keys, group, retention)
	if err != nil {
		return 0, fmt.Errorf("pool: events: %w", err)
	}
	return n, nil
}

// Subscribe subscribes to the wake-up hints the scripts PUBLISH on the
// stream's name after each event. Close the PubSub when done.
func (e *Events) Subscribe(ctx context.Context) *redis.PubSub {
	return lua.SubscribeEvents(ctx, e.rdb, e.keys)
}
