package rebalance

import (
	"context"
	"errors"
	"fmt"

	"sync/atomic"
	"time"

	"github.com/go-redsync/redsync/v4"
	"github.com/go-redsync/redsync/v4/redis/goredis/v9"
	"github.com/redis/go-redis/v9"

	"github.com/authpool/authpool/internal/backoff"
	"github.com/authpool/authpool/internal/ids"
	"github.com/authpool/authpool/pkg/pool"
)

// Defaults of ElectorParams (DESIGN §6).
const (
	DefaultLockTTL       = 10 * time.Second
	DefaultRetryInterval = 500 * time.Millisecond
	DefaultMaxBackoff    = 5 * time.Second
)

var (
	// ErrInvalidParams reports parameters a constructor cannot work with.
	ErrInvalidParams = errors.New("rebalance: invalid parameters")
	// ErrAlreadyRunning reports a second concurrent Run or Start.
	ErrAlreadyRunning = errors.New("rebalance: already running")
	// ErrLockLost ends a tenure whose lock could not be extended: the extend
	// failed, timed out, or found the lock taken by another replica.
	ErrLockLost = errors.New("rebalance: leader lock lost")
	// ErrResigned ends a tenure on shutdown; the lock was released.
	ErrResigned = errors.New("rebalance: resigned leadership")
	// ErrWorkEnded ends a tenure whose work returned while it still led.
	ErrWorkEnded = errors.New("rebalance: leader work ended")
)

// holderPattern is the shape of a replica id: it is stored in Redis and
// appears in logs. Host names and pod names fit.
var holderPattern = ids.Replica

// ValidHolder reports whether s may name a replica.
func ValidHolder(s string) bool { return holderPattern.MatchString(s) }

// Leadership is a replica's leadership at one moment.
type Leadership struct {
	// Leader is true while this replica leads.
	Leader bool
	// Epoch is the fencing epoch of the tenure (the one just ended, when
	// Leader is false; 0 before any).
	Epoch int64
	// Holder is this replica's id.
	Holder string
	// Since is when the state began: Redis time for a gained leadership,
	// the local clock otherwise.
	Since time.Time
	// Cause says why a tenure ended (nil while leading): an error matching
	// ErrLockLost, ErrResigned, ErrWorkEnded or pool.ErrNotLeader (the epoch
	// moved on under the leader).
	Cause error
}

// Work is what a leader does during its tenure. It must return soon after
// ctx ends; an error matching pool.ErrNotLeader makes the leader resign.
type Work func(ctx context.Context, epoch int64) error

// ElectorParams configure an Elector. Zero durations take the default
// named on the field.
type ElectorParams struct {
	// Client is the Redis client of the redsync lock, and only of the lock:
	// the epoch, leader:info and the hints go through Leader. Required.
	Client redis.UniversalClient
	// Leader is the pool's leadership state (pool.Pool.Leader): the lock's
	// name, the fencing epoch, leader:info and the hint channel. Required.
	Leader *pool.Leader
	// Holder names this replica (ValidHolder), e.g. its host name and pid;
	// it must differ between replicas. Required.
	Holder string
	// TTL is the lock's expiry. Default 10 s.
	TTL time.Duration
	// ExtendInterval is how often the leader extends the lock. Default TTL/3.
	ExtendInterval time.Duration
	// RetryInterval is how often a standby tries to take the lock (jittered
	// down by up to half); a resigning leader's hint (Leader.Hint) wakes it
	// earlier. At most TTL/5, so that without hints (a crashed
	// leader, a lost subscription) a standby still tries several times per
	// lock lifetime. Default min(500 ms, TTL/5).
	RetryInterval time.Duration
	// MaxBackoff caps the wait after repeated Redis errors; the wait starts
	// at RetryInterval and doubles. Default 5 s.
	MaxBackoff time.Duration
	// OnChange is called on every change of leadership, from the elector's
	// goroutine; it must not block. Optional.
	OnChange func(Leadership)
	// OnError is called with each Redis error the elector handled by
	// retrying. Optional.
	OnError func(op string, err error)
}

// Elector elects one leader among the replicas of a pool with a redsync
// lock (DESIGN §6), after riverqueue/river's elector: a short lease, one
// goroutine renewing it, leadership given up at the first failed renewal, and
// resignation on shutdown so a standby takes over at once: the resigning
// leader publishes a hint (Leader.Hint) that wakes the standbys,
// which otherwise try only every RetryInterval.
type Elector struct {
	p     ElectorParams
	rs    *redsync.Redsync
	state atomic.Pointer[Leadership]
	run   atomic.Bool
}

// NewElector checks p and returns an Elector.
func NewElector(p ElectorParams) (*Elector, error) {
	var errs []error
	if p.Client == nil {
		errs = append(errs, errors.New("Client is required"))
	}
	if p.Leader == nil {
		errs = append(errs, errors.New("Leader is required"))
	}
	if !ValidHolder(p.Holder) {
		errs = append(errs, fmt.Errorf("Holder %q must match %s", p.Holder, holderPattern))
	}
	if p.TTL < 0 || p.ExtendInterval < 0 || p.RetryInterval < 0 || p.MaxBackoff < 0 {
		errs = append(errs, errors.New("durations must not be negative"))
	}
	if p.TTL <= 0 {
		p.TTL = DefaultLockTTL
	}
	if p.ExtendInterval <= 0 {
		p.ExtendInterval = p.TTL / 3
	}
	if p.ExtendInterval >= p.TTL {
		errs = append(errs, fmt.Errorf("ExtendInterval %s must be shorter than TTL %s", p.ExtendInterval, p.TTL))
	}
	if p.RetryInterval <= 0 {
		p.RetryInterval = min(DefaultRetryInterval, p.TTL/5)
	}
	if p.RetryInterval > p.TTL/5 {
		errs = append(errs, fmt.Errorf("RetryInterval %s must be at most TTL/5 (%s)", p.RetryInterval, p.TTL/5))
	}
	if p.MaxBackoff <= 0 {
		p.MaxBackoff = DefaultMaxBackoff
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidParams, err)
	}
	if p.OnChange == nil {
		p.OnChange = func(Leadership) {}
	}
	if p.OnError == nil {
		p.OnError = func(string, error) {}
	}
	e := &Elector{p: p, rs: redsync.New(goredis.NewPool(p.Client))}
	e.state.Store(&Leadership{Holder: p.Holder})
	return e, nil
}

// IsLeader reports whether this replica leads now.
func (e *Elector) IsLeader() bool { return e.state.Load().Leader }

// Epoch is the fencing epoch while this replica leads, else 0.
func (e *Elector) Epoch() int64 {
	if l := e.state.Load(); l.Leader {
		return l.Epoch
	}
	return 0
}

// Leadership is this replica's current leadership.
func (e *Elector) Leadership() Leadership { return *e.state.Load() }

func (e *Elector) set(l Leadership) {
	l.Holder = e.p.Holder
	e.state.Store(&l)
	e.p.OnChange(l)
}

// Run campaigns for leadership until ctx ends; during each tenure it runs
// work with a context that is cancelled the moment the lock is lost. When
// ctx ends it cancels work, waits for it, releases the lock and returns nil.
// Redis errors are retried with back-off, never returned.
func (e *Elector) Run(ctx context.Context, work Work) error {
	if !e.run.CompareAndSwap(false, true) {
		return ErrAlreadyRunning
	}
	defer e.run.Store(false)
	hctx, stopHints := context.WithCancel(ctx)
	hints, hintsDone := e.listen(hctx)
	defer func() {
		stopHints()
		<-hintsDone
	}()
	failures := 0
	for ctx.Err() == nil {
		m, epoch, since, err := e.campaign(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, errLockHeld):
			failures = 0
			backoff.Sleep(ctx, backoff.Jitter(e.p.RetryInterval), hints)
		case err != nil:
			failures++
			e.p.OnError("acquire leadership", err)
			// A hint means Redis answers again: no reason to wait longer.
			backoff.Sleep(ctx, backoff.Next(failures, e.p.RetryInterval, e.p.MaxBackoff), hints)
		default:
			failures = 0
			e.lead(ctx, m, epoch, since, work)
			backoff.Sleep(ctx, backoff.Jitter(e.p.RetryInterval), nil)
		}
	}
	return nil
}

// errLockHeld: another replica holds the lock; not an error worth reporting.
var errLockHeld = errors.New("rebalance: leader lock held by another replica")

// campaign tries once to take the lock and, on success, promotes this
// replica: a new epoch and leader:info, while the lock is still ours.
func (e *Elector) campaign(ctx context.Context) (*redsync.Mutex, int64, time.Time, error) {
	m := e.rs.NewMutex(e.p.Leader.LockName(), redsync.WithExpiry(e.p.TTL), redsync.WithTries(1))
	if err := m.TryLockContext(ctx); err != nil {
		var taken *redsync.ErrTaken
		if errors.As(err, &taken) || errors.Is(err, redsync.ErrFailed) {
			return nil, 0, time.Time{}, errLockHeld
		}
		return nil, 0, time.Time{}, fmt.Errorf("rebalance: take the leader lock: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, e.p.ExtendInterval)
	defer cancel()
	epoch, since, err := e.p.Leader.Promote(pctx, m.Value(), e.p.Holder)
	if err != nil || epoch == 0 {
		if e.release(m, false) {
			e.hint(false)
		}
		if err == nil {
			return nil, 0, time.Time{}, errLockHeld // expired before the promotion
		}
		return nil, 0, time.Time{}, err
	}
	return m, epoch, since, nil
}

// lead runs one tenure: work in its own goroutine, the lock extended every
// ExtendInterval by this one. The first failed extend, the end of ctx or the
// end of work cancels work; lead waits for it, then resigns.
func (e *Elector) lead(ctx context.Context, m *redsync.Mutex, epoch int64, since time.Time, work Work) {
	wctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	e.set(Leadership{Leader: true, Epoch: epoch, Since: since})
	done := make(chan error, 1)
	go func() { done <- work(wctx, epoch) }()

	t := time.NewTicker(e.p.ExtendInterval)
	defer t.Stop()
	var cause error
	finished := false
	for cause == nil {
		select {
		case <-ctx.Done():
			cause = ErrResigned
		case err := <-done:
			finished = true
			cause = workEnded(err)
		case <-t.C:
			cause = e.extend(ctx, m)
		}
	}
	cancel(cause)
	if !finished {
		<-done // a fenced call in flight still holds its epoch: wait for it
	}
	if !errors.Is(cause, errTakenOver) {
		// After a failed extend Redis is likely unreachable: try anyway (the
		// lock may still be ours), but do not report the expected failure.
		quiet := errors.Is(cause, ErrLockLost)
		released := e.release(m, quiet)
		e.clearInfo(epoch, quiet)
		if released {
			e.hint(quiet)
		}
	}
	e.set(Leadership{Epoch: epoch, Since: time.Now(), Cause: cause})
}

func workEnded(err error) error {
	if errors.Is(err, pool.ErrNotLeader) {
		return err
	}
	if err != nil {
		return fmt.Errorf("%w: %w", ErrWorkEnded, err)
	}
	return ErrWorkEnded
}

// errTakenOver marks a lost lock that another replica now holds: there is
// nothing of ours left to release.
var errTakenOver = fmt.Errorf("%w: taken by another replica", ErrLockLost)

// extend renews the lock once. It never waits past the lock's validity: a
// Redis that does not answer costs the leadership before the lock could
// expire and let a standby in.
func (e *Elector) extend(ctx context.Context, m *redsync.Mutex) error {
	timeout := min(e.p.ExtendInterval, time.Until(m.Until()))
	if timeout <= 0 {
		return fmt.Errorf("%w: the lock's validity ran out", ErrLockLost)
	}
	xctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	type result struct {
		ok  bool
		err error
	}
	// The client may not honour context deadlines on its sockets
	// (ContextTimeoutEnabled); the select does.
	res := make(chan result, 1)
	go func() {
		ok, err := m.ExtendContext(xctx)
		res <- result{ok, err}
	}()
	var r result
	select {
	case r = <-res:
	case <-xctx.Done():
		r.err = xctx.Err()
	}
	var taken *redsync.ErrTaken
	switch {
	case ctx.Err() != nil:
		return ErrResigned
	case r.err != nil && errors.As(r.err, &taken):
		return errTakenOver
	case r.err != nil:
		return fmt.Errorf("%w: extend: %w", ErrLockLost, r.err)
	case !r.ok:
		return errTakenOver
	}
	return nil
}

// release gives the lock up (only if it is still ours), so a standby takes
// over instead of waiting for the expiry. It reports whether it released it.
func (e *Elector) release(m *redsync.Mutex, quiet bool) bool {
	ctx, cancel := context.WithTimeout(context.Background(), e.p.ExtendInterval)
	defer cancel()
	ok, err := m.UnlockContext(ctx)
	var taken *redsync.ErrTaken
	if err != nil && !quiet && !errors.Is(err, redsync.ErrLockAlreadyExpired) && !errors.As(err, &taken) {
		e.p.OnError("release the leader lock", err)
	}
	return ok && err == nil
}

// hint tells the standbys that the lock is free, after release: they try at
// once instead of at their next timed attempt. The message is this
// replica's id, so that it does not wake itself.
func (e *Elector) hint(quiet bool) {
	ctx, cancel := context.WithTimeout(context.Background(), e.p.ExtendInterval)
	defer cancel()
	if err := e.p.Leader.Hint(ctx, e.p.Holder); err != nil && !quiet {
		e.p.OnError("publish the leader hint", err)
	}
}

// listen subscribes to the leader hints until ctx ends; done is closed once
// the subscription is gone. The returned channel gets a value when another
// replica gave the lock up, and also each time the subscription is
// (re)confirmed: a hint published before that was missed, so a try is due.
// A subscription that fails or drops costs only the hints: go-redis
// reconnects it, and the standby keeps trying every RetryInterval meanwhile.
func (e *Elector) listen(ctx context.Context) (hints <-chan struct{}, done <-chan struct{}) {
	ch := make(chan struct{}, 1) // one pending hint is as good as many
	fin := make(chan struct{})
	go func() {
		defer close(fin)
		// Subscribe dials here, not in Run: an unreachable Redis must not
		// delay the first campaign.
		ps := e.p.Leader.Hints(ctx)
		defer func() { _ = ps.Close() }()
		msgs := ps.ChannelWithSubscriptions()
		for {
			select {
			case <-ctx.Done():
				return
			case m, ok := <-msgs:
				if !ok {
					return
				}
				if msg, isMsg := m.(*redis.Message); isMsg && msg.Payload == e.p.Holder {
					continue
				}
				select {
				case ch <- struct{}{}:
				default:
				}
			}
		}
	}()
	return ch, fin
}

func (e *Elector) clearInfo(epoch int64, quiet bool) {
	ctx, cancel := context.WithTimeout(context.Background(), e.p.ExtendInterval)
	defer cancel()
	if err := e.p.Leader.Demote(ctx, e.p.Holder, epoch); err != nil && !quiet {
		e.p.OnError("clear leader info", err)
	}
}
