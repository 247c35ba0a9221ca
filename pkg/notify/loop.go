package notify

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/authpool/authpool/internal/backoff"
)

// run is the delivery loop: one goroutine reads, claims, delivers and trims
// in turn, so an event is handled by one goroutine of one replica at a time.
func (d *Deliverer) run(ctx context.Context) {
	var (
		ready     bool // the group exists
		failures  int  // consecutive Redis errors
		cursor    = "0-0"
		nextClaim time.Time // zero: claim at once (events of a crashed predecessor)
		nextTrim  time.Time // zero: trim at once, so replicas restarted often still trim
	)
	fail := func(msg string, err error) {
		if ctx.Err() != nil {
			return // shutting down: the error is ours, not Redis's
		}
		failures++
		d.opts.Logger.Warn(ctx, msg, "error", err, "consumer", d.opts.Consumer, "failures", failures)
		if isNoGroup(err) {
			ready = false
		}
		backoff.Sleep(ctx, backoff.Next(failures, redisBackoffMin, redisBackoffMax), nil)
	}
	for ctx.Err() == nil {
		if !ready {
			if err := d.store.createGroup(ctx); err != nil {
				fail("notify: cannot create the consumer group; retrying", err)
				continue
			}
			ready = true
		}
		if !time.Now().Before(nextClaim) {
			msgs, next, err := d.store.claim(ctx, d.opts.ClaimIdle, cursor, d.opts.BatchSize)
			if err != nil {
				fail("notify: cannot claim idle events; retrying", err)
				continue
			}
			cursor = next
			if cursor == "0-0" || len(msgs) == 0 {
				nextClaim = time.Now().Add(d.opts.ClaimInterval)
			}
			d.handleAll(ctx, msgs)
		}
		if !time.Now().Before(nextTrim) {
			// Trimming is housekeeping: a failure waits for the next round
			// rather than holding up delivery.
			if _, err := d.store.trim(ctx, d.opts.Retention); err != nil && ctx.Err() == nil {
				d.opts.Logger.Warn(ctx, "notify: cannot trim the events stream", "error", err)
			}
			nextTrim = time.Now().Add(d.opts.TrimInterval)
		}
		msgs, err := d.store.readNew(ctx, d.opts.BatchSize)
		if err != nil {
			fail("notify: cannot read events; retrying", err)
			continue
		}
		failures = 0
		d.handleAll(ctx, msgs)
		if len(msgs) < d.opts.BatchSize {
			wait := min(d.opts.PollInterval, time.Until(nextClaim))
			backoff.Sleep(ctx, wait, d.wake)
		}
	}
}

func (d *Deliverer) handleAll(ctx context.Context, msgs []redis.XMessage) {
	for _, m := range msgs {
		if ctx.Err() != nil {
			return // the rest stay pending for whoever comes next
		}
		d.handle(ctx, m)
	}
}

// errLeaseLost cancels a delivery whose event another consumer took over.
var errLeaseLost = errors.New("notify: event claimed by another consumer")

// handle delivers one entry and then acknowledges it or moves it to the dead
// stream; if ctx ends or the hold on it is lost first, it leaves the entry
// pending.
func (d *Deliverer) handle(ctx context.Context, m redis.XMessage) {
	count, err := d.store.touch(ctx, m.ID)
	if err != nil {
		if ctx.Err() == nil {
			d.opts.Logger.Warn(ctx, "notify: cannot take the event; it stays pending", "eventId", m.ID, "error", err)
		}
		return
	}
	if count == 0 {
		return // acknowledged or taken over since it was read
	}
	// Once the outcome is known, recording it must not be cut short by a
	// shutdown: that would deliver the event twice.
	fin, cancel := context.WithTimeout(context.WithoutCancel(ctx), finishTimeout)
	defer cancel()

	// Each earlier delivery of this entry ended without an acknowledgement
	// (a crashed or stopped replica): count it as one attempt, so an event
	// that kills its deliverer still ends in the dead stream.
	prior := int(count) - 1
	e, err := parseEvent(m)
	if err != nil {
		d.dead(fin, m, "", "", err, prior)
		return
	}
	rt := d.routes.Load()
	channels := rt.router.Channels(e)
	if len(channels) == 0 {
		d.opts.Metrics.Delivered(e.Type, "", ResultUnrouted)
		d.ack(fin, m.ID)
		return
	}
	if prior >= d.opts.MaxAttempts {
		d.dead(fin, m, e.Type, channels[0],
			fmt.Errorf("%w: handed out %d times without an acknowledgement", ErrAttemptsExhausted, prior), prior)
		return
	}
	hctx, release := d.hold(ctx, m.ID)
	attempts, channel, err := d.deliver(hctx, rt, e, channels, d.opts.MaxAttempts-prior)
	stopped, lost := hctx.Err() != nil, errors.Is(context.Cause(hctx), errLeaseLost)
	release()
	switch {
	case err == nil:
		d.ack(fin, m.ID)
	case stopped:
		if lost {
			d.opts.Logger.Warn(ctx, "notify: another consumer took the event over", "eventId", m.ID)
		}
	default:
		d.dead(fin, m, e.Type, channel, err, prior+attempts)
	}
}

// finishTimeout bounds acknowledging or dead-lettering an event once its
// delivery is decided, shutdown or not.
const finishTimeout = 5 * time.Second

// deliver sends e to each channel until every one has taken it, a failure is
// permanent, or budget attempts are spent. Channels that succeeded are not
// sent again on a retry. It returns the attempts made and the failing channel.
func (d *Deliverer) deliver(ctx context.Context, rt *routes, e Event, channels []string, budget int) (int, string, error) {
	pending := channels
	for attempt := 1; ; attempt++ {
		var failed []string
		var last error
		var retryAfter time.Duration
		for _, ch := range pending {
			err := d.send(ctx, rt, ch, e)
			if err == nil {
				d.opts.Metrics.Delivered(e.Type, ch, ResultDelivered)
				continue
			}
			if ctx.Err() != nil {
				return attempt, ch, ctx.Err()
			}
			if permanent(err) {
				return attempt, ch, err
			}
			var se *sendError
			if errors.As(err, &se) {
				retryAfter = max(retryAfter, se.retryAfter)
			}
			failed, last = append(failed, ch), err
		}
		if len(failed) == 0 {
			return attempt, "", nil
		}
		if attempt >= budget {
			return attempt, failed[0], fmt.Errorf("%w after %d attempts: %w", ErrAttemptsExhausted, attempt, last)
		}
		for _, ch := range failed {
			d.opts.Metrics.Delivered(e.Type, ch, ResultRetry)
		}
		pending = failed
		wait := backoff.Next(attempt, d.opts.BackoffBase, d.opts.BackoffMax)
		wait = max(wait, min(retryAfter, d.opts.BackoffMax))
		if !backoff.Sleep(ctx, wait, nil) {
			return attempt, failed[0], ctx.Err()
		}
	}
}

func (d *Deliverer) send(ctx context.Context, rt *routes, channel string, e Event) error {
	switch channel {
	case ChannelLog:
		d.opts.Logger.Notify(ctx, e)
		return nil
	case ChannelWebhook:
		return rt.hook.send(ctx, e)
	}
	return ErrInvalidRule // unreachable: NewRouter checked the channels
}

func (d *Deliverer) ack(ctx context.Context, id string) {
	var err error
	for i := 1; i <= 3; i++ {
		if err = d.store.ack(ctx, id); err == nil {
			return
		}
		if !backoff.Sleep(ctx, backoff.Next(i, redisBackoffMin, redisBackoffMax), nil) {
			break
		}
	}
	d.opts.Logger.Warn(ctx, "notify: delivered but not acknowledged; it may be delivered again", "eventId", id, "error", err)
}

func (d *Deliverer) dead(ctx context.Context, m redis.XMessage, typ, channel string, cause error, attempts int) {
	moved, err := d.store.moveToDead(ctx, m, cause, attempts)
	if err != nil {
		d.opts.Logger.Warn(ctx, "notify: cannot move the event to the dead stream; it stays pending", "eventId", m.ID, "error", err)
		return
	}
	if moved {
		d.opts.Metrics.Delivered(typ, channel, ResultDead)
		d.opts.Logger.Warn(ctx, "notify: event moved to the dead stream", "eventId", m.ID, "type", typ,
			"channel", channel, "attempts", attempts, "error", cause)
	}
}

// hold renews this consumer's hold on the entry every third of ClaimIdle
// while it is being delivered, so other replicas do not take over a slow but
// live delivery. The returned context is cancelled (cause errLeaseLost) if
// the entry was taken over anyway; release ends the renewal.
func (d *Deliverer) hold(ctx context.Context, id string) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(max(d.opts.ClaimIdle/3, time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				n, err := d.store.touch(ctx, id)
				if err == nil && n == 0 {
					cancel(errLeaseLost)
					return
				}
				// A Redis error keeps the delivery going: acknowledging will
				// tell whether the entry is still ours.
			}
		}
	}()
	return ctx, func() { cancel(nil); <-stopped }
}
