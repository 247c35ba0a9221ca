package gateway

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"go.opentelemetry.io/contrib/instrumentation/github.com/gin-gonic/gin/otelgin"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/authpool/authpool/pkg/backend"
	"github.com/authpool/authpool/pkg/pool"
	"github.com/authpool/authpool/pkg/telemetry"
)

// ctxReported marks a request whose failure was already sent to Sentry (a
// recovered panic), so observe does not send it twice.
const ctxReported = "authpool.reported"

// TracerName names the gateway's tracer (its spans: pool.allocate,
// pool.settle, backend.run).
const TracerName = "github.com/authpool/authpool/pkg/gateway"

// ServiceName is the gateway's service name in HTTP spans.
const ServiceName = "authpool-api"

// Span attribute keys. Session ids, prompts and tokens are never attributes.
const (
	attrAllocation   = attribute.Key("authpool.allocation")
	attrSubscription = attribute.Key("authpool.subscription")
	attrReason       = attribute.Key("authpool.reason")
	attrBackend      = attribute.Key("authpool.backend")
	attrStream       = attribute.Key("authpool.stream")
	attrDuplicate    = attribute.Key("authpool.duplicate")
)

// traced says whether a request gets a span: not the probe and scrape routes
// (a span per kubelet probe is noise).
func traced(r *http.Request) bool {
	switch r.URL.Path {
	case "/health", "/ready", "/metrics":
		return false
	}
	return true
}

// traceHTTP starts the request's server span (continuing an incoming W3C
// traceparent through the global propagator) named after the route pattern.
func (s *Server) traceHTTP() gin.HandlerFunc {
	return otelgin.Middleware(ServiceName, otelgin.WithTracerProvider(s.tp), otelgin.WithFilter(traced))
}

// observe records the request in the HTTP metrics by route pattern, and
// reports server-side failures to Sentry (when SENTRY_DSN enabled it) with
// the request and subscription ids.
func (s *Server) observe(c *gin.Context) {
	start := time.Now()
	// The server span names the route pattern; its url.path would carry a
	// session id (DELETE /v1/sessions/:id), so it is the pattern too.
	if r := c.FullPath(); r != "" {
		trace.SpanFromContext(c.Request.Context()).SetAttributes(attribute.String("url.path", r))
	}
	if telemetry.SentryEnabled() {
		c.Request = c.Request.WithContext(telemetry.WithRequest(c.Request.Context(), c.Request))
	}
	c.Next()
	route := c.FullPath()
	if route == "" {
		route = "unmatched"
	}
	status := c.Writer.Status()
	s.metrics.HTTP(c.Request.Context(), route, status, time.Since(start))
	if v, ok := c.Get(ctxError); ok && !c.GetBool(ctxReported) {
		// A stream that failed after its first chunk was sent with 200:
		// judge the error by the status it would have had.
		if err, ok := v.(error); ok && c.Writer.Written() && status < 400 {
			status = classify(err).status
		}
		if err, ok := v.(error); ok && reportable(status, err) {
			telemetry.CaptureError(c.Request.Context(), err, s.tags(c))
		}
	}
}

// reportable says whether a failed request is an error worth a Sentry event:
// server-side failures, not the pool saying it is full or a client being
// refused.
func reportable(status int, err error) bool {
	if status < 500 {
		return false
	}
	if status == http.StatusServiceUnavailable {
		return errors.Is(err, ErrUnavailable) // Redis unreachable; exhaustion is a state, not a bug
	}
	return true
}

// tags are the Sentry tags of a request.
func (s *Server) tags(c *gin.Context) map[string]string {
	t := map[string]string{telemetry.TagRequestID: c.GetString(ctxRequestID)}
	if sub := c.GetString(ctxSub); sub != "" {
		t[telemetry.TagSubscriptionID] = sub
	}
	return t
}

// allocate calls the pool in a span of its own (the allocate script's Redis
// span is its child) and counts the result.
func (s *Server) allocate(ctx context.Context, tr pool.TurnRequest) (pool.Allocation, error) {
	ctx, span := s.tracer.Start(ctx, "pool.allocate")
	defer span.End()
	start := time.Now()
	alloc, err := s.pool.AllocateTurn(ctx, tr)
	pr := tr.Priority
	d := time.Since(start)
	if pr == "" {
		pr = pool.PriorityNormal
	}
	var ex *pool.ExhaustedError
	switch {
	case errors.As(err, &ex):
		s.metrics.Allocation(ctx, "exhausted", string(pr), d)
		span.SetAttributes(attrAllocation.String("exhausted"), attrReason.String(ex.Reason))
	case err != nil:
		span.RecordError(err)
		span.SetStatus(codes.Error, "allocate failed")
	default:
		s.metrics.Allocation(ctx, string(alloc.Kind), string(pr), d)
		span.SetAttributes(attrAllocation.String(string(alloc.Kind)))
		if alloc.Kind == pool.Fallback {
			s.metrics.Failover(ctx, alloc.Reason)
			span.SetAttributes(attrReason.String(alloc.Reason))
		} else {
			span.SetAttributes(attrSubscription.String(alloc.Subscription.ID))
			if alloc.From != "" { // moved to another subscription
				s.metrics.Rotation(ctx, alloc.Reason)
				span.SetAttributes(attrReason.String(alloc.Reason))
			}
		}
	}
	return alloc, err
}

// run calls a backend in a span of its own and records its latency and
// errors; sub is "" on the fallback.
func (s *Server) run(ctx context.Context, b backend.Backend, sub string, tgt backend.Target, req backend.Request,
	onDelta func(string)) (*backend.Result, error) {
	ctx, span := s.tracer.Start(ctx, "backend.run", trace.WithAttributes(attrBackend.String(b.Name()),
		attrStream.Bool(req.Stream)))
	defer span.End()
	if sub != "" {
		span.SetAttributes(attrSubscription.String(sub))
	}
	kind := "complete"
	if req.Stream {
		kind = "stream"
	}
	tm := timingsOf(ctx)
	tm.mark(msConvo)
	start := time.Now()
	res, err := b.Run(ctx, tgt, req, onDelta)
	tm.mark(msParse)
	s.metrics.Backend(ctx, b.Name(), kind, time.Since(start), err)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, "backend failed")
	}
	if errors.Is(err, backend.ErrSandbox) {
		// The CLI could have read the subscription's login: never routine.
		s.log.ErrorContext(ctx, "the CLI mounted tools; its run was killed and nothing of it was sent",
			"backend", b.Name(), "subscription", sub, "error", err)
	}
	return res, err
}

// settled counts a settle call's result in the metrics and its span.
func (s *Server) settled(ctx context.Context, span trace.Span, st pool.Settlement) {
	result := "settled"
	if st.Duplicate {
		result = "duplicate"
	}
	span.SetAttributes(attrDuplicate.Bool(st.Duplicate))
	s.metrics.Settlement(ctx, result)
}
