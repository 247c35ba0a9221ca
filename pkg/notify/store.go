package notify

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

var (
	//go:embed touch.lua
	touchSrc string
	//go:embed dead.lua
	deadSrc string
	//go:embed trim.lua
	trimSrc string

	touchScript = redis.NewScript(touchSrc)
	deadScript  = redis.NewScript(deadSrc)
	trimScript  = redis.NewScript(trimSrc)
)

// deadStreamCap bounds the dead stream (MAXLEN ~): it is for an operator to
// inspect, not an archive.
const deadStreamCap = 10000

// store is the Deliverer's view of Redis: one consumer of one group on the
// events stream.
type store struct {
	rdb      redis.UniversalClient
	stream   string
	dead     string
	group    string
	consumer string
}

// isNoGroup reports Redis's answer when the group (or the stream) is gone,
// e.g. after a restart without persistence.
func isNoGroup(err error) bool { return redisErrorIs(err, "NOGROUP") }

// redisErrorIs reports whether err wraps a Redis error reply of that kind.
func redisErrorIs(err error, kind string) bool {
	var re redis.Error
	return errors.As(err, &re) && strings.HasPrefix(re.Error(), kind+" ")
}

// createGroup creates the group at id 0 with MKSTREAM, so events written
// before the first Deliverer ever started are delivered too (the stream is an
// outbox: an event in it is owed to the operator). An existing group is kept
// as it is.
func (s *store) createGroup(ctx context.Context) error {
	err := s.rdb.XGroupCreateMkStream(ctx, s.stream, s.group, "0").Err()
	if err != nil && !redisErrorIs(err, "BUSYGROUP") {
		return fmt.Errorf("notify: create consumer group: %w", err)
	}
	return nil
}

// readNew hands up to count never-delivered entries to this consumer. It
// does not BLOCK: a blocking read would hold a pooled connection and could
// not be interrupted by shutdown; the Deliverer waits on the PUBLISH hint or
// its poll interval instead.
func (s *store) readNew(ctx context.Context, count int) ([]redis.XMessage, error) {
	res, err := s.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{
		Group: s.group, Consumer: s.consumer, Streams: []string{s.stream, ">"},
		Count: int64(count), Block: -1,
	}).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("notify: read events: %w", err)
	}
	var out []redis.XMessage
	for _, st := range res {
		out = append(out, st.Messages...)
	}
	return out, nil
}

// claim takes over up to count entries pending longer than minIdle in any
// consumer (a crashed replica, or this one before a restart), scanning from
// cursor. It returns them and the cursor of the next call ("0-0": wrapped).
func (s *store) claim(ctx context.Context, minIdle time.Duration, cursor string, count int) ([]redis.XMessage, string, error) {
	msgs, next, err := s.rdb.XAutoClaim(ctx, &redis.XAutoClaimArgs{
		Stream: s.stream, Group: s.group, Consumer: s.consumer,
		MinIdle: minIdle, Start: cursor, Count: int64(count),
	}).Result()
	if err != nil {
		return nil, cursor, fmt.Errorf("notify: claim idle events: %w", err)
	}
	return msgs, next, nil
}

// touch renews this consumer's hold on entry id and returns its delivery
// count; 0 means the entry is no longer ours (acknowledged or claimed).
func (s *store) touch(ctx context.Context, id string) (int64, error) {
	n, err := touchScript.Run(ctx, s.rdb, []string{s.stream}, s.group, s.consumer, id).Int64()
	if err != nil {
		return 0, fmt.Errorf("notify: renew hold on event %s: %w", id, err)
	}
	return n, nil
}

// ack acknowledges a delivered entry.
func (s *store) ack(ctx context.Context, id string) error {
	if err := s.rdb.XAck(ctx, s.stream, s.group, id).Err(); err != nil {
		return fmt.Errorf("notify: acknowledge event %s: %w", id, err)
	}
	return nil
}

// moveToDead stores the entry with its error in the dead stream and
// acknowledges it, atomically. moved is false when another consumer had
// already finished the entry.
func (s *store) moveToDead(ctx context.Context, m redis.XMessage, cause error, attempts int) (moved bool, err error) {
	args := []any{s.group, m.ID, deadStreamCap}
	for _, f := range entryFields(m) {
		args = append(args, f)
	}
	args = append(args, "eventId", m.ID, "error", cause.Error(), "attempts", attempts)
	n, err := deadScript.Run(ctx, s.rdb, []string{s.stream, s.dead}, args...).Int64()
	if err != nil {
		return false, fmt.Errorf("notify: move event %s to the dead stream: %w", m.ID, err)
	}
	return n == 1, nil
}

// trim removes acknowledged entries older than retention (see trim.lua) and
// returns how many went.
func (s *store) trim(ctx context.Context, retention time.Duration) (int64, error) {
	n, err := trimScript.Run(ctx, s.rdb, []string{s.stream}, s.group, retention.Milliseconds()).Int64()
	if err != nil {
		return 0, fmt.Errorf("notify: trim events: %w", err)
	}
	return n, nil
}
