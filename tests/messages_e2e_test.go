package tests

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	aopt "github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/shared"
)

// anthropicClient is the official Anthropic client pointed at the replica,
// as a user would: base URL the gateway, the gateway's key as the API key.
func (r *replica) anthropicClient(key string, opts ...aopt.RequestOption) anthropic.Client {
	return anthropic.NewClient(append([]aopt.RequestOption{aopt.WithBaseURL(r.url), aopt.WithAPIKey(key),
		aopt.WithMaxRetries(0), aopt.WithRequestTimeout(60 * time.Second)}, opts...)...)
}

func userSays(text string) anthropic.MessageNewParams {
	return anthropic.MessageNewParams{Model: "sonnet", MaxTokens: 256,
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock(text))}}
}

func textOfMessage(m *anthropic.Message) string {
	var b strings.Builder
	for _, c := range m.Content {
		if c.Type == "text" {
			b.WriteString(c.Text)
		}
	}
	return b.String()
}

// TestMessagesSDK: the Anthropic SDK talks to the gateway's /v1/messages as
// to Anthropic: a message, a streamed message, a three-turn conversation
// under X-Session-Id sending only the new message, and a wrong key as the
// SDK's typed authentication error.
func TestMessagesSDK(t *testing.T) {
	c := startCluster(t, clusterOpts{replicas: 2})
	ctx := context.Background()
	cl := c.replicas[0].anthropicClient(clientKey)

	var hr *http.Response
	msg, err := cl.Messages.New(ctx, userSays("What is 2+2?"), aopt.WithResponseInto(&hr))
	if err != nil {
		t.Fatal(err)
	}
	if got := textOfMessage(msg); got != "echo: What is 2+2?" || msg.Role != "assistant" || msg.StopReason != "end_turn" {
		t.Errorf("message = %q role %q stop %q", got, msg.Role, msg.StopReason)
	}
	if !strings.HasPrefix(msg.ID, "msg_") || msg.Usage.OutputTokens == 0 || hr.Header.Get("X-Session-Id") == "" ||
		hr.Header.Get("X-AuthPool-Allocation") != "subscription" {
		t.Errorf("id %q usage %+v session %q allocation %q", msg.ID, msg.Usage, hr.Header.Get("X-Session-Id"),
			hr.Header.Get("X-AuthPool-Allocation"))
	}

	// Streaming: the SDK's accumulated message is the fake CLI's text.
	stream := cl.Messages.NewStreaming(ctx, userSays("stream this please"))
	acc := anthropic.Message{}
	var types []string
	for stream.Next() {
		ev := stream.Current()
		if len(types) == 0 || types[len(types)-1] != ev.Type {
			types = append(types, ev.Type)
		}
		if err := acc.Accumulate(ev); err != nil {
			t.Fatal(err)
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if got := textOfMessage(&acc); got != "echo: stream this please" || acc.StopReason != "end_turn" {
		t.Errorf("streamed %q stop %q", got, acc.StopReason)
	}
	// The SDK hides ping; the wire has every event, in Anthropic's order.
	want := "message_start content_block_start content_block_delta content_block_stop message_delta message_stop"
	if strings.Join(types, " ") != want {
		t.Errorf("SDK events %v, want %s", types, want)
	}
	_, raw := c.postTo(0, "/v1/messages", `{"model":"sonnet","max_tokens":10,"stream":true,"messages":[{"role":"user","content":"raw"}]}`,
		"x-api-key", clientKey, "anthropic-version", "2023-06-01")
	var wire []string
	for _, line := range strings.Split(string(raw), "\n") {
		if ev, ok := strings.CutPrefix(line, "event: "); ok && (len(wire) == 0 || wire[len(wire)-1] != ev) {
			wire = append(wire, ev)
		}
	}
	if got := strings.Join(wire, " "); got != "message_start content_block_start ping content_block_delta content_block_stop message_delta message_stop" {
		t.Errorf("wire events %s", got)
	}

	// Three turns, each sending only its new message under one session id,
	// alternating replicas: the CLI sees the conversation (recall answers
	// with every user line it was given).
	c.setModeEverywhere("recall")
	sid := "messages-conv-1"
	say := []string{"my name is Ada", "I like tea", "what do you know?"}
	for i, s := range say {
		cli := c.replicas[i%2].anthropicClient(clientKey, aopt.WithHeader("X-Session-Id", sid))
		var hr *http.Response
		m, err := cli.Messages.New(ctx, userSays(s), aopt.WithResponseInto(&hr))
		if err != nil {
			t.Fatalf("turn %d: %v", i+1, err)
		}
		if got := textOfMessage(m); got != recalled(say[:i+1]...) {
			t.Errorf("turn %d = %q, want %q", i+1, got, recalled(say[:i+1]...))
		}
		if hr.Header.Get("X-Session-Id") != sid {
			t.Errorf("turn %d session %q", i+1, hr.Header.Get("X-Session-Id"))
		}
		// The turn is settled just after its answer; the next one goes to
		// the other replica, which waits for no settle of this one.
		c.settled()
	}

	// metadata.user_id names a session without being stored.
	c.setModeEverywhere("ok")
	userID := "user_" + strings.Repeat("ab", 40) + "_account_secret_session_1234"
	p := userSays("with metadata")
	p.Metadata = anthropic.MetadataParam{UserID: anthropic.String(userID)}
	var mh *http.Response
	if _, err := cl.Messages.New(ctx, p, aopt.WithResponseInto(&mh)); err != nil {
		t.Fatal(err)
	}
	derived := mh.Header.Get("X-Session-Id")
	if !strings.HasPrefix(derived, "mu-") || strings.Contains(derived, "secret") || len(c.session(derived)) == 0 {
		t.Errorf("derived session %q (hash %v)", derived, c.session(derived))
	}
	keys, _ := c.rdb.Keys(ctx, c.keys.Base()+"*").Result()
	for _, k := range keys {
		if typ, _ := c.rdb.Type(ctx, k).Result(); typ == "hash" {
			h, _ := c.rdb.HGetAll(ctx, k).Result()
			for f, v := range h {
				if strings.Contains(v, "account_secret") || strings.Contains(f, "account_secret") {
					t.Errorf("metadata.user_id stored in %s", k)
				}
			}
		}
	}

	// A wrong key: the SDK's typed error, Anthropic's type.
	wrong := c.replicas[0].anthropicClient("wrong-key")
	_, err = wrong.Messages.New(ctx, userSays("hi"))
	var ae *anthropic.Error
	if !errors.As(err, &ae) || ae.StatusCode != 401 || ae.Type() != "authentication_error" {
		t.Errorf("wrong key: %v", err)
	}
}

// TestMessagesRateLimit: over the per-key rate limit the SDK gets its
// typed rate-limit error with retry-after.
func TestMessagesRateLimit(t *testing.T) {
	c := startCluster(t, clusterOpts{replicas: 1, subs: 1, rateLimit: 1})
	cl := c.replicas[0].anthropicClient(clientKey)
	ctx := context.Background()
	var err error
	var hr *http.Response
	for i := 0; i < 4 && err == nil; i++ {
		_, err = cl.Messages.New(ctx, userSays("again"), aopt.WithResponseInto(&hr))
	}
	var ae *anthropic.Error
	if !errors.As(err, &ae) || ae.StatusCode != 429 || ae.Type() != "rate_limit_error" {
		t.Fatalf("over the limit: %v", err)
	}
	if ae.Response.Header.Get("retry-after") == "" {
		t.Error("429 without retry-after")
	}
}

// TestMessagesBadInput: each refusal has its status and Anthropic's error
// shape, and nothing reaches the pool.
func TestMessagesBadInput(t *testing.T) {
	c := startCluster(t, clusterOpts{replicas: 1, subs: 1})
	big := `{"model":"sonnet","max_tokens":10,"messages":[{"role":"user","content":"` + strings.Repeat("x", 1<<20) + `"}]}`
	for _, tc := range []struct {
		name, body string
		status     int
		typ, says  string
	}{
		{"missing max_tokens", `{"model":"sonnet","messages":[{"role":"user","content":"hi"}]}`, 400, "invalid_request_error", "max_tokens"},
		{"empty messages", `{"model":"sonnet","max_tokens":10,"messages":[]}`, 400, "invalid_request_error", "messages"},
		{"unknown role", `{"model":"sonnet","max_tokens":10,"messages":[{"role":"system","content":"hi"}]}`, 400, "invalid_request_error", "messages[0].role"},
		{"bad content block", `{"model":"sonnet","max_tokens":10,"messages":[{"role":"user","content":[{"type":"text"}]}]}`, 400, "invalid_request_error", "messages[0].content[0].text"},
		{"unknown block type", `{"model":"sonnet","max_tokens":10,"messages":[{"role":"user","content":[{"type":"video","text":"x"}]}]}`, 400, "invalid_request_error", "messages[0].content[0]"},
		{"unknown field", `{"model":"sonnet","max_tokens":10,"messages":[{"role":"user","content":"hi"}],"bogus":1}`, 400, "invalid_request_error", "bogus"},
		{"unknown model", `{"model":"gpt-4o","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}`, 400, "invalid_request_error", "model"},
		{"bad session id", `{"model":"sonnet","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}`, 400, "invalid_request_error", "session"},
		{"oversize body", big, 413, "request_too_large", ""},
		// No supportsTools backend: tools are refused by name.
		{"tools without a tools backend", `{"model":"sonnet","max_tokens":10,"messages":[{"role":"user","content":"hi"}],"tools":[{"name":"f","input_schema":{"type":"object"}}]}`, 400, "invalid_request_error", "tools"},
		{"image without a tools backend", `{"model":"sonnet","max_tokens":10,"messages":[{"role":"user","content":[{"type":"image","source":{"type":"url","url":"https://x/y.png"}}]}]}`, 400, "invalid_request_error", "messages[0].content[0]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := []string{"x-api-key", clientKey, "anthropic-version", "2023-06-01"}
			if tc.name == "bad session id" {
				h = append(h, "X-Session-Id", "bad id!")
			}
			resp, body := c.postTo(0, "/v1/messages", tc.body, h...)
			var e struct {
				Type  string `json:"type"`
				Error struct{ Type, Message string }
			}
			if err := json.Unmarshal(body, &e); err != nil || resp.StatusCode != tc.status || e.Type != "error" ||
				e.Error.Type != tc.typ || !strings.Contains(e.Error.Message, tc.says) {
				t.Errorf("%d %s, want %d %s naming %q", resp.StatusCode, body, tc.status, tc.typ, tc.says)
			}
		})
	}
	// Chat completions with tools: 400 naming tools too.
	resp, body := c.post(0, `{"model":"sonnet","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f"}}]}`,
		"Authorization", "Bearer "+clientKey)
	if resp.StatusCode != 400 || !strings.Contains(string(body), `"param":"tools"`) {
		t.Errorf("chat tools: %d %s", resp.StatusCode, body)
	}
	// The pool is unchanged: no session, no CLI run.
	if n := c.sessionCount(); n != 0 {
		t.Errorf("%d sessions after refusals", n)
	}
	if calls := c.calls("sub1"); len(calls) != 0 {
		t.Errorf("the CLI ran %d times", len(calls))
	}
	// count_tokens without an anthropic-api backend: a clear 404.
	resp, body = c.postTo(0, "/v1/messages/count_tokens", `{"model":"sonnet","messages":[{"role":"user","content":"hi"}]}`,
		"x-api-key", clientKey)
	if resp.StatusCode != 404 || !strings.Contains(string(body), "not_found_error") || !strings.Contains(string(body), "anthropic-api") {
		t.Errorf("count_tokens: %d %s", resp.StatusCode, body)
	}
}

var weatherSchema = map[string]any{"city": map[string]any{"type": "string"}}

// TestToolsAnthropic: a tool_use → tool_result round trip through the
// anthropic-api backend (supportsTools), with the Anthropic SDK, streaming
// and not; settled as fallback usage, the CLI never involved.
func TestToolsAnthropic(t *testing.T) {
	api := newMessagesAPI(t)
	c := startCluster(t, clusterOpts{replicas: 1, subs: 1, fallbackURL: api.srv.URL, tools: true})
	cl := c.replicas[0].anthropicClient(clientKey)
	ctx := context.Background()
	for _, streaming := range []bool{false, true} {
		tools := []anthropic.ToolUnionParam{{OfTool: &anthropic.ToolParam{Name: "get_weather",
			Description: anthropic.String("weather of a city"),
			InputSchema: anthropic.ToolInputSchemaParam{Properties: weatherSchema}}}}
		p := userSays("weather in Paris?")
		p.Tools = tools
		send := func(p anthropic.MessageNewParams) (*anthropic.Message, string) {
			t.Helper()
			var hr *http.Response
			if !streaming {
				m, err := cl.Messages.New(ctx, p, aopt.WithResponseInto(&hr))
				if err != nil {
					t.Fatal(err)
				}
				return m, hr.Header.Get("X-AuthPool-Allocation")
			}
			s := cl.Messages.NewStreaming(ctx, p, aopt.WithResponseInto(&hr))
			acc := anthropic.Message{}
			for s.Next() {
				if err := acc.Accumulate(s.Current()); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Err(); err != nil {
				t.Fatal(err)
			}
			return &acc, hr.Header.Get("X-AuthPool-Allocation")
		}
		m, alloc := send(p)
		if m.StopReason != "tool_use" || len(m.Content) != 1 || m.Content[0].Type != "tool_use" ||
			m.Content[0].Name != "get_weather" || alloc != "fallback" {
			t.Fatalf("stream=%v: first answer %+v via %q", streaming, m, alloc)
		}
		var in struct{ City string }
		if err := json.Unmarshal(m.Content[0].Input, &in); err != nil || in.City != "Paris" {
			t.Errorf("stream=%v: tool input %s", streaming, m.Content[0].Input)
		}
		p.Messages = append(p.Messages, m.ToParam(),
			anthropic.NewUserMessage(anthropic.NewToolResultBlock(m.Content[0].ID, "18C and sunny", false)))
		m, _ = send(p)
		if got := textOfMessage(m); got != "tool said: 18C and sunny" {
			t.Errorf("stream=%v: after the tool result: %q", streaming, got)
		}
	}
	reqs := api.seen()
	if len(reqs) != 4 || len(reqs[0].Tools) != 1 || reqs[0].Model != "claude-sonnet-4-5" || reqs[0].Metadata != nil {
		t.Errorf("the API saw %+v", reqs)
	}
	fb, err := c.rdb.HGetAll(ctx, c.keys.Fallback()).Result()
	if err != nil || fb["requests"] != "4" {
		t.Errorf("fallback usage = %v %v, want 4 requests settled", fb, err)
	}
	if calls := c.calls("sub1"); len(calls) != 0 {
		t.Errorf("the CLI ran %d times", len(calls))
	}
	// count_tokens is forwarded.
	resp, body := c.postTo(0, "/v1/messages/count_tokens", `{"model":"sonnet","messages":[{"role":"user","content":"hi"}]}`,
		"x-api-key", clientKey)
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"input_tokens":42`) {
		t.Errorf("count_tokens: %d %s", resp.StatusCode, body)
	}
}

// TestToolsOpenAI: the same round trip in OpenAI's dialect with the
// official openai-go client (tool_calls → tool message), streaming and not.
func TestToolsOpenAI(t *testing.T) {
	api := newMessagesAPI(t)
	c := startCluster(t, clusterOpts{replicas: 1, subs: 1, fallbackURL: api.srv.URL, tools: true})
	cl := c.replicas[0].client(clientKey)
	ctx := context.Background()
	for _, streaming := range []bool{false, true} {
		p := openai.ChatCompletionNewParams{Model: "sonnet",
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("weather in Paris?")},
			Tools: []openai.ChatCompletionToolUnionParam{openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{
				Name: "get_weather", Parameters: shared.FunctionParameters{"type": "object", "properties": weatherSchema}})}}
		send := func() (openai.ChatCompletionMessage, string, string) {
			t.Helper()
			var hr *http.Response
			if !streaming {
				cc, err := cl.Chat.Completions.New(ctx, p, option.WithResponseInto(&hr))
				if err != nil {
					t.Fatal(err)
				}
				return cc.Choices[0].Message, cc.Choices[0].FinishReason, hr.Header.Get("X-AuthPool-Allocation")
			}
			s := cl.Chat.Completions.NewStreaming(ctx, p, option.WithResponseInto(&hr))
			acc := openai.ChatCompletionAccumulator{}
			for s.Next() {
				acc.AddChunk(s.Current())
			}
			if err := s.Err(); err != nil {
				t.Fatal(err)
			}
			return acc.Choices[0].Message, acc.Choices[0].FinishReason, hr.Header.Get("X-AuthPool-Allocation")
		}
		msg, finish, alloc := send()
		if finish != "tool_calls" || len(msg.ToolCalls) != 1 || msg.ToolCalls[0].Function.Name != "get_weather" || alloc != "fallback" {
			t.Fatalf("stream=%v: first answer %+v finish %q via %q", streaming, msg, finish, alloc)
		}
		var in struct{ City string }
		if err := json.Unmarshal([]byte(msg.ToolCalls[0].Function.Arguments), &in); err != nil || in.City != "Paris" {
			t.Errorf("stream=%v: arguments %q", streaming, msg.ToolCalls[0].Function.Arguments)
		}
		p.Messages = append(p.Messages, msg.ToParam(), openai.ToolMessage("18C and sunny", msg.ToolCalls[0].ID))
		msg, finish, _ = send()
		if msg.Content != "tool said: 18C and sunny" || finish != "stop" {
			t.Errorf("stream=%v: after the tool message: %q %q", streaming, msg.Content, finish)
		}
	}
	if reqs := api.seen(); len(reqs) != 4 || len(reqs[0].Tools) != 1 || reqs[0].Tools[0].Name != "get_weather" {
		t.Errorf("the API saw %+v", reqs)
	}
	fb, err := c.rdb.HGetAll(ctx, c.keys.Fallback()).Result()
	if err != nil || fb["requests"] != "4" {
		t.Errorf("fallback usage = %v %v, want 4 requests settled", fb, err)
	}
}
