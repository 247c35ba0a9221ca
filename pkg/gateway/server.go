// Package gateway is the HTTP edge of authpool: two dialects in front of one
// pool (DESIGN §10), OpenAI's chat completions and Anthropic's Messages API.
// It allocates each request to a subscription of the pool, runs it on that
// subscription's backend (the Claude CLI) or on the fallback backend,
// settles its usage and answers in the request's dialect (DESIGN §7).
// Requests the CLI cannot serve (tools, images, documents) go to the
// backend that supports tools. It also serves the operator endpoints:
// health, readiness, models, session release and the /debug views.
//
// As an HTTP edge it logs (one line per request and the failures it handles);
// prompts, answers, tokens and keys never reach a log line.
package gateway

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/authpool/authpool/pkg/backend"
	"github.com/authpool/authpool/pkg/pool"
	"github.com/authpool/authpool/pkg/telemetry"
)

// Defaults of Options.
const (
	// DefaultMaxBodyBytes is the request body limit (1 MiB).
	DefaultMaxBodyBytes = 1 << 20
)

// Backends says where allocations run.
type Backends struct {
	// Subscriptions maps a subscription id to the backend that runs its
	// turns (claude-cli under the subscription's config dir).
	Subscriptions map[string]backend.Backend
	// Fallback serves fallback allocations (anthropic-api); nil when none is
	// configured, and then a fallback allocation answers 503 pool_exhausted.
	Fallback backend.Backend
	// Tools serves what the CLI cannot (tools, tool blocks, images,
	// documents): the anthropic-api backend when backends.json marks it
	// supportsTools; nil refuses such requests with 400 naming the field.
	Tools ToolBackend
}

// Options configure a Server.
type Options struct {
	// Pool is the subscription pool. Nil turns the pool off
	// (AUTH_POOL_ENABLED=false): every request goes to Backends.Fallback.
	Pool *pool.Pool
	// Redis serves the rate limits and readiness when Pool is nil (then it
	// is required); with a pool, both go through the pool.
	Redis redis.UniversalClient
	// PoolName names the rate-limit keys when Pool is nil. Default "default".
	PoolName string
	// Backends run the turns.
	Backends Backends
	// APIKeys are the accepted client keys (API_KEYS). Empty: no client
	// authentication; the caller must then listen on loopback only.
	APIKeys []string
	// ClientKeys are API_KEYS_FILE's named keys (LoadKeysFile), accepted
	// besides APIKeys, with their own rate limit, weekly budget and models;
	// SetClientKeys replaces them on a reload.
	ClientKeys []ClientKey
	// AdminToken guards /debug/*, /admin/v1 and /status (ADMIN_TOKEN).
	// Empty: loopback clients only.
	AdminToken string
	// SeparateAdmin serves /metrics, /debug, /admin/v1 and /status on
	// AdminHandler only (ADMIN_ADDR is set), so that the public port
	// carries the API alone. Default false: one handler serves all.
	SeparateAdmin bool
	// RateLimitPerMinute is each client key's (or IP's) limit, with a burst
	// of the same size; 0 turns it off. RATE_LIMIT_PER_MINUTE, default 60
	// (applied by the caller: the zero value here means off).
	RateLimitPerMinute int
	// TrustedProxies (TRUSTED_PROXIES) are the CIDRs or IPs of the reverse
	// proxies whose X-Forwarded-For (or X-Real-IP) names the client. Empty:
	// none; the client is the TCP peer, as a client could name any address
	// in those headers.
	TrustedProxies []string
	// MaxBodyBytes is the request body limit. Default 1 MiB.
	MaxBodyBytes int64
	// OAuthTokens maps a subscription id to the `claude setup-token` token
	// its CLI runs with (CLAUDE_CODE_OAUTH_TOKEN): the value of the variable
	// its oauthTokenEnv names, which the binary reads. A subscription
	// without one uses the login in its configDir. Never logged.
	OAuthTokens map[string]string
	// ModelMap maps model names clients hard-code (gpt-4o) to ones the
	// gateway serves (sonnet); the pool config's modelMap. Default none.
	ModelMap map[string]string
	// Logger receives the request log. Default: discard.
	Logger *slog.Logger
	// Metrics records HTTP requests, allocations, failovers, rotations,
	// settlements and backend calls, and is served at /metrics. Nil: no
	// metrics and no /metrics route.
	Metrics *telemetry.Metrics
	// HealInterval is how often the replica checks that Redis still holds
	// the pool's scripts and subscriptions and puts back what a restart
	// took (pool.Heal). Default 2 s; negative turns it off.
	HealInterval time.Duration
	// SettleQueueSize bounds the failed settlements this replica retries in
	// the background (beyond it they are dropped and logged). Default
	// DefaultSettleQueueSize.
	SettleQueueSize int
	// SettleMaxAge is how long a failed settlement is retried before it is
	// dropped and logged. Default DefaultSettleMaxAge.
	SettleMaxAge time.Duration
	// TracerProvider makes the gateway's spans: the HTTP server span, then
	// pool.allocate, backend.run and pool.settle under it. Nil: no tracing,
	// and no tracing middleware on the request path (cmd/api passes the
	// global provider only when an OTLP exporter is configured).
	TracerProvider trace.TracerProvider
	// ServerTiming records each request's phases (SERVER_TIMING=1): a
	// Server-Timing response header with the phases known when the headers
	// go out, and a "request phases" log line with all of them once the
	// turn is settled. Default off.
	ServerTiming bool
	// Profiling serves net/http/pprof at /debug/pprof/ on the admin surface,
	// behind the same guard as the other /debug views (PPROF=1). Default
	// off.
	Profiling bool
}

// Server is the gateway. Create it with New and serve Handler.
type Server struct {
	pool     *pool.Pool
	rdb      redis.UniversalClient
	backends Backends
	tokens   map[string]string       // subscription id → OAuth token (never logged)
	subsMu   sync.RWMutex            // guards backends.Subscriptions and tokens (AddBackends)
	keys     atomic.Pointer[keyring] // API_KEYS plus API_KEYS_FILE's named keys (SetClientKeys)
	apiKeys  *keyring                // API_KEYS alone
	admin    *keyring                // nil: loopback only
	limiter  *pool.RateLimiter       // nil: no rate limit
	// newLimiter makes the limit of a given rate on the pool's keys (a
	// named key's own rate), with or without a pool.
	newLimiter   func(perMinute int) *pool.RateLimiter
	maxBody      int64
	retries      int // re-allocations after limit/auth answers: min(subscriptions, maxRetries)
	log          *slog.Logger
	metrics      *telemetry.Metrics // nil: not recorded
	tp           trace.TracerProvider
	tracer       trace.Tracer
	engine       *gin.Engine
	adminEng     *gin.Engine // the admin surface with SeparateAdmin, else nil
	page         *pageAuth   // the status page's cookie signer
	savingsCache savingsCache
	settles      *settleRetry                      // failed settlements, retried until they land
	healer       *healer                           // writes back what a Redis restart took; nil without a pool
	modelMap     atomic.Pointer[map[string]string] // SetModelMap swaps it
	tracing      bool                              // a TracerProvider was given: the HTTP span middleware is on
	timing       bool                              // ServerTiming
	profiling    bool                              // Profiling
	pending      pendingTurns                      // answered turns still settling (see afterTurn)
	// beforeSettle, when set (tests), runs first in an answered turn's
	// bookkeeping.
	beforeSettle func()
}

// ErrInvalidOptions is returned by New for options it cannot serve with.
var ErrInvalidOptions = errors.New("gateway: invalid options")

// New builds a Server.
func New(opts Options) (*Server, error) {
	s := &Server{pool: opts.Pool, rdb: opts.Redis, backends: opts.Backends, tokens: map[string]string{},
		apiKeys: newKeyring(opts.APIKeys), maxBody: opts.MaxBodyBytes,
		log: opts.Logger, metrics: opts.Metrics, tp: opts.TracerProvider,
		tracing: opts.TracerProvider != nil, timing: opts.ServerTiming, profiling: opts.Profiling}
	s.SetModelMap(opts.ModelMap)
	if s.tp == nil {
		s.tp = noop.NewTracerProvider()
	}
	s.tracer = s.tp.Tracer(TracerName)
	s.keys.Store(s.apiKeys.with(opts.ClientKeys))
	if s.rdb == nil && s.pool == nil {
		return nil, errors.Join(ErrInvalidOptions, errors.New("gateway: a Redis client is required without a pool"))
	}
	if s.maxBody <= 0 {
		s.maxBody = DefaultMaxBodyBytes
	}
	if s.log == nil {
		s.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.AdminToken != "" {
		s.admin = newKeyring([]string{opts.AdminToken})
	}
	if s.pool != nil {
		s.newLimiter = s.pool.RateLimiter
		s.retries = min(len(s.pool.Config().Subscriptions), maxRetries)
		for _, sub := range s.pool.Config().Subscriptions {
			if s.backends.Subscriptions[sub.ID] == nil {
				return nil, errors.Join(ErrInvalidOptions, errors.New("gateway: subscription "+sub.ID+" has no backend"))
			}
			if tok := opts.OAuthTokens[sub.ID]; tok != "" {
				s.tokens[sub.ID] = tok
			}
		}
	}
	if s.pool == nil {
		name := opts.PoolName
		if name == "" {
			name = pool.DefaultPoolName
		}
		if _, err := pool.NewRateLimiter(s.rdb, name, 0); err != nil {
			return nil, errors.Join(ErrInvalidOptions, err) // the pool name
		}
		s.newLimiter = func(perMinute int) *pool.RateLimiter {
			l, _ := pool.NewRateLimiter(s.rdb, name, perMinute) // name checked above
			return l
		}
	}
	s.limiter = s.newLimiter(opts.RateLimitPerMinute)
	if s.pool != nil && opts.HealInterval >= 0 {
		s.healer = newHealer(s.pool, cmp.Or(opts.HealInterval, DefaultHealInterval), s.log)
	}
	s.settles = newSettleRetry(settleRetryParams{Size: opts.SettleQueueSize, MaxAge: opts.SettleMaxAge,
		Settle: s.settleOnce, OnSettled: s.settledLate, OnDrop: s.settleDropped,
		OnBacklog: func(d int) { s.metrics.SettleBacklog(context.Background(), d) }})
	s.page = newPageAuth(opts.AdminToken)
	s.engine = s.routes(true, !opts.SeparateAdmin)
	engines := []*gin.Engine{s.engine}
	if opts.SeparateAdmin {
		s.adminEng = s.routes(false, true)
		engines = append(engines, s.adminEng)
	}
	// gin's default trusts every peer's X-Forwarded-For, so a client could
	// name any address and dodge its rate limit or pass the loopback check
	// of /debug/*; an empty list trusts none: the client is the TCP peer.
	for _, e := range engines {
		if err := e.SetTrustedProxies(opts.TrustedProxies); err != nil {
			return nil, errors.Join(ErrInvalidOptions, fmt.Errorf("gateway: trusted proxies: %w", err))
		}
	}
	return s, nil
}

// Start runs the gateway's background work: the retry of settlements that
// failed (Redis away for a moment), and the healer that writes back what a
// Redis restart took. Call it before serving.
func (s *Server) Start() {
	s.settles.Start()
	s.healer.start()
}

// Shutdown stops the background work after the HTTP server has stopped:
// the settles of answered turns finish, failed settlements still queued are
// retried until they land or ctx ends, then dropped (each logged).
func (s *Server) Shutdown(ctx context.Context) error {
	s.healer.stop()
	_ = s.pending.idle(ctx)
	return s.settles.Shutdown(ctx)
}

// routeOf is the request's route pattern, or "unmatched" for a path no route
// serves (whatever the client put in it stays out of logs and metrics).
func routeOf(c *gin.Context) string {
	if r := c.FullPath(); r != "" {
		return r
	}
	return "unmatched"
}

// Handler is the gateway's HTTP handler: the API, and without
// SeparateAdmin the admin surface too.
func (s *Server) Handler() *gin.Engine { return s.engine }

// AdminHandler serves /metrics, /debug, /admin/v1 and /status (and /health,
// /ready) with SeparateAdmin; nil without it (Handler serves them).
func (s *Server) AdminHandler() *gin.Engine { return s.adminEng }

// routes builds one engine: api adds the client API, admin the operator
// surface; /health and /ready are on every engine.
func (s *Server) routes(api, admin bool) *gin.Engine {
	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	e.ContextWithFallback = true
	e.HandleMethodNotAllowed = true
	// requestID may refuse a bad X-Request-ID: it runs after observe and
	// accessLog, so that refusal is counted and logged too.
	// afterAnswer runs an answered turn's settle once the handler returned.
	var mw []gin.HandlerFunc
	if s.timing {
		mw = append(mw, s.startTimings)
	}
	if s.tracing {
		mw = append(mw, s.traceHTTP())
	}
	e.Use(append(mw, s.observe, s.afterAnswer, s.recover, s.accessLog, requestID)...)
	e.NoRoute(func(c *gin.Context) { writeError(c, ErrNotFound) })
	e.NoMethod(func(c *gin.Context) { writeError(c, ErrMethodNotAllowed) })

	e.GET("/health", s.health)
	e.GET("/ready", s.ready)
	if api {
		v1 := e.Group("/v1", s.limitBody, s.apiAuth, s.rateLimit)
		v1.POST("/chat/completions", s.chatCompletions)
		v1.POST("/messages", s.messages)
		v1.POST("/messages/count_tokens", s.countTokens)
		v1.GET("/models", s.models)
		v1.DELETE("/sessions/:id", s.deleteSession)
	}
	if admin {
		if s.metrics != nil {
			e.GET("/metrics", gin.WrapH(s.metrics.Handler()))
		}
		dbg := e.Group("/debug", s.adminAuth)
		dbg.GET("/auth-pool", s.debugPool)
		dbg.GET("/memory", s.debugMemory)
		if s.profiling {
			profileRoutes(dbg)
		}
		s.adminRoutes(e)
		s.statusRoutes(e)
	}
	return e
}

// recover turns a panic into a 500 in OpenAI's shape, logs it and reports
// it to Sentry (when enabled) with the request and subscription ids.
func (s *Server) recover(c *gin.Context) {
	defer func() {
		if r := recover(); r != nil {
			s.log.ErrorContext(c.Request.Context(), "panic in handler",
				"request_id", c.GetString(ctxRequestID), "path", c.FullPath(), "panic", r)
			telemetry.CapturePanic(c.Request.Context(), r, s.tags(c))
			c.Set(ctxReported, true)
			if !c.Writer.Written() {
				writeError(c, errors.New("gateway: internal error"))
			}
			c.Abort()
		}
	}()
	c.Next()
}

// accessLog writes one line per request: no bodies, no keys, no prompts,
// and the route pattern for a path: a raw path would carry a session id
// (DELETE /v1/sessions/:id), which lets a reader of the logs act on it.
func (s *Server) accessLog(c *gin.Context) {
	start := time.Now()
	c.Next()
	status := c.Writer.Status()
	level := slog.LevelInfo
	if c.Request.URL.Path == "/health" || c.Request.URL.Path == "/ready" {
		level = slog.LevelDebug
	}
	attrs := []slog.Attr{
		slog.String("request_id", c.GetString(ctxRequestID)),
		slog.String("method", c.Request.Method),
		slog.String("path", routeOf(c)),
		slog.String("client_ip", c.ClientIP()),
		slog.Int("status", status),
		slog.Float64("duration_ms", float64(time.Since(start).Microseconds())/1000),
	}
	if a := c.GetString(ctxAlloc); a != "" {
		attrs = append(attrs, slog.String("allocation", a))
	}
	if sub := c.GetString(ctxSub); sub != "" {
		attrs = append(attrs, slog.String("subscription", sub))
	}
	if v, ok := c.Get(ctxError); ok {
		if err, ok := v.(error); ok && status >= 500 {
			level = slog.LevelWarn
			attrs = append(attrs, slog.String("error", err.Error()))
		}
	}
	s.log.LogAttrs(c.Request.Context(), level, "request", attrs...)
}
