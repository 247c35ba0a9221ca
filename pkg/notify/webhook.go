package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Webhook request headers.
const (
	// SignatureHeader carries "sha256=<hex HMAC-SHA256 of the body>" when a
	// WEBHOOK_SECRET is set.
	SignatureHeader = "X-AuthPool-Signature"
	userAgent       = "authpool"
	signaturePrefix = "sha256="
	maxRedirects    = 3
)

var (
	// ErrInsecureWebhook reports a webhook URL that is neither https nor, with
	// allowInsecureWebhooks, http to a loopback host.
	ErrInsecureWebhook = errors.New("notify: webhook URL must be https (http only to a loopback host with allowInsecureWebhooks)")
	// ErrRejected reports a webhook answer that retrying cannot change (a 4xx
	// other than 408 and 429); the event goes to the dead stream at once.
	ErrRejected = errors.New("notify: webhook rejected the event")
)

// Sign returns the X-AuthPool-Signature value of body: "sha256=" and the hex
// HMAC-SHA256 of the exact body bytes keyed with secret.
func Sign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return signaturePrefix + hex.EncodeToString(m.Sum(nil))
}

// Verify reports whether header is the signature of body under secret,
// comparing in constant time. An empty secret verifies nothing.
func Verify(secret, body []byte, header string) bool {
	if len(secret) == 0 {
		return false
	}
	return hmac.Equal([]byte(Sign(secret, body)), []byte(header))
}

// checkWebhookURL parses raw and enforces the transport rule. Errors never
// contain the URL: webhook URLs often embed a token in the path.
func checkWebhookURL(raw string, allowInsecure bool) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.Hostname() == "" {
		return nil, fmt.Errorf("%w: not an absolute URL", ErrInsecureWebhook)
	}
	switch strings.ToLower(u.Scheme) {
	case "https":
		return u, nil
	case "http":
		if allowInsecure && loopbackHost(u.Hostname()) {
			return u, nil
		}
	}
	return nil, fmt.Errorf("%w: got %s://%s", ErrInsecureWebhook, u.Scheme, u.Host)
}

func loopbackHost(h string) bool {
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// redact is the part of a URL safe to show: scheme and host.
func redact(u *url.URL) string { return u.Scheme + "://" + u.Host }

// sendError is one failed webhook attempt.
type sendError struct {
	retryAfter time.Duration // from a Retry-After header, 0 if none
	err        error
}

func (e *sendError) Error() string { return e.err.Error() }
func (e *sendError) Unwrap() error { return e.err }

// webhook posts events to one URL.
type webhook struct {
	rawURL        string
	allowInsecure bool
	secret        []byte
	client        *http.Client
	timeout       time.Duration
}

func newWebhook(rawURL string, allowInsecure bool, secret []byte, base *http.Client, timeout time.Duration) *webhook {
	w := &webhook{rawURL: rawURL, allowInsecure: allowInsecure, secret: secret, timeout: timeout}
	c := *base // a copy: the caller's client keeps its own redirect policy
	c.CheckRedirect = w.checkRedirect
	w.client = &c
	return w
}

// checkRedirect follows a redirect only to the same scheme and host, and
// never away from the transport rule.
func (w *webhook) checkRedirect(req *http.Request, via []*http.Request) error {
	first := via[0].URL
	if len(via) > maxRedirects || !strings.EqualFold(req.URL.Host, first.Host) ||
		!strings.EqualFold(req.URL.Scheme, first.Scheme) {
		return http.ErrUseLastResponse
	}
	if _, err := checkWebhookURL(req.URL.String(), w.allowInsecure); err != nil {
		return http.ErrUseLastResponse
	}
	return nil
}

// send makes one delivery attempt. A nil error means the receiver answered
// 2xx. Errors wrapping ErrRejected or ErrInsecureWebhook are permanent; a
// *sendError may carry the receiver's Retry-After.
func (w *webhook) send(ctx context.Context, e Event) error {
	u, err := checkWebhookURL(w.rawURL, w.allowInsecure)
	if err != nil {
		return err
	}
	body, err := json.Marshal(e.Payload())
	if err != nil {
		return fmt.Errorf("notify: encode webhook payload: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, w.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("notify: webhook request to %s: %w", redact(u), err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", userAgent)
	if len(w.secret) > 0 {
		req.Header.Set(SignatureHeader, Sign(w.secret, body))
	}
	resp, err := w.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // *url.Error would print the whole URL
		}
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return &sendError{err: fmt.Errorf("notify: webhook POST %s: no answer within %s: %w", redact(u), w.timeout, err)}
		}
		return &sendError{err: fmt.Errorf("notify: webhook POST %s: %w", redact(u), err)}
	}
	// Drain a little so the connection can be reused; the body is not ours to keep.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	return classify(resp, redact(u))
}

// classify maps a webhook answer to nil (2xx), a permanent ErrRejected (4xx
// other than 408/429) or a retryable *sendError.
func classify(resp *http.Response, where string) error {
	code := resp.StatusCode
	switch {
	case code >= 200 && code < 300:
		return nil
	case code >= 400 && code < 500 && code != http.StatusRequestTimeout && code != http.StatusTooManyRequests:
		return fmt.Errorf("%w: POST %s: HTTP %d", ErrRejected, where, code)
	case code >= 300 && code < 400:
		return &sendError{err: fmt.Errorf("notify: webhook POST %s: HTTP %d (redirect not followed: another host or scheme)", where, code)}
	}
	return &sendError{
		retryAfter: parseRetryAfter(resp.Header.Get("Retry-After")),
		err:        fmt.Errorf("notify: webhook POST %s: HTTP %d", where, code),
	}
}

// parseRetryAfter reads the delta-seconds form; the date form is rare from
// webhook receivers and the back-off covers it.
func parseRetryAfter(v string) time.Duration {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n <= 0 {
		return 0
	}
	return time.Duration(n) * time.Second
}

// permanent reports whether retrying err cannot help.
func permanent(err error) bool {
	return errors.Is(err, ErrRejected) || errors.Is(err, ErrInsecureWebhook) || errors.Is(err, ErrMalformedEvent)
}
