package gateway

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/authpool/authpool/pkg/backend"
)

// TestBadInput: every refused request gets its status and an OpenAI-shaped
// error, no backend runs and the pool is unchanged.
func TestBadInput(t *testing.T) {
	big := `{"messages":[{"role":"user","content":"` + strings.Repeat("x", DefaultMaxBodyBytes) + `"}]}`
	tests := []struct {
		name      string
		body      string
		headers   []string
		status    int
		typ       string
		param     string
		inMessage string
	}{
		{name: "malformed JSON", body: `{"messages":[`, status: 400, typ: "invalid_request_error", inMessage: "malformed JSON"},
		{name: "not an object", body: `[1,2]`, status: 400, typ: "invalid_request_error", inMessage: "JSON object"},
		{name: "trailing data", body: `{"messages":[{"role":"user","content":"x"}]} {}`, status: 400, typ: "invalid_request_error"},
		{name: "missing messages", body: `{"model":"sonnet"}`, status: 400, typ: "invalid_request_error", param: "messages"},
		{name: "empty messages", body: `{"messages":[]}`, status: 400, typ: "invalid_request_error", param: "messages"},
		{name: "unknown role", body: `{"messages":[{"role":"wizard","content":"x"}]}`, status: 400,
			typ: "invalid_request_error", param: "messages[0].role"},
		{name: "missing role", body: `{"messages":[{"content":"x"}]}`, status: 400, typ: "invalid_request_error", param: "messages[0].role"},
		{name: "tool role", body: `{"messages":[{"role":"tool","content":"x","tool_call_id":"a"}]}`, status: 400,
			typ: "invalid_request_error", param: "messages[0].role"},
		{name: "image part", body: `{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"http://x"}}]}]}`,
			status: 400, typ: "invalid_request_error", param: "messages[0].content[0]"},
		{name: "content of the wrong type", body: `{"messages":[{"role":"user","content":42}]}`, status: 400,
			typ: "invalid_request_error", param: "messages[0].content"},
		{name: "missing user content", body: `{"messages":[{"role":"user"}]}`, status: 400, typ: "invalid_request_error",
			param: "messages[0].content"},
		{name: "empty new turn", body: `{"messages":[{"role":"user","content":"  "}]}`, status: 400, typ: "invalid_request_error",
			param: "messages[0].content"},
		{name: "last message from the assistant", body: `{"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b"}]}`,
			status: 400, typ: "invalid_request_error", param: "messages"},
		{name: "only system", body: `{"messages":[{"role":"system","content":"a"}]}`, status: 400, typ: "invalid_request_error", param: "messages"},
		{name: "n > 1", body: `{"n":2,"messages":[{"role":"user","content":"x"}]}`, status: 400, typ: "invalid_request_error", param: "n"},
		{name: "tools", body: `{"tools":[{"type":"function","function":{"name":"f"}}],"messages":[{"role":"user","content":"x"}]}`,
			status: 400, typ: "invalid_request_error", param: "tools"},
		{name: "tool calls in history", body: `{"messages":[{"role":"assistant","tool_calls":[{"id":"1"}]},{"role":"user","content":"x"}]}`,
			status: 400, typ: "invalid_request_error", param: "messages[0].tool_calls"},
		{name: "json response format", body: `{"response_format":{"type":"json_object"},"messages":[{"role":"user","content":"x"}]}`,
			status: 400, typ: "invalid_request_error", param: "response_format"},
		{name: "unknown model", body: `{"model":"gpt-4o","messages":[{"role":"user","content":"x"}]}`, status: 400,
			typ: "invalid_request_error", param: "model", inMessage: "opus, sonnet, haiku"},
		{name: "model that reads as a flag", body: `{"model":"--dangerously-skip-permissions","messages":[{"role":"user","content":"x"}]}`,
			status: 400, typ: "invalid_request_error", param: "model"},
		{name: "unknown field", body: `{"messages":[{"role":"user","content":"x"}],"frobnicate":true}`, status: 400,
			typ: "invalid_request_error", inMessage: "frobnicate"},
		{name: "temperature out of range", body: `{"temperature":3,"messages":[{"role":"user","content":"x"}]}`, status: 400,
			typ: "invalid_request_error", param: "temperature"},
		{name: "bad session id in the body", body: `{"session_id":"a b/c","messages":[{"role":"user","content":"x"}]}`,
			status: 400, typ: "invalid_request_error", param: "session_id"},
		{name: "session id too long", body: `{"session_id":"` + strings.Repeat("a", 129) + `","messages":[{"role":"user","content":"x"}]}`,
			status: 400, typ: "invalid_request_error", param: "session_id"},
		{name: "bad session id in the header", body: `{"messages":[{"role":"user","content":"x"}]}`,
			headers: []string{"X-Session-Id", "../etc"}, status: 400, typ: "invalid_request_error", param: "session_id"},
		{name: "header and body disagree", body: `{"session_id":"a","messages":[{"role":"user","content":"x"}]}`,
			headers: []string{"X-Session-Id", "b"}, status: 400, typ: "invalid_request_error", param: "session_id"},
		{name: "bad priority", body: `{"priority":"urgent","messages":[{"role":"user","content":"x"}]}`, status: 400,
			typ: "invalid_request_error", param: "priority"},
		{name: "bad request id", body: `{"messages":[{"role":"user","content":"x"}]}`, headers: []string{"X-Request-ID", "a b"},
			status: 400, typ: "invalid_request_error", param: "X-Request-ID"},
		{name: "oversize body", body: big, status: 413, typ: "invalid_request_error"},
	}
	h := newHarness(t, harnessOpts{})
	before := h.snapshot()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, _, ae := h.chat(tc.body, tc.headers...)
			if resp.StatusCode != tc.status {
				t.Fatalf("status = %d, want %d (%+v)", resp.StatusCode, tc.status, ae)
			}
			if ae.Error.Type != tc.typ || ae.Error.Message == "" || ae.Error.Code == "" {
				t.Errorf("error = %+v, want type %s with message and code", ae.Error, tc.typ)
			}
			if ae.Error.Param != tc.param {
				t.Errorf("param = %q, want %q (message %q)", ae.Error.Param, tc.param, ae.Error.Message)
			}
			if !strings.Contains(ae.Error.Message, tc.inMessage) {
				t.Errorf("message %q does not mention %q", ae.Error.Message, tc.inMessage)
			}
			if resp.Header.Get(HeaderRequestID) == "" {
				t.Error("no X-Request-ID on the error")
			}
		})
	}
	if n := len(h.callsSoFar()); n != 0 {
		t.Errorf("%d backend calls for refused requests", n)
	}
	if n := h.sessionKeys(); n != 0 {
		t.Errorf("%d sessions in Redis after refused requests", n)
	}
	after := h.snapshot()
	for id, b := range before {
		a := after[id]
		if a.Clients != b.Clients || a.Requests != b.Requests || a.WeeklyUsed != b.WeeklyUsed || a.Status != b.Status {
			t.Errorf("%s changed: %+v → %+v", id, b, a)
		}
	}
}

func TestAPIKeys(t *testing.T) {
	h := newHarness(t, harnessOpts{opts: Options{APIKeys: []string{"key-one", "key-two"}}})
	body := map[string]any{"messages": msgs(user("hi"))}
	tests := []struct {
		name    string
		headers []string
		status  int
	}{
		{"no key", nil, 401},
		{"wrong bearer", []string{"Authorization", "Bearer key-three"}, 401},
		{"key as a prefix", []string{"Authorization", "Bearer key-on"}, 401},
		{"basic scheme", []string{"Authorization", "Basic a2V5LW9uZQ=="}, 401},
		{"bearer", []string{"Authorization", "Bearer key-one"}, 200},
		{"second key", []string{"Authorization", "bearer key-two"}, 200},
		{"x-api-key", []string{"X-API-Key", "key-two"}, 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, _, ae := h.chat(body, tc.headers...)
			if resp.StatusCode != tc.status {
				t.Fatalf("status = %d, want %d", resp.StatusCode, tc.status)
			}
			if tc.status == 401 && ae.Error.Type != "authentication_error" {
				t.Errorf("error type = %q", ae.Error.Type)
			}
		})
	}
	// Probes stay open; models need the key.
	if r := h.do("GET", "/health", nil); r.StatusCode != 200 {
		t.Errorf("/health = %d", r.StatusCode)
	}
	if r := h.do("GET", "/v1/models", nil); r.StatusCode != 401 {
		t.Errorf("/v1/models without key = %d", r.StatusCode)
	}
}

func TestAdminAuth(t *testing.T) {
	tests := []struct {
		name   string
		token  string
		remote string
		header []string
		status int
	}{
		{"no token, loopback", "", "127.0.0.1:5000", nil, 200},
		{"no token, remote", "", "10.1.2.3:5000", nil, 403},
		{"no token, forwarded header is not trusted", "", "10.1.2.3:5000", []string{"X-Forwarded-For", "127.0.0.1"}, 403},
		{"token, loopback without it", "s3cret", "127.0.0.1:5000", nil, 403},
		{"token, remote with it", "s3cret", "10.1.2.3:5000", []string{"Authorization", "Bearer s3cret"}, 200},
		{"token, X-Admin-Token", "s3cret", "10.1.2.3:5000", []string{"X-Admin-Token", "s3cret"}, 200},
		{"token, wrong", "s3cret", "10.1.2.3:5000", []string{"Authorization", "Bearer nope"}, 403},
		{"token, a client's API key", "s3cret", "10.1.2.3:5000", []string{"Authorization", "Bearer client-key"}, 403},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, harnessOpts{opts: Options{AdminToken: tc.token, Profiling: true, APIKeys: []string{"client-key"}}})
			// The profiles (PPROF=1) sit behind the same guard: a heap or a
			// goroutine dump shows what the process holds.
			for _, path := range []string{"/debug/auth-pool", "/debug/memory", "/debug/pprof/", "/debug/pprof/heap",
				"/debug/pprof/cmdline"} {
				req := httptest.NewRequest("GET", path, nil)
				req.RemoteAddr = tc.remote
				for i := 0; i+1 < len(tc.header); i += 2 {
					req.Header.Set(tc.header[i], tc.header[i+1])
				}
				rec := httptest.NewRecorder()
				h.srv.Handler().ServeHTTP(rec, req)
				if rec.Code != tc.status {
					t.Errorf("%s = %d, want %d: %s", path, rec.Code, tc.status, rec.Body)
				}
				if tc.status == 403 && !strings.Contains(rec.Body.String(), `"permission_error"`) {
					t.Errorf("%s body = %s", path, rec.Body)
				}
			}
		})
	}
}

// TestRateLimitSharedByReplicas: two servers over one Redis count against
// one budget per key; another key has its own.
func TestRateLimitSharedByReplicas(t *testing.T) {
	h := newHarness(t, harnessOpts{opts: Options{APIKeys: []string{"k1", "k2"}, RateLimitPerMinute: 3}})
	replica, err := New(Options{Pool: h.pool, Backends: Backends{Subscriptions: map[string]backend.Backend{
		"sub1": h.subs["sub1"], "sub2": h.subs["sub2"]}}, APIKeys: []string{"k1", "k2"}, RateLimitPerMinute: 3})
	if err != nil {
		t.Fatal(err)
	}
	second := httptest.NewServer(replica.Handler())
	defer second.Close()
	get := func(base, key string) *http.Response {
		req, _ := http.NewRequest("GET", base+"/v1/models", nil)
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	for i, base := range []string{h.http.URL, second.URL, h.http.URL} {
		if r := get(base, "k1"); r.StatusCode != 200 {
			t.Fatalf("request %d = %d", i, r.StatusCode)
		}
	}
	r := get(second.URL, "k1")
	body, _ := io.ReadAll(r.Body)
	if r.StatusCode != 429 {
		t.Fatalf("4th request = %d, want 429", r.StatusCode)
	}
	var ae apiError
	_ = json.Unmarshal(body, &ae)
	if ae.Error.Type != "rate_limit_error" {
		t.Errorf("error = %+v", ae.Error)
	}
	if ra, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || ra < 1 || ra > 20 {
		t.Errorf("Retry-After = %q", r.Header.Get("Retry-After"))
	}
	if r := get(second.URL, "k2"); r.StatusCode != 200 {
		t.Errorf("other key = %d, want 200", r.StatusCode)
	}
	// Keys never reach Redis: the subject is a digest.
	keys, _ := h.tg.Client.Keys(context.Background(), "*ratelimit*").Result()
	for _, k := range keys {
		if strings.Contains(k, "k1") || strings.Contains(k, "k2") {
			t.Errorf("rate-limit key %q holds the client key", k)
		}
	}
	if len(keys) != 2 {
		t.Errorf("rate-limit keys = %v, want 2", keys)
	}
}

func TestRedisDown(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	h.tg.Mini.Close()
	resp, _, ae := h.chat(map[string]any{"session_id": "s1", "messages": msgs(user("hi"))})
	if resp.StatusCode != 503 || ae.Error.Type != "service_unavailable" || resp.Header.Get("Retry-After") == "" {
		t.Errorf("status = %d, error = %+v, Retry-After %q", resp.StatusCode, ae.Error, resp.Header.Get("Retry-After"))
	}
	if n := len(h.callsSoFar()); n != 0 {
		t.Errorf("%d backend calls with Redis down (the fallback must not be spent blind)", n)
	}
	if r := h.do("GET", "/ready", nil); r.StatusCode != 503 {
		t.Errorf("/ready = %d, want 503", r.StatusCode)
	}
	if r := h.do("GET", "/health", nil); r.StatusCode != 200 {
		t.Errorf("/health = %d, want 200", r.StatusCode)
	}
}

func TestNotFoundShapes(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	for _, tc := range []struct {
		method, path string
		status       int
	}{{"GET", "/v1/nope", 404}, {"GET", "/v1/chat/completions", 405}} {
		r := h.do(tc.method, tc.path, nil)
		var ae apiError
		_ = json.NewDecoder(r.Body).Decode(&ae)
		if r.StatusCode != tc.status || ae.Error.Type == "" {
			t.Errorf("%s %s = %d %+v", tc.method, tc.path, r.StatusCode, ae)
		}
	}
}

// Without Profiling (PPROF unset, the default) there are no profiles to
// fetch, even for the admin.
func TestProfilesOffByDefault(t *testing.T) {
	h := newHarness(t, harnessOpts{opts: Options{AdminToken: "s3cret"}})
	req := httptest.NewRequest("GET", "/debug/pprof/heap", nil)
	req.RemoteAddr = "127.0.0.1:5000"
	req.Header.Set("Authorization", "Bearer s3cret")
	rec := httptest.NewRecorder()
	h.srv.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusNotFound {
		t.Fatalf("/debug/pprof/heap without Profiling = %d, want 404", rec.Code)
	}
}
