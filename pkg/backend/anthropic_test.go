package backend

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

const testAPIKey = "sk-ant-api03-test-key-never-in-errors"

// messagesServer speaks POST /v1/messages; answer writes the reply to a
// request that passed the header checks. It records the last body.
func messagesServer(t *testing.T, answer func(w http.ResponseWriter, body apiRequest)) (*httptest.Server, *apiRequest) {
	t.Helper()
	var last apiRequest
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method != http.MethodPost || r.URL.Path != "/v1/messages":
			http.Error(w, "not found", http.StatusNotFound)
			return
		case r.Header.Get("x-api-key") != testAPIKey:
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}`)
			return
		case r.Header.Get("anthropic-version") != "2023-06-01" || r.Header.Get("content-type") != "application/json":
			http.Error(w, "bad headers", http.StatusBadRequest)
			return
		}
		if err := json.NewDecoder(r.Body).Decode(&last); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		answer(w, last)
	}))
	t.Cleanup(srv.Close)
	return srv, &last
}

func newAPI(t *testing.T, srv *httptest.Server, o APIOptions) *AnthropicAPI {
	t.Helper()
	o.BaseURL = srv.URL
	if o.APIKey == "" {
		o.APIKey = testAPIKey
	}
	a, err := NewAnthropicAPI(o)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func sse(w http.ResponseWriter, event, data string) {
	fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, data)
	w.(http.Flusher).Flush()
}

func TestAnthropicAPIMessage(t *testing.T) {
	srv, got := messagesServer(t, func(w http.ResponseWriter, _ apiRequest) {
		io.WriteString(w, `{"id":"msg_1","type":"message","role":"assistant","model":"claude-haiku-4-5",
			"content":[{"type":"text","text":"Hello"},{"type":"text","text":" there"}],"stop_reason":"end_turn",
			"usage":{"input_tokens":100,"output_tokens":50,"cache_creation_input_tokens":200,"cache_read_input_tokens":1000}}`)
	})
	a := newAPI(t, srv, APIOptions{})
	msgs := []Message{{Role: "user", Content: "hi"}, {Role: "assistant", Content: "hello"}, {Role: "user", Content: "more"}}
	res, err := a.Run(context.Background(), Target{}, Request{Model: "haiku", SystemPrompt: "Be brief.", Messages: msgs}, nil)
	if err != nil {
		t.Fatal(err)
	}
	wantCost := ((100+1.25*200+0.1*1000)*1 + 50*5) / 1e6 // haiku 4.5: $1 in, $5 out per MTok
	if res.Text != "Hello there" || res.StopReason != "end_turn" || res.Model != "claude-haiku-4-5" || res.NumTurns != 1 ||
		res.Usage != (Usage{InputTokens: 100, OutputTokens: 50, CacheCreationInputTokens: 200, CacheReadInputTokens: 1000}) ||
		math.Abs(res.CostUSD-wantCost) > 1e-12 || res.ModelUsage["claude-haiku-4-5"].CostUSD != res.CostUSD {
		t.Errorf("result = %+v, want cost %v", res, wantCost)
	}
	if got.Model != "claude-haiku-4-5" || got.MaxTokens != DefaultMaxTokens || got.System != "Be brief." ||
		len(got.Messages) != 3 || got.Messages[2] != msgs[2] || got.Stream {
		t.Errorf("request body = %+v", *got)
	}

	// A prompt alone is one user message; the backend's model is the default.
	if _, err := a.Run(context.Background(), Target{}, Request{Prompt: "just this", MaxTokens: 10}, nil); err != nil {
		t.Fatal(err)
	}
	if got.Model != DefaultAPIModel || got.MaxTokens != 10 || len(got.Messages) != 1 || got.Messages[0] != (Message{"user", "just this"}) {
		t.Errorf("request body = %+v", *got)
	}
}

func TestAnthropicAPIStream(t *testing.T) {
	release := make(chan struct{})
	srv, got := messagesServer(t, func(w http.ResponseWriter, _ apiRequest) {
		w.Header().Set("content-type", "text/event-stream")
		sse(w, "message_start", `{"type":"message_start","message":{"model":"claude-sonnet-4-5","usage":{"input_tokens":25,"output_tokens":1,"cache_read_input_tokens":7}}}`)
		sse(w, "content_block_start", `{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`)
		sse(w, "ping", `{"type":"ping"}`)
		sse(w, "content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hel"}}`)
		<-release // the rest only once the client has seen the first delta
		sse(w, "content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"lo"}}`)
		sse(w, "content_block_stop", `{"type":"content_block_stop","index":0}`)
		sse(w, "message_delta", `{"type":"message_delta","delta":{"stop_reason":"max_tokens"},"usage":{"output_tokens":15}}`)
		sse(w, "message_stop", `{"type":"message_stop"}`)
	})
	a := newAPI(t, srv, APIOptions{})
	var deltas []string
	res, err := a.Run(context.Background(), Target{}, Request{Prompt: "hi", Stream: true}, func(s string) {
		if len(deltas) == 0 {
			close(release)
		}
		deltas = append(deltas, s)
	})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(deltas, "|") != "Hel|lo" || res.Text != "Hello" || res.StopReason != "max_tokens" ||
		res.Usage != (Usage{InputTokens: 25, OutputTokens: 15, CacheReadInputTokens: 7}) || res.CostUSD <= 0 {
		t.Errorf("deltas %q, result %+v", deltas, res)
	}
	if !got.Stream {
		t.Error("request did not ask for a stream")
	}
}

func TestAnthropicAPIFailures(t *testing.T) {
	status := func(code int, header, body string) func(http.ResponseWriter, apiRequest) {
		return func(w http.ResponseWriter, _ apiRequest) {
			if header != "" {
				w.Header().Set("retry-after", header)
			}
			w.WriteHeader(code)
			io.WriteString(w, body)
		}
	}
	streamThen := func(events ...string) func(http.ResponseWriter, apiRequest) {
		return func(w http.ResponseWriter, _ apiRequest) {
			sse(w, "message_start", `{"type":"message_start","message":{"model":"claude-sonnet-4-5","usage":{"input_tokens":1}}}`)
			for _, e := range events {
				sse(w, "x", e)
			}
		}
	}
	for _, tc := range []struct {
		name   string
		answer func(http.ResponseWriter, apiRequest)
		key    string
		stream bool
		want   error
		reset  time.Duration // > 0: ResetAt ≈ now + reset
	}{
		{"429 with retry-after", status(429, "30", `{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}`), "", false, ErrLimited, 30 * time.Second},
		{"429 without retry-after", status(429, "", `{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}`), "", false, ErrLimited, 0},
		{"401 wrong key", nil, "sk-ant-api03-wrong-key", false, ErrAuth, 0},
		{"403", status(403, "", `{"type":"error","error":{"type":"permission_error","message":"no"}}`), "", false, ErrAuth, 0},
		{"400", status(400, "", `{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long"}}`), "", false, ErrInvalidRequest, 0},
		{"500", status(500, "", `oops`), "", false, ErrBackend, 0},
		{"529 overloaded", status(529, "", `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`), "", false, ErrBackend, 0},
		{"bad json", status(200, "", `{"content":`), "", false, ErrBackend, 0},
		{"stream error event: overloaded", streamThen(`{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`), "", true, ErrBackend, 0},
		{"stream error event: rate limit", streamThen(`{"type":"error","error":{"type":"rate_limit_error","message":"slow"}}`), "", true, ErrLimited, 0},
		{"stream cut before message_stop", streamThen(`{"type":"content_block_delta","delta":{"type":"text_delta","text":"Hel"}}`), "", true, ErrBackend, 0},
		{"stream garbage", streamThen(`{not json`), "", true, ErrBackend, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			answer := tc.answer
			if answer == nil {
				answer = status(500, "", "unreachable")
			}
			srv, _ := messagesServer(t, answer)
			a := newAPI(t, srv, APIOptions{APIKey: tc.key})
			_, err := a.Run(context.Background(), Target{}, Request{Prompt: "hi", Stream: tc.stream}, nil)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Run = %v, want %v", err, tc.want)
			}
			if strings.Contains(err.Error(), "test-key") || strings.Contains(err.Error(), "wrong-key") {
				t.Errorf("error carries the API key: %v", err)
			}
			var le *LimitError
			if errors.As(err, &le) {
				if tc.reset == 0 && !le.ResetAt.IsZero() {
					t.Errorf("ResetAt = %v, want zero", le.ResetAt)
				}
				if d := time.Until(le.ResetAt); tc.reset > 0 && (d > tc.reset || d < tc.reset-5*time.Second) {
					t.Errorf("ResetAt in %v, want %v", d, tc.reset)
				}
			}
		})
	}
}

func TestAnthropicAPICancelAndTimeout(t *testing.T) {
	hung := make(chan struct{})
	srv, _ := messagesServer(t, func(w http.ResponseWriter, _ apiRequest) {
		sse(w, "message_start", `{"type":"message_start","message":{"model":"claude-sonnet-4-5"}}`)
		<-hung // the answer never comes
	})
	t.Cleanup(func() { close(hung) }) // runs before the server's Close, which waits for handlers

	a := newAPI(t, srv, APIOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := a.Run(ctx, Target{}, Request{Prompt: "hi", Stream: true}, nil)
	if !errors.Is(err, ErrCanceled) || !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 2*time.Second {
		t.Errorf("Run with the caller's ctx ending = %v after %v, want ErrCanceled at once", err, time.Since(start))
	}

	a = newAPI(t, srv, APIOptions{Timeout: 200 * time.Millisecond})
	if _, err := a.Run(context.Background(), Target{}, Request{Prompt: "hi", Stream: true}, nil); !errors.Is(err, ErrTimeout) {
		t.Errorf("Run past the backend's timeout = %v, want ErrTimeout", err)
	}
}

func TestAnthropicAPIDoesNotFollowRedirects(t *testing.T) {
	leaked := make(chan string, 1)
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		leaked <- r.Header.Get("x-api-key")
	}))
	defer elsewhere.Close()
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, elsewhere.URL+"/v1/messages", http.StatusTemporaryRedirect)
	}))
	defer redirector.Close()
	a := newAPI(t, redirector, APIOptions{HTTPClient: &http.Client{}})
	if _, err := a.Run(context.Background(), Target{}, Request{Prompt: "hi"}, nil); !errors.Is(err, ErrBackend) {
		t.Errorf("Run against a redirect = %v, want ErrBackend", err)
	}
	select {
	case key := <-leaked:
		t.Errorf("the redirect was followed (x-api-key %q sent elsewhere)", key)
	default:
	}
}

func TestAnthropicAPIRefusesBadRequests(t *testing.T) {
	srv, _ := messagesServer(t, func(w http.ResponseWriter, _ apiRequest) { t.Error("a refused request reached the API") })
	a := newAPI(t, srv, APIOptions{})
	for _, req := range []Request{
		{Messages: []Message{{Role: "system", Content: "x"}}},
		{Messages: []Message{{Role: "user", Content: " "}}},
		{Prompt: ""},
		{Prompt: "hi", Model: "-x"},
		{Prompt: "hi", MaxTokens: -1},
	} {
		if _, err := a.Run(context.Background(), Target{}, req, nil); !errors.Is(err, ErrInvalidRequest) {
			t.Errorf("Run(%+v) = %v, want ErrInvalidRequest", req, err)
		}
	}
}

func TestNewAnthropicAPIValidates(t *testing.T) {
	for _, o := range []APIOptions{
		{}, // no key
		{APIKey: "k", BaseURL: "http://example.com"}, // plain http off loopback
		{APIKey: "k", BaseURL: "https://user:pw@example.com"},
		{APIKey: "k", BaseURL: "ftp://example.com"},
		{APIKey: "k", BaseURL: "not a url"},
		{APIKey: "k\n", BaseURL: "https://example.com"},
		{APIKey: "k", Model: "--x"},
	} {
		_, err := NewAnthropicAPI(o)
		if !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("NewAnthropicAPI(%+v) = %v, want ErrInvalidConfig", o, err)
		} else if strings.Contains(err.Error(), "pw@") {
			t.Errorf("error quotes the URL's credentials: %v", err)
		}
	}
	a, err := NewAnthropicAPI(APIOptions{APIKey: "k"})
	if err != nil || a.endpoint != DefaultAnthropicBaseURL+"/v1/messages" || a.Name() != DefaultAPIName {
		t.Errorf("defaults: %+v, %v", a, err)
	}
	if _, err := NewAnthropicAPI(APIOptions{APIKey: "k", BaseURL: "http://127.0.0.1:9/"}); err != nil {
		t.Errorf("http:// to loopback refused: %v", err)
	}
}

func TestEstimateCostUSD(t *testing.T) {
	mtok := Usage{InputTokens: 1e6, OutputTokens: 1e6}
	for _, tc := range []struct {
		model string
		want  float64
	}{
		{"claude-opus-4-5", 5 + 25},
		{"claude-opus-4-1", 15 + 75},
		{"claude-sonnet-4-5", 3 + 15},
		{"claude-3-7-sonnet-latest", 3 + 15},
		{"claude-haiku-4-5", 1 + 5},
		{"claude-3-5-haiku-latest", 0.8 + 4},
		{"claude-3-haiku-20240307", 0.25 + 1.25},
		{"something-new", 3 + 15},
	} {
		if got := EstimateCostUSD(tc.model, mtok); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("EstimateCostUSD(%s, 1M in + 1M out) = %v, want %v", tc.model, got, tc.want)
		}
	}
	cache := Usage{CacheCreationInputTokens: 1e6, CacheReadInputTokens: 1e6}
	if got := EstimateCostUSD("claude-sonnet-4-5", cache); math.Abs(got-(3*1.25+3*0.1)) > 1e-9 {
		t.Errorf("cache pricing = %v", got)
	}
}
