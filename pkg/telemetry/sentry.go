package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/getsentry/sentry-go"
)

// ErrSentryConfig reports a SENTRY_DSN the Sentry SDK refused.
var ErrSentryConfig = errors.New("telemetry: bad sentry configuration")

// Tags that CaptureError and CapturePanic callers set: the request and the
// subscription an error happened in.
const (
	TagRequestID      = "request_id"
	TagSubscriptionID = "subscription_id"
)

// SentryConfig is the Sentry part of a binary's environment.
type SentryConfig struct {
	// DSN (SENTRY_DSN) turns reporting on. It holds a key: never log it.
	DSN string
	// Environment (SENTRY_ENVIRONMENT; the binary defaults it to production
	// when APP_ENV or NODE_ENV says so) tags every event. Default
	// development.
	Environment string
}

// SetupSentry turns on error reporting to Sentry when c.DSN is set: errors
// passed to CaptureError and panics passed to CapturePanic are sent, tagged
// with release and c.Environment. Request headers that carry credentials,
// cookies, request bodies and any string that looks like a key or token are
// removed before an event leaves the process. Without a DSN nothing is ever
// sent and enabled is false. flush waits up to its timeout for queued
// events; call it before exiting.
func SetupSentry(c SentryConfig, release string) (flush func(time.Duration) bool, enabled bool, err error) {
	dsn := strings.TrimSpace(c.DSN)
	if dsn == "" {
		// Unbind any client a previous setup installed: "unset" means silent.
		sentry.CurrentHub().BindClient(nil)
		return func(time.Duration) bool { return true }, false, nil
	}
	environment := strings.TrimSpace(c.Environment)
	if environment == "" {
		environment = "development"
	}
	err = sentry.Init(sentry.ClientOptions{
		Dsn:              dsn,
		Release:          release,
		Environment:      environment,
		AttachStacktrace: true,
		BeforeSend:       scrubEvent,
		BeforeBreadcrumb: func(b *sentry.Breadcrumb, _ *sentry.BreadcrumbHint) *sentry.Breadcrumb {
			scrubBreadcrumb(b)
			return b
		},
	})
	if err != nil {
		// The SDK's message may quote the DSN, whose key is a credential.
		return nil, false, fmt.Errorf("%w: SENTRY_DSN was not accepted", ErrSentryConfig)
	}
	return sentry.Flush, true, nil
}

// hub is the Sentry hub of ctx (one set by WithRequest or an SDK
// middleware), else the process hub.
func hub(ctx context.Context) *sentry.Hub {
	if ctx != nil {
		if h := sentry.GetHubFromContext(ctx); h != nil {
			return h
		}
	}
	return sentry.CurrentHub()
}

// WithRequest returns ctx carrying a Sentry scope of its own with r attached
// (method, URL, headers; credentials are scrubbed before sending), so that
// errors captured under ctx say which request failed. Without SetupSentry
// having enabled Sentry it costs a hub clone and sends nothing.
func WithRequest(ctx context.Context, r *http.Request) context.Context {
	h := sentry.CurrentHub().Clone()
	h.Scope().SetRequest(r)
	return sentry.SetHubOnContext(ctx, h)
}

// CaptureError reports err to Sentry with tags (TagRequestID,
// TagSubscriptionID, …); a nil err or a disabled Sentry sends nothing.
func CaptureError(ctx context.Context, err error, tags map[string]string) {
	if err == nil {
		return
	}
	if c, scope := scoped(ctx, tags); c != nil {
		c.CaptureException(err, &sentry.EventHint{Context: ctx, OriginalException: err}, scope)
	}
}

// CapturePanic reports a recovered panic value (the result of recover())
// with tags; nil or a disabled Sentry sends nothing. The caller decides
// whether to re-panic.
func CapturePanic(ctx context.Context, recovered any, tags map[string]string) {
	if recovered == nil {
		return
	}
	if c, scope := scoped(ctx, tags); c != nil {
		c.RecoverWithContext(ctx, recovered, &sentry.EventHint{Context: ctx, RecoveredException: recovered}, scope)
	}
}

// scoped returns the client of ctx's hub and a copy of its scope with tags
// added; a copy, so concurrent captures under one request never mix tags.
// The client is nil when Sentry is disabled.
func scoped(ctx context.Context, tags map[string]string) (*sentry.Client, *sentry.Scope) {
	h := hub(ctx)
	c := h.Client()
	if c == nil {
		return nil, nil
	}
	scope := h.Scope().Clone()
	scope.SetTags(tags)
	return c, scope
}

// scrubEvent is the BeforeSend hook: it removes credentials, cookies and
// bodies from the request and cuts secrets out of every text the event
// carries.
func scrubEvent(e *sentry.Event, _ *sentry.EventHint) *sentry.Event {
	if e == nil {
		return nil
	}
	if r := e.Request; r != nil {
		r.Data = ""
		r.Cookies = ""
		r.Env = nil
		r.QueryString = scrubQuery(r.QueryString)
		r.URL = RedactString(r.URL)
		for k, v := range r.Headers {
			if SensitiveKey(k) { // Authorization, X-Api-Key, Cookie, X-Admin-Token, …
				r.Headers[k] = Redacted
				continue
			}
			r.Headers[k] = RedactString(v)
		}
	}
	e.Message = RedactString(e.Message)
	for i := range e.Exception {
		e.Exception[i].Value = RedactString(e.Exception[i].Value)
	}
	for k, v := range e.Tags {
		if SensitiveKey(k) {
			e.Tags[k] = Redacted
			continue
		}
		e.Tags[k] = RedactString(v)
	}
	for _, c := range e.Contexts {
		for k, v := range c {
			if SensitiveKey(k) {
				c[k] = Redacted
				continue
			}
			c[k] = redactAny(v)
		}
	}
	for _, b := range e.Breadcrumbs {
		scrubBreadcrumb(b)
	}
	return e
}

func scrubBreadcrumb(b *sentry.Breadcrumb) {
	if b == nil {
		return
	}
	b.Message = RedactString(b.Message)
	for k, v := range b.Data {
		if SensitiveKey(k) {
			b.Data[k] = Redacted
			continue
		}
		b.Data[k] = redactAny(v)
	}
}

// scrubQuery redacts query parameters named like secrets (?api_key=…).
func scrubQuery(q string) string {
	if q == "" {
		return q
	}
	parts := strings.Split(q, "&")
	for i, p := range parts {
		k, _, ok := strings.Cut(p, "=")
		if ok && SensitiveKey(k) {
			parts[i] = k + "=" + Redacted
			continue
		}
		parts[i] = RedactString(p)
	}
	return strings.Join(parts, "&")
}

// SentryEnabled reports whether SetupSentry enabled reporting (SENTRY_DSN
// was set), so callers can skip per-request work that only Sentry needs.
func SentryEnabled() bool { return sentry.CurrentHub().Client() != nil }
