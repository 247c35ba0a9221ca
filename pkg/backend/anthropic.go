package backend

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Defaults of APIOptions.
const (
	DefaultAPIName          = "anthropic-api"
	DefaultAnthropicBaseURL = "https://api.anthropic.com"
	DefaultAPIModel         = "claude-sonnet-4-5"
	DefaultMaxTokens        = 4096
	DefaultAPITimeout       = 10 * time.Minute
	anthropicVersion        = "2023-06-01"
)

// modelAliases maps the CLI's aliases, which the gateway accepts, to API
// model names.
var modelAliases = map[string]string{
	"opus":   "claude-opus-4-1",
	"sonnet": "claude-sonnet-4-5",
	"haiku":  "claude-haiku-4-5",
}

// APIOptions configures an anthropic-api backend.
type APIOptions struct {
	// Name identifies the backend. Default "anthropic-api".
	Name string
	// BaseURL is the API's base URL: https://, or http:// to a loopback host
	// (tests, a local proxy). Default https://api.anthropic.com.
	BaseURL string
	// APIKey is sent as x-api-key. Required; it never appears in errors.
	APIKey string
	// Model answers requests that name none. Default claude-sonnet-4-5.
	Model string
	// MaxTokens caps answers of requests that set none. Default 4096.
	MaxTokens int
	// Timeout bounds one turn, queueing excluded. Default 10 minutes.
	Timeout time.Duration
	// MaxConcurrent caps the requests in flight. Default 10.
	MaxConcurrent int
	// MaxQueue caps the requests waiting; 0 means 4 × MaxConcurrent,
	// negative means none.
	MaxQueue int
	// HTTPClient sends the requests. Default: a client without a timeout of
	// its own (Timeout bounds each turn, streams included). Redirects are
	// never followed, so that the API key goes nowhere else.
	HTTPClient *http.Client
}

// AnthropicAPI runs turns through the Anthropic Messages API: the fallback
// when no subscription can serve.
type AnthropicAPI struct {
	opts     APIOptions
	endpoint string
	gate     *gate
}

var _ Backend = (*AnthropicAPI)(nil)

// NewAnthropicAPI returns an anthropic-api backend. Options out of range
// yield an error wrapping ErrInvalidConfig.
func NewAnthropicAPI(o APIOptions) (*AnthropicAPI, error) {
	if o.Name == "" {
		o.Name = DefaultAPIName
	}
	if o.BaseURL == "" {
		o.BaseURL = DefaultAnthropicBaseURL
	}
	if o.Model == "" {
		o.Model = DefaultAPIModel
	}
	if o.MaxTokens == 0 {
		o.MaxTokens = DefaultMaxTokens
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultAPITimeout
	}
	if o.MaxConcurrent == 0 {
		o.MaxConcurrent = DefaultMaxConcurrent
	}
	// A redirect would carry x-api-key to wherever it points (Go strips
	// only its own credential headers): follow none, on a copy of the
	// caller's client.
	client := http.Client{}
	if o.HTTPClient != nil {
		client = *o.HTTPClient
	}
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	o.HTTPClient = &client
	var ps []string
	if !namePattern.MatchString(o.Name) {
		ps = append(ps, "name: want 1 to 64 of A-Z a-z 0-9 _ . -")
	}
	if msg := baseURLProblem(o.BaseURL); msg != "" {
		ps = append(ps, "baseUrl: "+msg)
	}
	if o.APIKey == "" || strings.ContainsAny(o.APIKey, "\x00\r\n") {
		ps = append(ps, "apiKey: required (ANTHROPIC_API_KEY), one line")
	}
	if !modelPattern.MatchString(o.Model) {
		ps = append(ps, "model: want an alias or a claude-* name")
	}
	if o.MaxTokens < 1 || o.Timeout < 0 {
		ps = append(ps, "maxTokens ≥ 1 and timeout ≥ 0 wanted")
	}
	queue, qps := queueSize(o.MaxConcurrent, o.MaxQueue)
	ps = append(ps, qps...)
	if len(ps) > 0 {
		return nil, fmt.Errorf("%w: anthropic-api %s: %s", ErrInvalidConfig, o.Name, strings.Join(ps, "; "))
	}
	return &AnthropicAPI{
		opts:     o,
		endpoint: strings.TrimRight(o.BaseURL, "/") + "/v1/messages",
		gate:     newGate(o.Name, o.MaxConcurrent, queue),
	}, nil
}

// baseURLProblem checks a base URL without quoting it.
func baseURLProblem(raw string) string {
	u, err := url.Parse(raw)
	switch {
	case err != nil || u.Host == "" || u.Opaque != "":
		return "want an https:// URL with a host"
	case u.User != nil || u.RawQuery != "" || u.Fragment != "":
		return "want no user info, query or fragment"
	case u.Scheme == "https":
		return ""
	case u.Scheme == "http" && isLoopback(u.Hostname()):
		return ""
	}
	return "want https:// (http:// only to a loopback host)"
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Name returns the backend's name.
func (a *AnthropicAPI) Name() string { return a.opts.Name }

// Load reports the requests in flight and waiting.
func (a *AnthropicAPI) Load() Load { return a.gate.load() }

// apiRequest is the body of POST /v1/messages.
type apiRequest struct {
	Model     string    `json:"model"`
	MaxTokens int       `json:"max_tokens"`
	System    string    `json:"system,omitempty"`
	Messages  []Message `json:"messages"`
	Stream    bool      `json:"stream,omitempty"`
}

// apiResponse is a message, as answered without streaming.
type apiResponse struct {
	Model      string `json:"model"`
	StopReason string `json:"stop_reason"`
	Content    []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	} `json:"content"`
	Usage Usage `json:"usage"`
}

// apiError is the API's error body, also the data of a stream `error` event.
type apiError struct {
	Error struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	} `json:"error"`
}

// Run sends req.Messages (or req.Prompt as the only user message) with
// req.SystemPrompt; tgt is ignored. The cost is estimated from list prices.
func (a *AnthropicAPI) Run(ctx context.Context, _ Target, req Request, onDelta func(text string)) (*Result, error) {
	body, err := a.body(req)
	if err != nil {
		return nil, err
	}
	release, err := a.gate.acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	runCtx, cancel := context.WithTimeout(ctx, a.opts.Timeout)
	defer cancel()

	start := time.Now()
	resp, err := a.post(runCtx, a.endpoint, body)
	if err != nil {
		return nil, a.transportErr(ctx, runCtx, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, a.statusErr(resp)
	}
	var res *Result
	if req.Stream {
		res, err = a.readStream(resp.Body, onDelta, nil)
	} else {
		res, err = a.readMessage(resp.Body)
	}
	if err != nil {
		if runCtx.Err() != nil {
			return nil, a.transportErr(ctx, runCtx, err)
		}
		return nil, err
	}
	a.account(res, start)
	return res, nil
}

// body validates req and encodes the request body.
func (a *AnthropicAPI) body(req Request) ([]byte, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidRequest, fmt.Sprintf(format, args...))
	}
	model := req.Model
	if model == "" {
		model = a.opts.Model
	}
	if full, ok := modelAliases[model]; ok {
		model = full
	}
	if !modelPattern.MatchString(model) {
		return nil, bad("model name %q: want an alias or a claude-* name", excerpt(model))
	}
	maxTokens := req.MaxTokens
	if maxTokens == 0 {
		maxTokens = a.opts.MaxTokens
	}
	if maxTokens < 0 {
		return nil, bad("max tokens %d: want ≥ 1", maxTokens)
	}
	msgs := req.Messages
	if len(msgs) == 0 {
		msgs = []Message{{Role: "user", Content: req.Prompt}}
	}
	for i, m := range msgs {
		if m.Role != "user" && m.Role != "assistant" {
			return nil, bad("messages[%d].role: want user or assistant", i)
		}
		if strings.TrimSpace(m.Content) == "" {
			return nil, bad("messages[%d].content is empty", i)
		}
	}
	return json.Marshal(apiRequest{Model: model, MaxTokens: maxTokens, System: req.SystemPrompt,
		Messages: msgs, Stream: req.Stream})
}

// maxResponse bounds a Messages API response body.
const maxResponse = 64 << 20

func (a *AnthropicAPI) readMessage(r io.Reader) (*Result, error) {
	var m apiResponse
	if err := json.NewDecoder(io.LimitReader(r, maxResponse)).Decode(&m); err != nil {
		return nil, fmt.Errorf("%w: %s: bad response: %s", ErrBackend, a.opts.Name, excerpt(err.Error()))
	}
	var text strings.Builder
	for _, c := range m.Content {
		if c.Type == "text" {
			text.WriteString(c.Text)
		}
	}
	if m.Usage.negative() {
		return nil, fmt.Errorf("%w: %s: negative usage", ErrBackend, a.opts.Name)
	}
	return &Result{Text: text.String(), Model: m.Model, StopReason: m.StopReason, Usage: m.Usage}, nil
}

// transportErr classifies a failure to talk to the API.
func (a *AnthropicAPI) transportErr(ctx, runCtx context.Context, err error) error {
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("%w: %s: %w", ErrCanceled, a.opts.Name, context.Cause(ctx))
	case runCtx.Err() != nil:
		return fmt.Errorf("%w: %s after %s", ErrTimeout, a.opts.Name, a.opts.Timeout)
	}
	return fmt.Errorf("%w: %s: %s", ErrBackend, a.opts.Name, excerpt(err.Error(), a.opts.APIKey))
}

// statusErr classifies a non-200 answer.
func (a *AnthropicAPI) statusErr(resp *http.Response) error {
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var e apiError
	msg := ""
	if json.Unmarshal(raw, &e) == nil && e.Error.Message != "" {
		msg = excerpt(e.Error.Type+": "+e.Error.Message, a.opts.APIKey)
	} else {
		msg = excerpt(string(raw), a.opts.APIKey)
	}
	switch code := resp.StatusCode; {
	case code == http.StatusTooManyRequests:
		return &LimitError{ResetAt: retryAfter(resp.Header.Get("retry-after"), time.Now()), Message: msg}
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		return fmt.Errorf("%w: %s: HTTP %d: %s", ErrAuth, a.opts.Name, code, msg)
	case code == http.StatusBadRequest || code == http.StatusRequestEntityTooLarge:
		return fmt.Errorf("%w: %s: HTTP %d: %s", ErrInvalidRequest, a.opts.Name, code, msg)
	default:
		return fmt.Errorf("%w: %s: HTTP %d: %s", ErrBackend, a.opts.Name, code, msg)
	}
}

// retryAfter reads a Retry-After value (seconds or an HTTP date); zero when
// absent or unreadable.
func retryAfter(v string, now time.Time) time.Time {
	v = strings.TrimSpace(v)
	if v == "" {
		return time.Time{}
	}
	if s, err := strconv.ParseFloat(v, 64); err == nil && s >= 0 && s < 1e7 {
		return now.Add(time.Duration(s * float64(time.Second)))
	}
	if t, err := http.ParseTime(v); err == nil {
		return t
	}
	return time.Time{}
}
