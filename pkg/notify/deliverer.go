package notify

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/authpool/authpool/internal/ids"
	"github.com/authpool/authpool/pkg/pool"
)

// Logger receives what the Deliverer has to say; the cmd layer turns it into
// structured log lines (SlogLogger does).
type Logger interface {
	// Notify is the log channel: one call per event routed to "log".
	Notify(ctx context.Context, e Event)
	// Warn reports a problem the Deliverer handled and carried on from (Redis
	// unreachable, an event moved to the dead stream). args are slog-style
	// key/value pairs; they never hold the webhook secret or URL path.
	Warn(ctx context.Context, msg string, args ...any)
}

// Metrics counts deliveries.
type Metrics interface {
	// Delivered counts one outcome for an event type on a channel; result is
	// one of the Result* constants. channel is "" for ResultUnrouted and for
	// malformed events moved to the dead stream.
	Delivered(eventType, channel, result string)
}

// Delivery outcomes passed to Metrics.
const (
	ResultDelivered = "delivered" // the channel took the event
	ResultRetry     = "retry"     // an attempt failed; another will follow
	ResultDead      = "dead"      // the event went to the dead stream
	ResultUnrouted  = "unrouted"  // no enabled rule matched; acknowledged
)

// Defaults of Options.
const (
	DefaultGroup          = "notifiers"
	DefaultPollInterval   = time.Second
	DefaultBatchSize      = 10
	DefaultClaimIdle      = 30 * time.Second
	DefaultMaxAttempts    = 6
	DefaultBackoffBase    = time.Second
	DefaultBackoffMax     = time.Minute
	DefaultAttemptTimeout = 10 * time.Second
	DefaultRetention      = 7 * 24 * time.Hour
	DefaultTrimInterval   = time.Hour
)

// Redis errors in the loop back off from redisBackoffMin, doubling to
// redisBackoffMax, so a restarted Redis is found again within seconds.
const (
	redisBackoffMin = 100 * time.Millisecond
	redisBackoffMax = 5 * time.Second
)

var (
	// ErrInvalidOptions reports Options that New cannot work with.
	ErrInvalidOptions = errors.New("notify: invalid options")
	// ErrAlreadyStarted reports a second Start.
	ErrAlreadyStarted = errors.New("notify: deliverer already started")
	// ErrAttemptsExhausted is the dead stream's error for an event whose
	// channel still failed after MaxAttempts attempts (or redeliveries).
	ErrAttemptsExhausted = errors.New("notify: delivery attempts exhausted")
)

// namePattern is the shape of consumer and group names: replica names.
var namePattern = ids.Replica

// Options configure a Deliverer. Zero durations and counts take the default
// named on the field.
type Options struct {
	// Events is the pool's events stream (pool.Pool.Events, or
	// pool.NewEvents for a pool name). Required.
	Events *pool.Events
	// Consumer names this replica in the group; it must be unique per
	// replica (e.g. the pod name). Required.
	Consumer string
	// Group is the consumer group shared by all replicas. Default "notifiers".
	Group string
	// Config holds the rules and the webhook URL.
	Config pool.NotificationsConfig
	// WebhookSecret (WEBHOOK_SECRET) keys the X-AuthPool-Signature HMAC;
	// empty sends no signature.
	WebhookSecret []byte
	// Logger receives the log channel and the Deliverer's warnings. Required.
	Logger Logger
	// Metrics counts deliveries. Optional.
	Metrics Metrics
	// HTTPClient sends webhooks; its CheckRedirect is replaced (same host
	// only) on a copy. Default: a client of its own, closed by Shutdown.
	HTTPClient *http.Client
	// PollInterval is the longest wait for new events when no PUBLISH hint
	// arrives. Default 1 s.
	PollInterval time.Duration
	// BatchSize is the COUNT of one read or claim. Default 10.
	BatchSize int
	// ClaimIdle is how long an event may sit pending without its consumer
	// renewing its hold before another replica takes it over. The hold is
	// renewed every third of it. Default 30 s.
	ClaimIdle time.Duration
	// ClaimInterval is how often the Deliverer looks for such events.
	// Default ClaimIdle/2.
	ClaimInterval time.Duration
	// MaxAttempts bounds delivery attempts of one event, counting earlier
	// deliveries to crashed replicas. Default 6.
	MaxAttempts int
	// BackoffBase is the wait after the first failed attempt; it doubles
	// with each attempt up to BackoffMax and is jittered down by up to half.
	// Defaults 1 s and 1 min.
	BackoffBase, BackoffMax time.Duration
	// AttemptTimeout bounds one webhook request. Default 10 s.
	AttemptTimeout time.Duration
	// Retention is how long acknowledged events stay in the stream for
	// inspection before trimming. Default 7 days.
	Retention time.Duration
	// TrimInterval is how often the stream is trimmed. Default 1 h.
	TrimInterval time.Duration
}

func (o *Options) applyDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if o.Group == "" {
		o.Group = DefaultGroup
	}
	def(&o.PollInterval, DefaultPollInterval)
	def(&o.ClaimIdle, DefaultClaimIdle)
	def(&o.ClaimInterval, o.ClaimIdle/2)
	def(&o.BackoffBase, DefaultBackoffBase)
	def(&o.BackoffMax, DefaultBackoffMax)
	def(&o.AttemptTimeout, DefaultAttemptTimeout)
	def(&o.Retention, DefaultRetention)
	def(&o.TrimInterval, DefaultTrimInterval)
	if o.BatchSize <= 0 {
		o.BatchSize = DefaultBatchSize
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = DefaultMaxAttempts
	}
	if o.Metrics == nil {
		o.Metrics = noMetrics{}
	}
}

type noMetrics struct{}

func (noMetrics) Delivered(string, string, string) {}

// Deliverer delivers the events of one pool. Build it with New, then Start;
// Shutdown stops it.
type Deliverer struct {
	opts   Options
	store  *store
	routes atomic.Pointer[routes] // swapped whole by SetConfig

	ownMu sync.Mutex
	own   *http.Transport // the transport of a webhook without Options.HTTPClient

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
	wake   chan struct{}
	pubsub *redis.PubSub
}

// New checks opts and builds a Deliverer.
func New(opts Options) (*Deliverer, error) {
	opts.applyDefaults()
	var errs []error
	if opts.Events == nil {
		errs = append(errs, errors.New("Events is required"))
	}
	if !namePattern.MatchString(opts.Consumer) {
		errs = append(errs, fmt.Errorf("Consumer %q must match %s", opts.Consumer, namePattern))
	}
	if !namePattern.MatchString(opts.Group) {
		errs = append(errs, fmt.Errorf("Group %q must match %s", opts.Group, namePattern))
	}
	if opts.Logger == nil {
		errs = append(errs, errors.New("Logger is required (the log channel and warnings go there)"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidOptions, err)
	}
	d := &Deliverer{opts: opts, wake: make(chan struct{}, 1)}
	if err := d.SetConfig(opts.Config); err != nil {
		return nil, err
	}
	d.store = &store{events: opts.Events, group: opts.Group, consumer: opts.Consumer}
	return d, nil
}

// routes is one notifications config in force: its rules and its webhook.
type routes struct {
	router *Router
	hook   *webhook // nil when no rule uses the webhook channel
}

// SetConfig checks a notifications config (its rules and, when a rule uses
// the webhook channel, its URL) and puts it in force for every event handled
// from now on; an event already being delivered keeps the config it started
// with. On an error the config in force stays. A reloaded pool config
// reaches the deliverer through it.
func (d *Deliverer) SetConfig(cfg pool.NotificationsConfig) error {
	router, err := NewRouter(cfg)
	if err != nil {
		return err
	}
	rt := &routes{router: router}
	if router.UsesWebhook() {
		if _, err := checkWebhookURL(cfg.WebhookURL, cfg.AllowInsecureWebhooks); err != nil {
			return fmt.Errorf("notifications.webhookUrl: %w", err)
		}
		rt.hook = newWebhook(cfg.WebhookURL, cfg.AllowInsecureWebhooks,
			d.opts.WebhookSecret, d.httpClient(), d.opts.AttemptTimeout)
	}
	d.routes.Store(rt)
	return nil
}

// httpClient is Options.HTTPClient, or a client on a transport of the
// Deliverer's own, made once and closed by Shutdown.
func (d *Deliverer) httpClient() *http.Client {
	if d.opts.HTTPClient != nil {
		return d.opts.HTTPClient
	}
	d.ownMu.Lock()
	defer d.ownMu.Unlock()
	if d.own == nil {
		d.own = http.DefaultTransport.(*http.Transport).Clone()
	}
	return &http.Client{Transport: d.own}
}

// Start launches delivery in the background and returns. It stops when ctx
// ends or Shutdown is called. Redis being unreachable is not an error here:
// the loop keeps retrying.
func (d *Deliverer) Start(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.done != nil {
		return ErrAlreadyStarted
	}
	ctx, cancel := context.WithCancel(ctx)
	d.cancel = cancel
	d.done = make(chan struct{})
	// The scripts PUBLISH on the stream's name after each XADD: a hint that
	// cuts the wait short. go-redis resubscribes after a reconnect; a lost
	// hint costs at most PollInterval.
	d.pubsub = d.opts.Events.Subscribe(ctx)
	hints := d.pubsub.Channel()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case _, ok := <-hints:
				if !ok {
					return
				}
				select {
				case d.wake <- struct{}{}:
				default:
				}
			}
		}
	}()
	go func() {
		defer wg.Done()
		d.run(ctx)
	}()
	go func() {
		wg.Wait()
		close(d.done)
	}()
	return nil
}

// Shutdown stops delivery and waits for the loop to end, or for ctx. An
// event in flight is left pending (not acknowledged): another replica, or
// this one after a restart, delivers it.
func (d *Deliverer) Shutdown(ctx context.Context) error {
	d.mu.Lock()
	cancel, done, ps := d.cancel, d.done, d.pubsub
	d.mu.Unlock()
	if done == nil {
		return nil
	}
	cancel()
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("notify: shutdown: %w", ctx.Err())
	}
	err := ps.Close()
	d.ownMu.Lock()
	defer d.ownMu.Unlock()
	if d.own != nil {
		d.own.CloseIdleConnections()
	}
	if err != nil && !errors.Is(err, redis.ErrClosed) {
		return fmt.Errorf("notify: shutdown: close subscription: %w", err)
	}
	return nil
}
