package gateway

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/authpool/authpool/internal/backoff"
	"github.com/authpool/authpool/pkg/pool"
)

// Defaults of the settle retry queue.
const (
	// DefaultSettleQueueSize bounds the settlements a replica holds for retry.
	DefaultSettleQueueSize = 4096
	// DefaultSettleMaxAge is how long a failed settlement is retried. It
	// stays far under the settlement marker's 24 h: a retry after the
	// marker expired could count a settlement that did land a second time.
	DefaultSettleMaxAge = time.Hour
	settleMinBackoff    = 100 * time.Millisecond
	settleMaxBackoff    = 10 * time.Second
)

// Reasons a settlement is dropped (the label of the drop metric).
const (
	dropQueueFull = "queue_full"
	dropExpired   = "expired"
	dropInvalid   = "invalid"
	dropShutdown  = "shutdown"
)

// pendingSettle is one settlement waiting for Redis.
type pendingSettle struct {
	ctx      context.Context // the request's, without its cancellation: log correlation
	reqID    string          // the client-facing request id, for the log
	usage    pool.Usage
	since    time.Time
	attempts int
}

// settleRetryParams build a settleRetry.
type settleRetryParams struct {
	// Settle records one settlement; it is idempotent by the usage's id.
	Settle func(context.Context, pool.Usage) (pool.Settlement, error)
	// Size bounds the queue; MaxAge bounds how long one settlement is retried.
	Size   int
	MaxAge time.Duration
	// OnSettled reports a settlement that landed on a retry.
	OnSettled func(p *pendingSettle, st pool.Settlement)
	// OnDrop reports a settlement given up: its usage is lost.
	OnDrop func(p *pendingSettle, reason string, err error)
	// OnBacklog reports a change of the number of queued settlements.
	OnBacklog func(delta int)
}

// settleRetry retries failed settlements in the background, with
// exponential back-off and jitter, until they land: a settle is idempotent
// by its id, so a retry of one that did land (its answer lost) counts
// nothing twice. One queue per replica, bounded; Shutdown drains it.
type settleRetry struct {
	p        settleRetryParams
	queue    chan *pendingSettle
	hard     context.Context // cancelled when Shutdown's deadline passes
	abort    context.CancelFunc
	draining chan struct{}
	done     chan struct{}

	mu      sync.Mutex
	started bool
	closed  bool
}

func newSettleRetry(p settleRetryParams) *settleRetry {
	if p.Size <= 0 {
		p.Size = DefaultSettleQueueSize
	}
	if p.MaxAge <= 0 {
		p.MaxAge = DefaultSettleMaxAge
	}
	hard, abort := context.WithCancel(context.Background())
	return &settleRetry{p: p, queue: make(chan *pendingSettle, p.Size), hard: hard, abort: abort,
		draining: make(chan struct{}), done: make(chan struct{})}
}

// Start runs the retry loop.
func (q *settleRetry) Start() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.started || q.closed {
		return
	}
	q.started = true
	go q.run()
}

// Shutdown stops taking settlements and retries those queued until they
// land or ctx ends; what is left then is dropped (and reported).
func (q *settleRetry) Shutdown(ctx context.Context) error {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return nil
	}
	q.closed = true
	started := q.started
	close(q.draining)
	q.mu.Unlock()
	if !started {
		q.abort()
		q.dropQueued()
		return nil
	}
	select {
	case <-q.done:
		q.abort()
		return nil
	case <-ctx.Done():
		q.abort()
		<-q.done
		return ctx.Err()
	}
}

// add queues p for retry; a full queue or one shut down drops it.
func (q *settleRetry) add(p *pendingSettle) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		q.drop(p, dropShutdown, nil)
		return
	}
	select {
	case q.queue <- p:
		q.p.OnBacklog(1)
	default:
		q.drop(p, dropQueueFull, nil)
	}
}

func (q *settleRetry) run() {
	defer close(q.done)
	for {
		select {
		case p := <-q.queue:
			q.retry(p)
		case <-q.draining:
			for {
				select {
				case p := <-q.queue:
					q.retry(p)
				default:
					return
				}
			}
		}
	}
}

// retry settles p, waiting longer after each failure. The queue is FIFO
// behind the head: while Redis is away every settlement fails alike.
func (q *settleRetry) retry(p *pendingSettle) {
	defer q.p.OnBacklog(-1)
	for {
		if q.hard.Err() != nil {
			q.drop(p, dropShutdown, nil)
			return
		}
		ctx, cancel := context.WithTimeout(q.hard, bookkeepingTimeout)
		st, err := q.p.Settle(ctx, p.usage)
		cancel()
		p.attempts++
		switch {
		case err == nil:
			q.p.OnSettled(p, st)
			return
		case permanent(err):
			q.drop(p, dropInvalid, err)
			return
		case time.Since(p.since) > q.p.MaxAge:
			q.drop(p, dropExpired, err)
			return
		}
		// Jittered: replicas that lost Redis at once do not come back in
		// step. The first attempt was the turn's own settle.
		d := backoff.Next(p.attempts-1, settleMinBackoff, settleMaxBackoff)
		select {
		case <-time.After(d):
		case <-q.hard.Done():
		}
	}
}

// permanent says whether a settle error will fail again on every retry.
func permanent(err error) bool {
	return errors.Is(err, pool.ErrInvalidUsage) || errors.Is(err, pool.ErrInvalidRequestID) ||
		errors.Is(err, pool.ErrInvalidSession) || errors.Is(err, pool.ErrUnknownSubscription)
}

func (q *settleRetry) drop(p *pendingSettle, reason string, err error) {
	q.p.OnDrop(p, reason, err)
}

func (q *settleRetry) dropQueued() {
	for {
		select {
		case p := <-q.queue:
			q.p.OnBacklog(-1)
			q.drop(p, dropShutdown, nil)
		default:
			return
		}
	}
}
