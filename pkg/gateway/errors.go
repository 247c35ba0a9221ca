package gateway

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/authpool/authpool/internal/ids"
	"github.com/authpool/authpool/pkg/backend"
	"github.com/authpool/authpool/pkg/pool"
)

// Sentinel errors of the gateway. Every error a handler meets is mapped to an
// HTTP status and an OpenAI-shaped body by classify, and nowhere else; the
// Anthropic dialect renders the same row in its own shape (problem.anthropic).
var (
	// ErrInvalidRequest: a body or field the gateway refuses. Field errors come
	// as a *RequestError naming the field.
	ErrInvalidRequest = errors.New("gateway: invalid request")
	// ErrUnauthorized: no API key, or one that is not configured.
	ErrUnauthorized = errors.New("gateway: missing or invalid API key")
	// ErrForbidden: a /debug or /admin route without the admin token (or,
	// with no ADMIN_TOKEN set, from a non-loopback client).
	ErrForbidden = errors.New("gateway: admin token required")
	// ErrNotFound: no such route.
	ErrNotFound = errors.New("gateway: not found")
	// ErrMethodNotAllowed: the route exists for other methods.
	ErrMethodNotAllowed = errors.New("gateway: method not allowed")
	// ErrBodyTooLarge: a request body over the limit (1 MiB).
	ErrBodyTooLarge = errors.New("gateway: request body too large")
	// ErrRateLimited: the client key (or IP) is over RATE_LIMIT_PER_MINUTE.
	// Returned as a *RetryError.
	ErrRateLimited = errors.New("gateway: rate limit exceeded")
	// ErrQuotaExceeded: the client key's weekly budget (API_KEYS_FILE) is
	// spent. Returned as a *RetryError whose wait ends when enough of the
	// oldest spend has left the rolling week.
	ErrQuotaExceeded = errors.New("gateway: the key's weekly budget is spent")
	// ErrModelNotAllowed: the client key's models allow-list does not
	// name the requested model.
	ErrModelNotAllowed = errors.New("gateway: model not allowed for this key")
	// ErrUnavailable: Redis did not answer. Nothing is spent on the fallback
	// while the pool cannot be consulted.
	ErrUnavailable = errors.New("gateway: pool state unavailable")
	// ErrNoFallback: the pool sent a request to the fallback but no fallback
	// backend is configured (set ANTHROPIC_API_KEY).
	ErrNoFallback = errors.New("gateway: no fallback backend configured")
	// ErrNoCounter: /v1/messages/count_tokens without an anthropic-api
	// backend to forward it to.
	ErrNoCounter = errors.New("gateway: no backend counts tokens")
	// ErrNoBackend: a subscription has no backend to run it.
	ErrNoBackend = errors.New("gateway: no backend for subscription")
)

// RequestError is a refused request field. errors.Is(err, ErrInvalidRequest)
// holds.
type RequestError struct {
	// Param is the offending field as a JSON path (messages[2].role), or "".
	Param string
	// Message says what is wrong and what is accepted.
	Message string
}

func (e *RequestError) Error() string {
	if e.Param == "" {
		return e.Message
	}
	return e.Param + ": " + e.Message
}

// Unwrap returns ErrInvalidRequest.
func (e *RequestError) Unwrap() error { return ErrInvalidRequest }

func badField(param, format string, args ...any) error {
	return &RequestError{Param: param, Message: fmt.Sprintf(format, args...)}
}

// RetryError carries the wait a client should observe (Retry-After).
type RetryError struct {
	Err   error
	After time.Duration
}

func (e *RetryError) Error() string { return e.Err.Error() }

// Unwrap returns the cause.
func (e *RetryError) Unwrap() error { return e.Err }

// apiError is the OpenAI error body.
type apiError struct {
	Error apiErrorBody `json:"error"`
}

type apiErrorBody struct {
	Message string `json:"message"`
	Type    string `json:"type"`
	Param   string `json:"param,omitempty"`
	Code    string `json:"code"`
}

// anthropicError is the Anthropic Messages API error body, the answer of
// /v1/messages.
type anthropicError struct {
	Type  string             `json:"type"` // always "error"
	Error anthropicErrorBody `json:"error"`
}

type anthropicErrorBody struct {
	Type    string `json:"type"`
	Message string `json:"message"`
}

// problem is one row of the error table, resolved for one error: the
// OpenAI body and status, and what the Anthropic dialect answers instead.
type problem struct {
	status     int
	body       apiErrorBody
	retryAfter time.Duration
	// exhausted: every subscription is spent and there is no fallback.
	// OpenAI's dialect says 503 pool_exhausted, Anthropic's 529
	// overloaded_error (which its SDKs know to retry).
	exhausted bool
}

// statusOverloaded is Anthropic's "overloaded" status.
const statusOverloaded = 529

// anthropic renders the same row in the Anthropic dialect: status and
// error type follow Anthropic's table, the message is the same fixed text.
func (p problem) anthropic() (int, anthropicError) {
	status, typ := p.status, "api_error"
	switch {
	case p.exhausted:
		status, typ = statusOverloaded, "overloaded_error"
	case p.status == http.StatusBadRequest, p.status == http.StatusMethodNotAllowed:
		typ = "invalid_request_error"
	case p.status == http.StatusUnauthorized:
		typ = "authentication_error"
	case p.status == http.StatusForbidden:
		typ = "permission_error"
	case p.status == http.StatusNotFound:
		typ = "not_found_error"
	case p.status == http.StatusRequestEntityTooLarge:
		typ = "request_too_large"
	case p.status == http.StatusTooManyRequests:
		typ = "rate_limit_error"
	case p.status == http.StatusGatewayTimeout:
		typ = "timeout_error"
	}
	msg := p.body.Message
	if p.body.Param != "" {
		msg = p.body.Param + ": " + msg
	}
	return status, anthropicError{Type: "error", Error: anthropicErrorBody{Type: typ, Message: msg}}
}

// defaultRetry is the Retry-After of a 503 when nothing better is known.
const defaultRetry = 5 * time.Second

// classify is the error table of DESIGN §7: the one place where errors meet
// HTTP statuses. Messages of server-side failures are fixed texts, so nothing
// a backend printed (or a secret it echoed) reaches a client.
func classify(err error) problem {
	var re *RequestError
	var rt *RetryError
	var ex *pool.ExhaustedError
	var le *backend.LimitError
	var qf *backend.QueueFullError
	row := func(status int, typ, code, msg string) problem {
		return problem{status: status, body: apiErrorBody{Message: msg, Type: typ, Code: code}}
	}
	switch {
	case errors.As(err, &re):
		p := row(http.StatusBadRequest, "invalid_request_error", "invalid_request", re.Message)
		p.body.Param = re.Param
		return p
	case errors.Is(err, ErrInvalidRequest):
		return row(http.StatusBadRequest, "invalid_request_error", "invalid_request", err.Error())
	case errors.Is(err, pool.ErrInvalidSession):
		p := row(http.StatusBadRequest, "invalid_request_error", "invalid_session_id",
			"session_id must match "+ids.Key.String())
		p.body.Param = "session_id"
		return p
	case errors.Is(err, pool.ErrInvalidPriority):
		p := row(http.StatusBadRequest, "invalid_request_error", "invalid_priority",
			"priority must be one of high, normal, low")
		p.body.Param = "priority"
		return p
	case errors.Is(err, backend.ErrInvalidRequest):
		return row(http.StatusBadRequest, "invalid_request_error", "invalid_request",
			"the backend refused the request as given")
	case errors.Is(err, ErrUnauthorized):
		return row(http.StatusUnauthorized, "authentication_error", "invalid_api_key",
			"missing or invalid API key (send Authorization: Bearer <key> or X-API-Key)")
	case errors.Is(err, ErrForbidden):
		return row(http.StatusForbidden, "permission_error", "admin_required",
			"the /debug and /admin endpoints need the admin token (Authorization: Bearer <ADMIN_TOKEN>), or a loopback client when no ADMIN_TOKEN is set")
	case errors.Is(err, ErrModelNotAllowed):
		p := row(http.StatusForbidden, "permission_error", "model_not_allowed", "this API key may not use this model")
		p.body.Param = "model"
		return p
	case errors.Is(err, ErrQuotaExceeded):
		p := row(http.StatusTooManyRequests, "quota_exceeded", "quota_exceeded", "this API key's weekly budget is spent")
		if errors.As(err, &rt) {
			p.retryAfter = rt.After
			p.body.Message += "; it resets at " + time.Now().Add(rt.After).UTC().Format(time.RFC3339)
		}
		return p
	case errors.Is(err, pool.ErrSessionNotFound):
		return row(http.StatusNotFound, "not_found_error", "session_not_found", "no such session")
	case errors.Is(err, ErrNoCounter):
		return row(http.StatusNotFound, "not_found_error", "count_tokens_unavailable",
			"count_tokens is forwarded to the anthropic-api backend and none is configured (set ANTHROPIC_API_KEY); the CLI cannot count tokens")
	case errors.Is(err, pool.ErrSubscriptionNotFound):
		return row(http.StatusNotFound, "not_found_error", "subscription_not_found", "no such subscription (or the config removed it)")
	case errors.Is(err, pool.ErrRefused):
		return row(http.StatusConflict, "conflict_error", "refused", err.Error())
	case errors.Is(err, ErrNotFound):
		return row(http.StatusNotFound, "not_found_error", "not_found", "no such route")
	case errors.Is(err, ErrMethodNotAllowed):
		return row(http.StatusMethodNotAllowed, "invalid_request_error", "method_not_allowed", "method not allowed")
	case errors.Is(err, ErrBodyTooLarge):
		return row(http.StatusRequestEntityTooLarge, "invalid_request_error", "request_too_large",
			"request body over 1 MiB")
	case errors.Is(err, ErrRateLimited):
		p := row(http.StatusTooManyRequests, "rate_limit_error", "rate_limit_exceeded", "rate limit exceeded")
		if errors.As(err, &rt) {
			p.retryAfter = rt.After
		}
		return p
	case errors.As(err, &qf):
		p := row(http.StatusTooManyRequests, "rate_limit_error", "backend_queue_full",
			"every backend slot is busy and the queue is full")
		p.retryAfter = qf.RetryAfter
		return p
	case errors.Is(err, backend.ErrQueueFull):
		return row(http.StatusTooManyRequests, "rate_limit_error", "backend_queue_full",
			"every backend slot is busy and the queue is full")
	case errors.Is(err, backend.ErrLimited):
		p := row(http.StatusTooManyRequests, "rate_limit_error", "usage_limit_reached",
			"the upstream usage limit is reached")
		if errors.As(err, &le) && !le.ResetAt.IsZero() {
			p.retryAfter = time.Until(le.ResetAt)
		}
		return p
	case errors.Is(err, backend.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return row(http.StatusGatewayTimeout, "timeout_error", "timeout", "the backend did not answer in time")
	case errors.Is(err, backend.ErrAuth):
		return row(http.StatusBadGateway, "backend_error", "backend_auth_failed", "the backend refused its credentials")
	case errors.Is(err, backend.ErrSessionNotFound), errors.Is(err, backend.ErrBackend):
		return row(http.StatusBadGateway, "backend_error", "backend_failed", "the backend failed or gave bad output")
	case errors.As(err, &ex):
		p := row(http.StatusServiceUnavailable, "pool_exhausted", "pool_exhausted",
			"every subscription is exhausted and fallback is off ("+ex.Reason+")")
		p.retryAfter, p.exhausted = ex.RetryAfter, true
		return p
	case errors.Is(err, ErrNoFallback):
		p := row(http.StatusServiceUnavailable, "pool_exhausted", "pool_exhausted",
			"every subscription is exhausted and no fallback backend is configured")
		p.exhausted = true
		if errors.As(err, &rt) {
			p.retryAfter = rt.After
		}
		return p
	case errors.Is(err, ErrUnavailable), errors.Is(err, pool.ErrUnknownSubscription), errors.Is(err, ErrNoBackend):
		return row(http.StatusServiceUnavailable, "service_unavailable", "service_unavailable",
			"the pool state is unavailable; try again shortly")
	case errors.Is(err, context.Canceled), errors.Is(err, backend.ErrCanceled):
		// The client went away; nobody reads this.
		return row(499, "client_closed_request", "client_closed_request", "client closed the request")
	}
	return row(http.StatusInternalServerError, "internal_error", "internal_error", "internal error")
}

// retryAfterSeconds renders a wait as whole seconds, at least 1.
func retryAfterSeconds(d time.Duration) string {
	s := int64(math.Ceil(d.Seconds()))
	if s < 1 {
		s = 1
	}
	return strconv.FormatInt(s, 10)
}

// anthropicDialect reports whether the request speaks Anthropic's dialect:
// every route under /v1/messages answers errors in its shape, the refusals
// of the middleware (key, body size, rate limit) included.
func anthropicDialect(c *gin.Context) bool {
	p := c.Request.URL.Path
	return p == "/v1/messages" || strings.HasPrefix(p, "/v1/messages/")
}

// writeError answers c with the table's row for err, in the request's
// dialect, and stops the chain.
func writeError(c *gin.Context, err error) {
	p := classify(err)
	c.Set(ctxError, err)
	if p.retryAfter > 0 || p.status == http.StatusServiceUnavailable || p.status == http.StatusTooManyRequests {
		ra := p.retryAfter
		if ra <= 0 {
			ra = defaultRetry
		}
		c.Header("Retry-After", retryAfterSeconds(ra))
	}
	if anthropicDialect(c) {
		status, body := p.anthropic()
		c.AbortWithStatusJSON(status, body)
		return
	}
	c.AbortWithStatusJSON(p.status, apiError{Error: p.body})
}
