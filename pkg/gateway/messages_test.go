package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/authpool/authpool/pkg/backend"
	"github.com/authpool/authpool/pkg/pool"
)

// TestAnthropicErrorTable: one classification, Anthropic's status and type.
func TestAnthropicErrorTable(t *testing.T) {
	for _, tc := range []struct {
		err    error
		status int
		typ    string
	}{
		{badField("max_tokens", "max_tokens is required"), 400, "invalid_request_error"},
		{pool.ErrInvalidSession, 400, "invalid_request_error"},
		{ErrUnauthorized, 401, "authentication_error"},
		{ErrForbidden, 403, "permission_error"},
		{ErrNotFound, 404, "not_found_error"},
		{ErrNoCounter, 404, "not_found_error"},
		{ErrBodyTooLarge, 413, "request_too_large"},
		{&RetryError{Err: ErrRateLimited, After: time.Second}, 429, "rate_limit_error"},
		{&backend.LimitError{ResetAt: time.Now().Add(time.Hour)}, 429, "rate_limit_error"},
		{fmt.Errorf("%w: x", backend.ErrBackend), 502, "api_error"},
		{fmt.Errorf("%w: x", backend.ErrTimeout), 504, "timeout_error"},
		{&RetryError{Err: ErrNoFallback, After: time.Minute}, 529, "overloaded_error"},
		{&pool.ExhaustedError{Reason: "all limited"}, 529, "overloaded_error"},
		{ErrUnavailable, 503, "api_error"},
		{errors.New("boom"), 500, "api_error"},
	} {
		status, body := classify(tc.err).anthropic()
		if status != tc.status || body.Type != "error" || body.Error.Type != tc.typ || body.Error.Message == "" {
			t.Errorf("%v → %d %+v, want %d %s", tc.err, status, body, tc.status, tc.typ)
		}
	}
	// The field a refusal names is in Anthropic's message (it has no param).
	if _, body := classify(badField("max_tokens", "is required")).anthropic(); !strings.HasPrefix(body.Error.Message, "max_tokens: ") {
		t.Errorf("message %q does not name the field", body.Error.Message)
	}
}

// TestDerivedSession: metadata.user_id becomes a valid session id that
// keeps nothing of it, stable per key, different across keys.
func TestDerivedSession(t *testing.T) {
	uid := "user_" + strings.Repeat("f", 64) + "_account_0123-secret_session_" + strings.Repeat("9", 200)
	a, b := derivedSession("k1", uid), derivedSession("k2", uid)
	if !pool.ValidSessionID(a) || a != derivedSession("k1", uid) || a == b || strings.Contains(a, "secret") {
		t.Errorf("derived %q and %q", a, b)
	}
}

func messagesBody(s string) string {
	return `{"model":"sonnet","max_tokens":64,"messages":[{"role":"user","content":` + s + `}]}`
}

// TestMessagesHandler: a message and a stream through the serve loop, and
// an exhausted pool without fallback as 529 overloaded_error.
func TestMessagesHandler(t *testing.T) {
	h := newHarness(t, harnessOpts{opts: Options{ModelMap: map[string]string{"gpt-4o": "haiku"}}})
	r := h.do("POST", "/v1/messages", `{"model":"gpt-4o","max_tokens":64,"system":[{"type":"text","text":"be brief"}],
		"messages":[{"role":"user","content":[{"type":"text","text":"hi"},{"type":"text","text":"there","cache_control":{"type":"ephemeral"}}]}]}`)
	var m MessageResponse
	if err := json.NewDecoder(r.Body).Decode(&m); err != nil || r.StatusCode != 200 {
		t.Fatalf("%d %v", r.StatusCode, err)
	}
	if m.Type != "message" || len(m.Content) != 1 || m.Content[0].Text != "echo: hi\nthere" || *m.StopReason != "end_turn" ||
		m.Usage.CacheReadInputTokens != 2 || r.Header.Get(HeaderSessionID) == "" {
		t.Errorf("message %+v", m)
	}
	calls := h.callsSoFar()
	if last := calls[len(calls)-1]; last.req.Model != "haiku" || last.req.SystemPrompt != "be brief" {
		t.Errorf("backend got model %q system %q, want the mapped model", last.req.Model, last.req.SystemPrompt)
	}

	var list ModelList
	if err := json.NewDecoder(h.do("GET", "/v1/models", nil).Body).Decode(&list); err != nil ||
		list.Data[len(list.Data)-1].ID != "gpt-4o" {
		t.Errorf("models %+v %v: the modelMap name is not listed", list, err)
	}

	r = h.do("POST", "/v1/messages", strings.Replace(messagesBody(`"one two"`), `"max_tokens"`, `"stream":true,"max_tokens"`, 1))
	raw, _ := io.ReadAll(r.Body)
	var events []string
	var text strings.Builder
	for _, block := range strings.Split(string(raw), "\n\n") {
		ev, data, ok := strings.Cut(block, "\n")
		if !ok {
			continue
		}
		events = append(events, strings.TrimPrefix(ev, "event: "))
		var d struct {
			Delta struct{ Text string } `json:"delta"`
		}
		_ = json.Unmarshal([]byte(strings.TrimPrefix(data, "data: ")), &d)
		text.WriteString(d.Delta.Text)
	}
	want := "message_start content_block_start ping content_block_delta content_block_delta content_block_delta content_block_stop message_delta message_stop"
	if strings.Join(events, " ") != want || text.String() != "echo: one two" {
		t.Errorf("stream %v %q", events, text.String())
	}

	x := newHarness(t, harnessOpts{subs: 1, noFallback: true})
	for id := range x.subs {
		x.subs[id].setAnswer(func(int, backend.Target, backend.Request) (*backend.Result, error) {
			return nil, &backend.LimitError{ResetAt: time.Now().Add(time.Hour)}
		})
	}
	r = x.do("POST", "/v1/messages", messagesBody(`"hi"`))
	var e anthropicError
	if err := json.NewDecoder(r.Body).Decode(&e); err != nil || r.StatusCode != 529 || e.Error.Type != "overloaded_error" ||
		r.Header.Get("Retry-After") == "" {
		t.Errorf("exhausted pool: %d %+v", r.StatusCode, e)
	}
}

// TestMessagesValidation: each refusal names its field.
func TestMessagesValidation(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	for _, tc := range []struct{ body, says string }{
		{`{"model":"sonnet","messages":[{"role":"user","content":"hi"}]}`, "max_tokens"},
		{`{"max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`, "model"},
		{`{"model":"sonnet","max_tokens":0,"messages":[{"role":"user","content":"hi"}]}`, "max_tokens"},
		{`{"model":"sonnet","max_tokens":5,"messages":[]}`, "messages"},
		{`{"model":"sonnet","max_tokens":5,"messages":[{"role":"assistant","content":"hi"}]}`, "messages"},
		{`{"model":"sonnet","max_tokens":5,"messages":[{"role":"robot","content":"hi"}]}`, "messages[0].role"},
		{messagesBody(`[{"type":"text","text":"x","extra":1}]`), "messages[0].content[0]"},
		{messagesBody(`42`), "messages[0].content"},
		{`{"model":"sonnet","max_tokens":5,"temperature":3,"messages":[{"role":"user","content":"hi"}]}`, "temperature"},
		{`{"model":"sonnet","max_tokens":5,"metadata":{"user_id":"` + strings.Repeat("u", 5000) + `"},"messages":[{"role":"user","content":"hi"}]}`, "metadata.user_id"},
		{`{"model":"sonnet","max_tokens":5,"tools":[{"name":"f"}],"messages":[{"role":"user","content":"hi"}]}`, "tools"},
	} {
		r := h.do("POST", "/v1/messages", tc.body)
		var e anthropicError
		if err := json.NewDecoder(r.Body).Decode(&e); err != nil || r.StatusCode != 400 ||
			e.Error.Type != "invalid_request_error" || !strings.HasPrefix(e.Error.Message, tc.says) {
			t.Errorf("%.80s → %d %+v, want 400 naming %s", tc.body, r.StatusCode, e, tc.says)
		}
	}
	if n := h.sessionKeys(); n != 0 || len(h.callsSoFar()) != 0 {
		t.Errorf("refusals left %d sessions, %d backend calls", n, len(h.callsSoFar()))
	}
}

// TestChatToolBody: OpenAI's tools, tool calls, tool messages and images
// become Anthropic's.
func TestChatToolBody(t *testing.T) {
	var req ChatRequest
	if err := json.Unmarshal([]byte(`{"model":"sonnet","max_tokens":50,"tool_choice":"required",
		"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object"}}}],
		"messages":[{"role":"system","content":"sys"},
		{"role":"user","content":[{"type":"text","text":"look"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}}]},
		{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},
		{"role":"tool","tool_call_id":"call_1","content":"sunny"}]}`), &req); err != nil {
		t.Fatal(err)
	}
	b, err := chatToolBody(&req)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"max_tokens":50,"messages":[{"content":[{"text":"look","type":"text"},{"source":{"data":"AAAA","media_type":"image/png","type":"base64"},"type":"image"}],"role":"user"},` +
		`{"content":[{"id":"call_1","input":{"city":"Paris"},"name":"get_weather","type":"tool_use"}],"role":"assistant"},` +
		`{"content":[{"content":"sunny","tool_use_id":"call_1","type":"tool_result"}],"role":"user"}],` +
		`"model":"claude-sonnet-4-5","stream":false,"system":"sys","tool_choice":{"type":"any"},` +
		`"tools":[{"input_schema":{"type":"object"},"name":"get_weather"}]}`
	if string(b) != want {
		t.Errorf("body\n%s\nwant\n%s", b, want)
	}
	req.Messages[1].Content = json.RawMessage(`[{"type":"image_url","image_url":{"url":"http://insecure/x.png"}}]`)
	if _, err := chatToolBody(&req); err == nil || !strings.Contains(err.Error(), "image_url.url") {
		t.Errorf("plain http image: %v", err)
	}
}
