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
// fallback backend's upstream. It answers "fallback: <last user message>".
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
		Role    string `json:"role"`
		Content string `json:"content"`
	} `json:"messages"`
	Stream bool `json:"stream"`
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
	text := "fallback: " + req.Messages[len(req.Messages)-1].Content
	usage := map[string]int{"input_tokens": 20, "output_tokens": 6}
	if !req.Stream {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"id": "msg_fb", "type": "message", "role": "assistant",
			"model": req.Model, "content": []any{map[string]any{"type": "text", "text": text}},
			"stop_reason": "end_turn", "usage": usage})
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
	send("content_block_start", map[string]any{"index": 0, "content_block": map[string]any{"type": "text", "text": ""}})
	for _, word := range strings.SplitAfter(text, " ") {
		send("content_block_delta", map[string]any{"index": 0, "delta": map[string]any{"type": "text_delta", "text": word}})
	}
	send("content_block_stop", map[string]any{"index": 0})
	send("message_delta", map[string]any{"delta": map[string]any{"stop_reason": "end_turn"}, "usage": map[string]int{"output_tokens": 6}})
	send("message_stop", map[string]any{})
}
