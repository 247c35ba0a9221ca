// Package rebalance runs the rebalancer (DESIGN §6): a leader elected among
// the replicas with a redsync lock and a fencing epoch, whose loops maintain
// and rebalance the pool every interval, and — in every replica — the
// notification Deliverer. The Component bundles them behind Start and
// Shutdown, for cmd/rebalancer and, in its in-process mode (no election), for
// cmd/api on the embedded Redis.
//
// The package does not log: what it did and the problems it handled go to an
// injected Reporter.
package rebalance

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/authpool/authpool/internal/backoff"
	"github.com/authpool/authpool/pkg/pool"
)

// Service is a background component with a lifecycle, like the notify
// Deliverer.
type Service interface {
	// Start launches the service and returns.
	Start(ctx context.Context) error
	// Shutdown stops it and waits for it, or for ctx.
	Shutdown(ctx context.Context) error
}

// DefaultInProcessHolder names the replica in InProcess mode.
const DefaultInProcessHolder = "in-process"

// Params configure a Component. Zero durations take the default named on
// the field.
type Params struct {
	// Pool is the pool to maintain and rebalance (already synced). Required.
	Pool *pool.Pool
	// Client is the Redis client of the redsync leader lock, and only of the
	// lock (the rest goes through Pool). Required unless InProcess.
	Client redis.UniversalClient
	// InProcess skips the election: this process is the only one on its
	// Redis (the embedded default of cmd/api). It takes an epoch at start
	// and runs the same loops.
	InProcess bool
	// Holder names this replica (ValidHolder), e.g. host name and pid.
	// Required unless InProcess (default DefaultInProcessHolder then).
	Holder string
	// LockTTL is the leader lock's expiry. Default 10 s.
	LockTTL time.Duration
	// ExtendInterval is how often the leader extends the lock. Default LockTTL/3.
	ExtendInterval time.Duration
	// RetryInterval is how often a standby tries to take the lead when no
	// resignation hint wakes it first; at most LockTTL/5. Default
	// min(500 ms, LockTTL/5).
	RetryInterval time.Duration
	// Interval between cycles. Default rebalancing.intervalSeconds.
	Interval time.Duration
	// Reporter receives leadership changes, cycles and handled errors.
	// Default NopReporter.
	Reporter Reporter
	// Deliverer, when set, is started with the Component and shut down after
	// leadership is resigned: every replica delivers notifications.
	Deliverer Service
}

// leadership is what the Component needs of an elector.
type leadership interface {
	Run(ctx context.Context, work Work) error
	Leadership() Leadership
}

// Component is the rebalancer of one replica: the election (or none, in
// process), the leader's loops and, optionally, the notification Deliverer.
type Component struct {
	leader    leadership
	loops     *Loops
	deliverer Service
	report    Reporter

	mu      sync.Mutex
	started bool
	cancel  context.CancelFunc
	done    chan struct{}
}

// New checks p and builds a Component.
func New(p Params) (*Component, error) {
	if p.Pool == nil {
		return nil, fmt.Errorf("%w: Pool is required", ErrInvalidParams)
	}
	if p.Reporter == nil {
		p.Reporter = NopReporter{}
	}
	loops, err := NewLoops(LoopsParams{Pool: p.Pool, Interval: p.Interval, Reporter: p.Reporter})
	if err != nil {
		return nil, err
	}
	// The Reporter takes a context; leadership changes happen outside any
	// request, so they get a background one.
	onChange := func(l Leadership) { p.Reporter.Leadership(context.Background(), l) }
	onError := func(op string, err error) { p.Reporter.Error(context.Background(), op, err) }
	c := &Component{loops: loops, deliverer: p.Deliverer, report: p.Reporter}
	if p.InProcess {
		if p.Holder == "" {
			p.Holder = DefaultInProcessHolder
		}
		if !ValidHolder(p.Holder) {
			return nil, fmt.Errorf("%w: Holder %q must match %s", ErrInvalidParams, p.Holder, holderPattern)
		}
		retry := p.RetryInterval
		if retry <= 0 {
			retry = DefaultRetryInterval
		}
		s := &solo{pool: p.Pool, holder: p.Holder, retry: retry, onChange: onChange, onError: onError}
		s.state.Store(&Leadership{Holder: p.Holder})
		c.leader = s
		return c, nil
	}
	e, err := NewElector(ElectorParams{Client: p.Client, Leader: p.Pool.Leader(), Holder: p.Holder,
		TTL: p.LockTTL, ExtendInterval: p.ExtendInterval, RetryInterval: p.RetryInterval,
		OnChange: onChange, OnError: onError})
	if err != nil {
		return nil, err
	}
	c.leader = e
	return c, nil
}

// Start starts the Deliverer (if any) and the election in the background,
// and returns. Everything stops when ctx ends or Shutdown is called. Redis
// being unreachable is not an error here: the election keeps retrying.
func (c *Component) Start(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.started {
		return ErrAlreadyRunning
	}
	if c.deliverer != nil {
		if err := c.deliverer.Start(ctx); err != nil {
			return fmt.Errorf("rebalance: start the deliverer: %w", err)
		}
	}
	// A standby reports from the start (authpool_leader 0), not only once
	// it has led.
	c.report.Leadership(ctx, c.leader.Leadership())
	ctx, cancel := context.WithCancel(ctx)
	c.started, c.cancel, c.done = true, cancel, make(chan struct{})
	go func() {
		defer close(c.done)
		_ = c.leader.Run(ctx, c.loops.Run)
	}()
	return nil
}

// Shutdown resigns leadership first — the loops stop, then the lock is
// released so a standby takes over at once — and then stops the Deliverer
// (an event in flight stays pending for another replica). It waits for both,
// or for ctx.
func (c *Component) Shutdown(ctx context.Context) error {
	c.mu.Lock()
	cancel, done := c.cancel, c.done
	c.mu.Unlock()
	if done == nil {
		return nil
	}
	cancel()
	var errs []error
	select {
	case <-done:
	case <-ctx.Done():
		errs = append(errs, fmt.Errorf("rebalance: shutdown: resign leadership: %w", ctx.Err()))
	}
	if c.deliverer != nil {
		if err := c.deliverer.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("rebalance: shutdown: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Leadership is this replica's current leadership.
func (c *Component) Leadership() Leadership { return c.leader.Leadership() }

// IsLeader reports whether this replica leads now.
func (c *Component) IsLeader() bool { return c.leader.Leadership().Leader }

// Epoch is the fencing epoch while this replica leads, else 0.
func (c *Component) Epoch() int64 {
	if l := c.leader.Leadership(); l.Leader {
		return l.Epoch
	}
	return 0
}

// solo leads without an election: the one process on its Redis. It takes a
// new epoch whenever it (re)starts its loops.
type solo struct {
	pool     *pool.Pool
	holder   string
	retry    time.Duration
	onChange func(Leadership)
	onError  func(string, error)
	state    atomic.Pointer[Leadership]
}

func (s *solo) Leadership() Leadership { return *s.state.Load() }

func (s *solo) set(l Leadership) {
	l.Holder = s.holder
	s.state.Store(&l)
	s.onChange(l)
}

func (s *solo) Run(ctx context.Context, work Work) error {
	failures := 0
	for ctx.Err() == nil {
		epoch, err := s.pool.NextEpoch(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			failures++
			s.onError("take an epoch", err)
			backoff.Sleep(ctx, backoff.Next(failures, s.retry, DefaultMaxBackoff), nil)
			continue
		}
		failures = 0
		s.set(Leadership{Leader: true, Epoch: epoch, Since: time.Now()})
		err = work(ctx, epoch)
		cause := ErrResigned
		if ctx.Err() == nil {
			// Another process moved the epoch on (it should not exist in
			// this mode): take a new one after a pause rather than fight.
			cause = workEnded(err)
		}
		s.set(Leadership{Epoch: epoch, Since: time.Now(), Cause: cause})
		backoff.Sleep(ctx, s.retry, nil)
	}
	return nil
}
