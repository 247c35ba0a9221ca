package backend

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/authpool/authpool/internal/secret"
)

// Sentinel errors of Run; the gateway maps each to one HTTP status.
var (
	// ErrLimited means the subscription (or the API account) hit a usage
	// limit. Returned as a *LimitError.
	ErrLimited = errors.New("backend: usage limit reached")
	// ErrAuth means the credentials were refused: the CLI is logged out, its
	// OAuth token expired, or the API key is wrong.
	ErrAuth = errors.New("backend: authentication failed")
	// ErrSessionNotFound means the CLI does not hold the session given to
	// --resume (it ran on another replica's config dir): run the turn again
	// without it, with the full transcript.
	ErrSessionNotFound = errors.New("backend: cli session not found")
	// ErrTimeout means the turn ran longer than the backend's timeout.
	ErrTimeout = errors.New("backend: timed out")
	// ErrQueueFull means every slot is busy and the queue is full. Returned
	// as a *QueueFullError.
	ErrQueueFull = errors.New("backend: queue full")
	// ErrBackend means the backend failed otherwise: crash, unparsable
	// output, a non-zero exit or a server error.
	ErrBackend = errors.New("backend: backend failed")
	// ErrCanceled means the caller's context ended before the turn did.
	ErrCanceled = errors.New("backend: canceled")
	// ErrInvalidRequest means the request cannot be run as given (a bad
	// resume id, an empty prompt, a model name of the wrong shape, …).
	ErrInvalidRequest = errors.New("backend: invalid request")
	// ErrSandbox means the CLI ran with more than a text engine needs: its
	// init line listed tools or MCP servers (or it printed text before
	// any init line). The run was killed and nothing of it was relayed.
	// Such an error also wraps ErrBackend.
	ErrSandbox = errors.New("backend: the CLI mounted tools")
)

// LimitError is a usage-limit answer. errors.Is(err, ErrLimited) holds.
type LimitError struct {
	// ResetAt is when the limit resets, as the provider said; zero when it
	// did not say (the caller then uses the end of the current block).
	ResetAt time.Time
	// Message is the provider's message, clipped.
	Message string
	// Window is the usage window that was spent (five_hour, seven_day), when
	// the CLI said so in a rate_limit_event.
	Window string
	// Result is what the failed turn reported (cost, tokens), to be settled
	// like any other turn; nil when it printed no result.
	Result *Result
}

// Error says that the limit was reached and when it resets.
func (e *LimitError) Error() string {
	s := ErrLimited.Error()
	if !e.ResetAt.IsZero() {
		s += " (resets " + e.ResetAt.UTC().Format(time.RFC3339) + ")"
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// Unwrap returns ErrLimited.
func (e *LimitError) Unwrap() error { return ErrLimited }

// QueueFullError is a refusal for lack of capacity. errors.Is(err,
// ErrQueueFull) holds.
type QueueFullError struct {
	// Backend is the name of the full backend.
	Backend string
	// RetryAfter is a suggested wait before trying again.
	RetryAfter time.Duration
}

// Error names the backend and the suggested wait.
func (e *QueueFullError) Error() string {
	return fmt.Sprintf("%s: %s (retry after %s)", ErrQueueFull, e.Backend, e.RetryAfter)
}

// Unwrap returns ErrQueueFull.
func (e *QueueFullError) Unwrap() error { return ErrQueueFull }

// maxExcerpt bounds how much of a process's or server's own words goes into
// an error.
const maxExcerpt = 200

// secretPattern matches Anthropic keys and tokens (sk-ant-api…, sk-ant-oat…)
// so that one echoed by a tool never reaches an error.
var secretPattern = secret.AnthropicKey

// excerpt makes s fit for an error message: secrets removed, whitespace
// folded, clipped to maxExcerpt bytes on a rune boundary.
func excerpt(s string, secrets ...string) string {
	for _, sec := range secrets {
		if len(sec) >= 4 {
			s = strings.ReplaceAll(s, sec, "[redacted]")
		}
	}
	s = secretPattern.ReplaceAllString(s, "[redacted]")
	s = strings.ToValidUTF8(s, "?")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	s = strings.Join(strings.Fields(s), " ")
	if len(s) <= maxExcerpt {
		return s
	}
	cut := maxExcerpt
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
