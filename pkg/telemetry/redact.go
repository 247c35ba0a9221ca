package telemetry

import (
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/authpool/authpool/internal/secret"
)

// Redacted replaces every secret the logger or the Sentry scrubber removes.
const Redacted = "[REDACTED]"

// sensitiveKeyParts mark an attribute key (case-insensitive, "-" and "_"
// ignored) whose value is a secret: API keys, OAuth tokens, ADMIN_TOKEN,
// WEBHOOK_SECRET, SENTRY_DSN, Redis passwords, cookies.
var sensitiveKeyParts = []string{"token", "secret", "password", "passwd", "authorization", "apikey", "dsn", "cookie"}

// SensitiveKey reports whether a log attribute, header or field named key
// holds a secret.
func SensitiveKey(key string) bool {
	if v, ok := sensitiveKeys.Load(key); ok {
		return v.(bool)
	}
	k := keySeparators.Replace(strings.ToLower(key))
	sensitive := false
	for _, p := range sensitiveKeyParts {
		if strings.Contains(k, p) {
			sensitive = true
			break
		}
	}
	// Keys are the code's attribute and field names, a small set; the
	// bound keeps names that come from elsewhere from growing it.
	if len(key) <= 64 && sensitiveKeyCount.Add(1) <= maxSensitiveKeys {
		sensitiveKeys.Store(key, sensitive)
	}
	return sensitive
}

var (
	keySeparators = strings.NewReplacer("-", "", "_", "")
	// sensitiveKeys caches SensitiveKey: a log line asks it for every
	// attribute.
	sensitiveKeys     sync.Map // key → bool
	sensitiveKeyCount atomic.Int64
)

const maxSensitiveKeys = 4096

var (
	// bearerPattern is a bearer credential in a string ("Authorization:
	// Bearer …").
	bearerPattern = regexp.MustCompile(`(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{8,}`)
	// anthropicKeyPattern is an Anthropic API key or a `claude setup-token`
	// OAuth token (sk-ant-api03-…, sk-ant-oat01-…).
	anthropicKeyPattern = secret.AnthropicKey
	// urlPasswordPattern is the password of a URL's user info
	// (redis://user:secret@host).
	urlPasswordPattern = regexp.MustCompile(`(://[^/:@\s]*:)[^@\s/]+@`)
)

// RedactString removes credentials that a string carries whatever its name:
// bearer credentials, Anthropic keys and OAuth tokens, passwords in
// URLs.
func RedactString(s string) string {
	if !strings.ContainsAny(s, "sSbB:") { // fast path: none of the patterns can match
		return s
	}
	// Each pattern only where its fixed part is: most strings (ids, routes,
	// messages) hold none, and a regexp per string costs a log line dearly.
	if containsFold(s, "bearer") {
		s = bearerPattern.ReplaceAllStringFunc(s, func(m string) string {
			scheme, _, _ := strings.Cut(m, " ")
			return scheme + " " + Redacted
		})
	}
	if strings.Contains(s, "sk-ant-") {
		s = anthropicKeyPattern.ReplaceAllString(s, Redacted)
	}
	if strings.Contains(s, "://") && strings.Contains(s, "@") {
		s = urlPasswordPattern.ReplaceAllString(s, "${1}"+Redacted+"@")
	}
	return s
}

// containsFold reports whether s holds sub (ASCII lower case) in any case.
func containsFold(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		j := 0
		for ; j < len(sub); j++ {
			c := s[i+j]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != sub[j] {
				break
			}
		}
		if j == len(sub) {
			return true
		}
	}
	return false
}

// redactAttr returns a with secrets removed: the whole value when the key is
// sensitive, else the credentials found in its strings.
func redactAttr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	if SensitiveKey(a.Key) && !isTokenCount(a.Key, v) {
		if v.Kind() == slog.KindGroup && len(v.Group()) == 0 {
			return slog.Attr{Key: a.Key, Value: v}
		}
		return slog.String(a.Key, Redacted)
	}
	return slog.Attr{Key: a.Key, Value: redactValue(v)}
}

// isTokenCount keeps usage counters such as tokens=1234 or inputTokens=12:
// a number is never a credential.
func isTokenCount(key string, v slog.Value) bool {
	if !strings.Contains(strings.ToLower(key), "token") {
		return false
	}
	switch v.Kind() {
	case slog.KindInt64, slog.KindUint64, slog.KindFloat64:
		return true
	}
	return false
}

func redactValue(v slog.Value) slog.Value {
	switch v.Kind() {
	case slog.KindString:
		return slog.StringValue(RedactString(v.String()))
	case slog.KindGroup:
		return slog.GroupValue(redactAttrs(v.Group())...)
	case slog.KindAny:
		return slog.AnyValue(redactAny(v.Any()))
	}
	return v
}

func redactAttrs(as []slog.Attr) []slog.Attr {
	out := make([]slog.Attr, len(as))
	for i, a := range as {
		out[i] = redactAttr(a)
	}
	return out
}

// redactAny handles the values handlers print from inside: errors (as their
// message), string maps and slices, HTTP headers and URL query values. Other types
// are written as they are; log secrets under a sensitive key instead.
func redactAny(x any) any {
	switch t := x.(type) {
	case error:
		return RedactString(t.Error())
	case map[string]any:
		m := make(map[string]any, len(t))
		for k, v := range t {
			if SensitiveKey(k) {
				if _, isNum := v.(float64); isNum && strings.Contains(strings.ToLower(k), "token") {
					m[k] = v
					continue
				}
				m[k] = Redacted
				continue
			}
			m[k] = redactAny(v)
		}
		return m
	case map[string]string:
		m := make(map[string]string, len(t))
		for k, v := range t {
			if SensitiveKey(k) {
				m[k] = Redacted
				continue
			}
			m[k] = RedactString(v)
		}
		return m
	case http.Header:
		return http.Header(redactMulti(t))
	case url.Values:
		return url.Values(redactMulti(t))
	case map[string][]string:
		return redactMulti(t)
	case []any:
		s := make([]any, len(t))
		for i, v := range t {
			s[i] = redactAny(v)
		}
		return s
	case []string:
		s := make([]string, len(t))
		for i, v := range t {
			s[i] = RedactString(v)
		}
		return s
	case string:
		return RedactString(t)
	}
	return x
}

// redactMulti redacts a header or query map: whole values under sensitive
// names (Authorization, X-Api-Key, Cookie, …), credentials in the others.
func redactMulti(m map[string][]string) map[string][]string {
	out := make(map[string][]string, len(m))
	for k, vs := range m {
		r := make([]string, len(vs))
		for i, v := range vs {
			if SensitiveKey(k) {
				r[i] = Redacted
				continue
			}
			r[i] = RedactString(v)
		}
		out[k] = r
	}
	return out
}
