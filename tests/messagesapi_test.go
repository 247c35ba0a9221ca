package tests

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// messagesAPI is a local server speaking the Anthropic Messages API, the
// fallback backend's upstream. It answers "fallback: <last user message>";
// given tools it calls the first one (tool_use toolu_01 with
// {"city":"Paris"}), and given that call's tool_result it answers
// "tool said: <result>". count_tokens answers {"input_tokens": 42}.
type messagesAPI struct {
	srv  *httptest.Server
	mu   sync.Mutex
	reqs []apiRequest
}

type apiRequest struct {
	apiKey    string
	Model     string `json:"model"`
	MaxTokens int    `json:"max_tokens"`
	System    string `json:"system"`
	Messages  []struct {
		Role    string          `json:"role"`
		Content json.RawMessage `json:"content"`
	} `json:"messages"`
	Stream bool `json:"stream"`
	Tools  []struct {
		Name        string          `json:"name"`
		InputSchema json.RawMessage `json:"input_schema"`
	} `json:"tools"`
	ToolChoice json.RawMessage `json:"tool_choice"`
	Metadata   json.RawMessage `json:"metadata"`
}

// block is a content block as the fake API reads it.
type block struct {
	Type      string          `json:"type"`
	Text      string          `json:"text"`
	ID        string          `json:"id"`
	Name      string          `json:"name"`
	ToolUseID string          `json:"tool_use_id"`
	Content   json.RawMessage `json:"content"`
}

// blocksOf reads a message content: a string is one text block.
func blocksOf(raw json.RawMessage) []block {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return []block{{Type: "text", Text: s}}
	}
	var bs []block
	_ = json.Unmarshal(raw, &bs)
	return bs
}

// textOf joins the text of a content (string, or blocks' text).
func textOf(raw json.RawMessage) string {
	var b strings.Builder
	for _, bl := range blocksOf(raw) {
		b.WriteString(bl.Text)
	}
	return b.String()
}

func newMessagesAPI(t *testing.T) *messagesAPI {
	t.Helper()
	m := &messagesAPI{}
	m.srv = httptest.NewServer(http.HandlerFunc(m.serve))
	t.Cleanup(m.srv.Close)
	return m
}

func (m *messagesAPI) seen() []apiRequest {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]apiRequest(nil), m.reqs...)
}

func (m *messagesAPI) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method == "POST" && r.URL.Path == "/v1/messages/count_tokens" {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"input_tokens":42}`))
		return
	}
	if r.Method != "POST" || r.URL.Path != "/v1/messages" {
		http.Error(w, `{"type":"error","error":{"type":"not_found_error","message":"no such route"}}`, 404)
		return
	}
	var req apiRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || len(req.Messages) == 0 {
		http.Error(w, `{"type":"error","error":{"type":"invalid_request_error","message":"bad body"}}`, 400)
		return
	}
	req.apiKey = r.Header.Get("x-api-key")
	m.mu.Lock()
	m.reqs = append(m.reqs, req)
	m.mu.Unlock()
	if req.apiKey != fallbackKey || r.Header.Get("anthropic-version") == "" {
		w.WriteHeader(401)
		_, _ = w.Write([]byte(`{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}`))
		return
	}
	last := req.Messages[len(req.Messages)-1]
	text := "fallback: " + textOf(last.Content)
	var call *block // the tool call to answer with
	for _, bl := range blocksOf(last.Content) {
		if bl.Type == "tool_result" {
			if bl.ToolUseID != "toolu_01" {
				http.Error(w, `{"type":"error","error":{"type":"invalid_request_error","message":"unknown tool_use_id"}}`, 400)
				return
			}
			text = "tool said: " + textOf(bl.Content)
		}
	}
	if strings.HasPrefix(text, "fallback: ") && len(req.Tools) > 0 {
		call = &block{Type: "tool_use", ID: "toolu_01", Name: req.Tools[0].Name}
	}
	usage := map[string]int{"input_tokens": 20, "output_tokens": 6}
	if !req.Stream {
		w.Header().Set("Content-Type", "application/json")
		content, stop := []any{map[string]any{"type": "text", "text": text}}, "end_turn"
		if call != nil {
			content = []any{map[string]any{"type": "tool_use", "id": call.ID, "name": call.Name,
				"input": map[string]any{"city": "Paris"}}}
			stop = "tool_use"
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"id": "msg_fb", "type": "message", "role": "assistant",
			"model": req.Model, "content": content, "stop_reason": stop, "stop_sequence": nil, "usage": usage})
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	send := func(typ string, v map[string]any) {
		v["type"] = typ
		b, _ := json.Marshal(v)
		fmt.Fprintf(w, "event: %s\ndata: %s\n\n", typ, b)
		w.(http.Flusher).Flush()
	}
	send("message_start", map[string]any{"message": map[string]any{"id": "msg_fb", "type": "message",
		"role": "assistant", "model": req.Model, "content": []any{}, "usage": map[string]int{"input_tokens": 20, "output_tokens": 1}}})
	stop := "end_turn"
	if call != nil {
		stop = "tool_use"
		send("content_block_start", map[string]any{"index": 0, "content_block": map[string]any{"type": "tool_use",
			"id": call.ID, "name": call.Name, "input": map[string]any{}}})
		for _, part := range []string{`{"city":`, ` "Paris"}`} {
			send("content_block_delta", map[string]any{"index": 0, "delta": map[string]any{"type": "input_json_delta", "partial_json": part}})
		}
	} else {
		send("content_block_start", map[string]any{"index": 0, "content_block": map[string]any{"type": "text", "text": ""}})
		for _, word := range strings.SplitAfter(text, " ") {
			send("content_block_delta", map[string]any{"index": 0, "delta": map[string]any{"type": "text_delta", "text": word}})
		}
	}
	send("content_block_stop", map[string]any{"index": 0})
	send("message_delta", map[string]any{"delta": map[string]any{"stop_reason": stop, "stop_sequence": nil}, "usage": map[string]int{"output_tokens": 6}})
	send("message_stop", map[string]any{})
}
