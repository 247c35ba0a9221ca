package notify

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/authpool/authpool/pkg/pool"
)

// store is the Deliverer's view of the pool's events stream: one consumer of
// one group. The stream, its keys and its scripts are the pool's.
type store struct {
	events   *pool.Events
	group    string
	consumer string
}

// isNoGroup reports Redis's answer when the group (or the stream) is gone,
// e.g. after a restart without persistence.
func isNoGroup(err error) bool {
	var re redis.Error
	return errors.As(err, &re) && strings.HasPrefix(re.Error(), "NOGROUP ")
}

// createGroup creates the group (see pool.Events.CreateGroup); an existing
// group is kept as it is.
func (s *store) createGroup(ctx context.Context) error {
	if err := s.events.CreateGroup(ctx, s.group); err != nil {
		return fmt.Errorf("notify: create consumer group: %w", err)
	}
	return nil
}

// readNew hands up to count never-delivered entries to this consumer. It
// does not BLOCK: a blocking read would hold a pooled connection and could
// not be interrupted by shutdown; the Deliverer waits on the PUBLISH hint or
// its poll interval instead.
func (s *store) readNew(ctx context.Context, count int) ([]redis.XMessage, error) {
	msgs, err := s.events.ReadNew(ctx, s.group, s.consumer, count)
	if err != nil {
		return nil, fmt.Errorf("notify: read events: %w", err)
	}
	return msgs, nil
}

// claim takes over up to count entries pending longer than minIdle in any
// consumer (a crashed replica, or this one before a restart), scanning from
// cursor. It returns them and the cursor of the next call ("0-0": wrapped).
func (s *store) claim(ctx context.Context, minIdle time.Duration, cursor string, count int) ([]redis.XMessage, string, error) {
	msgs, next, err := s.events.Claim(ctx, s.group, s.consumer, minIdle, cursor, count)
	if err != nil {
		return nil, cursor, fmt.Errorf("notify: claim idle events: %w", err)
	}
	return msgs, next, nil
}

// touch renews this consumer's hold on entry id and returns its delivery
// count; 0 means the entry is no longer ours (acknowledged or claimed).
func (s *store) touch(ctx context.Context, id string) (int64, error) {
	n, err := s.events.Touch(ctx, s.group, s.consumer, id)
	if err != nil {
		return 0, fmt.Errorf("notify: renew hold on event %s: %w", id, err)
	}
	return n, nil
}

// ack acknowledges a delivered entry.
func (s *store) ack(ctx context.Context, id string) error {
	if err := s.events.Ack(ctx, s.group, id); err != nil {
		return fmt.Errorf("notify: acknowledge event %s: %w", id, err)
	}
	return nil
}

// moveToDead stores the entry with its error in the dead stream and
// acknowledges it, atomically. moved is false when another consumer had
// already finished the entry.
func (s *store) moveToDead(ctx context.Context, m redis.XMessage, cause error, attempts int) (moved bool, err error) {
	var fields []any
	for _, f := range entryFields(m) {
		fields = append(fields, f)
	}
	fields = append(fields, "eventId", m.ID, "error", cause.Error(), "attempts", attempts)
	moved, err = s.events.MoveToDead(ctx, s.group, m.ID, fields)
	if err != nil {
		return false, fmt.Errorf("notify: move event %s to the dead stream: %w", m.ID, err)
	}
	return moved, nil
}

// trim removes acknowledged entries older than retention (see
// pool.Events.Trim) and returns how many went.
func (s *store) trim(ctx context.Context, retention time.Duration) (int64, error) {
	n, err := s.events.Trim(ctx, s.group, retention)
	if err != nil {
		return 0, fmt.Errorf("notify: trim events: %w", err)
	}
	return n, nil
}
