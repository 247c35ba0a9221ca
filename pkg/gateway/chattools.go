package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/authpool/authpool/pkg/backend"
)

// Chat completions with tools, tool calls, tool messages or images: the CLI
// cannot serve them, so they are translated to a Messages API body for the
// tools backend and its answer back to OpenAI's shape (tool_use blocks
// become tool_calls, input_json_delta becomes arguments deltas).

// ToolCall is an assistant's function call, in an answer.
type ToolCall struct {
	ID       string       `json:"id"`
	Type     string       `json:"type"`
	Function FunctionCall `json:"function"`
}

// FunctionCall names a function and its JSON arguments.
type FunctionCall struct {
	Name      string `json:"name"`
	Arguments string `json:"arguments"`
}

// ToolCallDelta is a piece of a tool call in a stream chunk.
type ToolCallDelta struct {
	Index    int               `json:"index"`
	ID       string            `json:"id,omitempty"`
	Type     string            `json:"type,omitempty"`
	Function FunctionCallDelta `json:"function"`
}

// FunctionCallDelta is a piece of a function call.
type FunctionCallDelta struct {
	Name      string `json:"name,omitempty"`
	Arguments string `json:"arguments"`
}

// chatToolField names the first part of req only the tools backend can
// serve, or "".
func chatToolField(req *ChatRequest) string {
	if set(req.Tools) && !emptyArray(req.Tools) {
		return "tools"
	}
	if set(req.ToolChoice) && strings.TrimSpace(string(req.ToolChoice)) != `"none"` {
		return "tool_choice"
	}
	for i, m := range req.Messages {
		at := fmt.Sprintf("messages[%d]", i)
		if m.Role == "tool" {
			return at + ".role"
		}
		if set(m.ToolCalls) && !emptyArray(m.ToolCalls) {
			return at + ".tool_calls"
		}
		var parts []contentPart
		if json.Unmarshal(m.Content, &parts) == nil {
			for j, p := range parts {
				if p.Type == "image_url" {
					return fmt.Sprintf("%s.content[%d]", at, j)
				}
			}
		}
	}
	return ""
}

// Wire shapes read from a chat request.
type (
	chatTool struct {
		Type     string `json:"type"`
		Function struct {
			Name        string          `json:"name"`
			Description string          `json:"description"`
			Parameters  json.RawMessage `json:"parameters"`
		} `json:"function"`
	}
	chatToolCall struct {
		ID       string `json:"id"`
		Type     string `json:"type"`
		Function struct {
			Name      string `json:"name"`
			Arguments string `json:"arguments"`
		} `json:"function"`
	}
	chatPart struct {
		Type     string  `json:"type"`
		Text     *string `json:"text"`
		ImageURL *struct {
			URL string `json:"url"`
		} `json:"image_url"`
	}
)

// maxToolCallID bounds a tool call id that reaches the API.
const maxToolCallID = 256

// chatToolBody translates a chat request to a Messages API body.
func chatToolBody(req *ChatRequest) ([]byte, error) {
	if req.Model == "" {
		req.Model = backend.DefaultAPIModel
	}
	if !validModel(req.Model) {
		return nil, badField("model", "unknown model %q: see GET /v1/models", clip(req.Model))
	}
	if req.N != nil && *req.N != 1 {
		return nil, badField("n", "only n = 1 is supported")
	}
	maxTokens := backend.DefaultMaxTokens
	for _, v := range []*int{req.MaxTokens, req.MaxCompletionTokens} {
		if v != nil {
			if *v < 1 {
				return nil, badField("max_tokens", "must be at least 1")
			}
			maxTokens = *v
		}
	}
	body := map[string]any{"model": backend.APIModel(req.Model), "max_tokens": maxTokens, "stream": req.Stream}
	var system []string
	var msgs []map[string]any
	add := func(role string, blocks ...map[string]any) {
		if n := len(msgs); n > 0 && msgs[n-1]["role"] == role {
			msgs[n-1]["content"] = append(msgs[n-1]["content"].([]map[string]any), blocks...)
			return
		}
		msgs = append(msgs, map[string]any{"role": role, "content": blocks})
	}
	for i, m := range req.Messages {
		at := fmt.Sprintf("messages[%d]", i)
		switch m.Role {
		case "system", "developer":
			text, err := messageText(i, ChatMessage{Role: m.Role, Content: m.Content})
			if err != nil {
				return nil, err
			}
			system = append(system, text)
		case "user":
			blocks, err := chatParts(at, m.Content)
			if err != nil {
				return nil, err
			}
			add("user", blocks...)
		case "assistant":
			var blocks []map[string]any
			if set(m.Content) {
				text, err := messageText(i, ChatMessage{Role: "assistant", Content: m.Content})
				if err != nil {
					return nil, err
				}
				if strings.TrimSpace(text) != "" {
					blocks = append(blocks, map[string]any{"type": "text", "text": text})
				}
			}
			if set(m.ToolCalls) {
				var calls []chatToolCall
				if err := json.Unmarshal(m.ToolCalls, &calls); err != nil {
					return nil, badField(at+".tool_calls", "must be an array of function calls")
				}
				for j, tc := range calls {
					cat := fmt.Sprintf("%s.tool_calls[%d]", at, j)
					if tc.ID == "" || len(tc.ID) > maxToolCallID || tc.Function.Name == "" {
						return nil, badField(cat, "id and function.name are required")
					}
					input := json.RawMessage("{}")
					if strings.TrimSpace(tc.Function.Arguments) != "" {
						if !json.Valid([]byte(tc.Function.Arguments)) {
							return nil, badField(cat+".function.arguments", "must be a JSON object")
						}
						input = json.RawMessage(tc.Function.Arguments)
					}
					blocks = append(blocks, map[string]any{"type": "tool_use", "id": tc.ID,
						"name": tc.Function.Name, "input": input})
				}
			}
			if len(blocks) > 0 {
				add("assistant", blocks...)
			}
		case "tool":
			if m.ToolCallID == "" || len(m.ToolCallID) > maxToolCallID {
				return nil, badField(at+".tool_call_id", "tool_call_id is required")
			}
			text, err := messageText(i, ChatMessage{Role: "user", Content: m.Content})
			if err != nil {
				return nil, err
			}
			add("user", map[string]any{"type": "tool_result", "tool_use_id": m.ToolCallID, "content": text})
		default:
			return nil, badField(at+".role", "unknown role %q: use system, developer, user, assistant or tool", clip(m.Role))
		}
	}
	if len(msgs) == 0 {
		return nil, badField("messages", "at least one user message is required")
	}
	body["messages"] = msgs
	if len(system) > 0 {
		body["system"] = strings.Join(system, "\n\n")
	}
	if set(req.Tools) && !emptyArray(req.Tools) {
		var tools []chatTool
		if err := json.Unmarshal(req.Tools, &tools); err != nil {
			return nil, badField("tools", "must be an array of function tools")
		}
		var out []map[string]any
		for j, t := range tools {
			if t.Type != "function" || t.Function.Name == "" {
				return nil, badField(fmt.Sprintf("tools[%d]", j), "only function tools with a name are supported")
			}
			schema := t.Function.Parameters
			if !set(schema) {
				schema = json.RawMessage(`{"type":"object","properties":{}}`)
			}
			tool := map[string]any{"name": t.Function.Name, "input_schema": schema}
			if t.Function.Description != "" {
				tool["description"] = t.Function.Description
			}
			out = append(out, tool)
		}
		body["tools"] = out
	}
	if set(req.ToolChoice) {
		tc, err := toolChoice(req.ToolChoice)
		if err != nil {
			return nil, err
		}
		body["tool_choice"] = tc
	}
	return json.Marshal(body)
}

// toolChoice translates OpenAI's tool_choice to Anthropic's.
func toolChoice(raw json.RawMessage) (map[string]any, error) {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		switch s {
		case "auto":
			return map[string]any{"type": "auto"}, nil
		case "none":
			return map[string]any{"type": "none"}, nil
		case "required":
			return map[string]any{"type": "any"}, nil
		}
		return nil, badField("tool_choice", "want auto, none, required or a function")
	}
	var f struct {
		Type     string `json:"type"`
		Function struct {
			Name string `json:"name"`
		} `json:"function"`
	}
	if json.Unmarshal(raw, &f) != nil || f.Type != "function" || f.Function.Name == "" {
		return nil, badField("tool_choice", "want auto, none, required or a function")
	}
	return map[string]any{"type": "tool", "name": f.Function.Name}, nil
}

// chatParts translates a user message's content: text and image parts
// (data: URLs become base64 sources, https URLs url sources).
func chatParts(at string, raw json.RawMessage) ([]map[string]any, error) {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return []map[string]any{{"type": "text", "text": s}}, nil
	}
	var parts []chatPart
	if err := json.Unmarshal(raw, &parts); err != nil {
		return nil, badField(at+".content", "must be a string or an array of content parts")
	}
	var out []map[string]any
	for j, p := range parts {
		pat := fmt.Sprintf("%s.content[%d]", at, j)
		switch p.Type {
		case "text":
			if p.Text == nil {
				return nil, badField(pat+".text", "text is required")
			}
			out = append(out, map[string]any{"type": "text", "text": *p.Text})
		case "image_url":
			if p.ImageURL == nil || p.ImageURL.URL == "" {
				return nil, badField(pat+".image_url.url", "url is required")
			}
			src, err := imageSource(pat, p.ImageURL.URL)
			if err != nil {
				return nil, err
			}
			out = append(out, map[string]any{"type": "image", "source": src})
		default:
			return nil, badField(pat+".type", "content part type %q is not supported: text or image_url", clip(p.Type))
		}
	}
	return out, nil
}

func imageSource(at, u string) (map[string]any, error) {
	if rest, ok := strings.CutPrefix(u, "data:"); ok {
		meta, data, ok := strings.Cut(rest, ",")
		mt, isB64 := strings.CutSuffix(meta, ";base64")
		if !ok || !isB64 || mt == "" {
			return nil, badField(at+".image_url.url", "want a base64 data: URL or an https:// URL")
		}
		return map[string]any{"type": "base64", "media_type": mt, "data": data}, nil
	}
	if strings.HasPrefix(u, "https://") {
		return map[string]any{"type": "url", "url": u}, nil
	}
	return nil, badField(at+".image_url.url", "want a base64 data: URL or an https:// URL")
}

// apiMessage is the Messages API's answer, read to translate it.
type apiMessage struct {
	Model      string `json:"model"`
	StopReason string `json:"stop_reason"`
	Content    []struct {
		Type  string          `json:"type"`
		Text  string          `json:"text"`
		ID    string          `json:"id"`
		Name  string          `json:"name"`
		Input json.RawMessage `json:"input"`
	} `json:"content"`
}

// chatFinish maps a stop reason, tool_use included, to OpenAI's.
func chatFinish(stop string) string {
	if stop == "tool_use" {
		return "tool_calls"
	}
	return finishReason(stop)
}

// chatTools serves a chat completion only the tools backend can serve.
func (s *Server) chatTools(c *gin.Context, req *ChatRequest, field string) {
	if s.backends.Tools == nil {
		writeError(c, noToolBackend(field))
		return
	}
	body, err := chatToolBody(req)
	if err != nil {
		writeError(c, err)
		return
	}
	if err := echoSession(c); err != nil {
		writeError(c, err)
		return
	}
	c.Set(ctxAlloc, AllocFallback)
	a := answer{id: "chatcmpl-" + c.GetString(ctxRequestID), created: time.Now().Unix(), model: req.Model}
	if !req.Stream {
		res, raw, err := s.backends.Tools.Passthrough(c.Request.Context(), body, false, nil)
		if err != nil {
			writeError(c, err)
			return
		}
		s.settleTool(c, res)
		var m apiMessage
		if err := json.Unmarshal(raw, &m); err != nil {
			writeError(c, fmt.Errorf("%w: tools backend: bad message", backend.ErrBackend))
			return
		}
		msg := AssistantMessage{Role: "assistant"}
		for _, b := range m.Content {
			switch b.Type {
			case "text":
				msg.Content += b.Text
			case "tool_use":
				msg.ToolCalls = append(msg.ToolCalls, ToolCall{ID: b.ID, Type: "function",
					Function: FunctionCall{Name: b.Name, Arguments: string(b.Input)}})
			}
		}
		cc := a.completion(res)
		cc.Choices[0].Message = msg
		cc.Choices[0].FinishReason = chatFinish(res.StopReason)
		c.Header(HeaderAllocation, AllocFallback)
		c.JSON(http.StatusOK, cc)
		return
	}
	ctx, cancel := context.WithCancel(c.Request.Context())
	defer cancel()
	w := newSSEWriter(c.Writer, func(h http.Header) { h.Set(HeaderAllocation, AllocFallback) })
	send := func(d Delta) {
		if err := w.Event(a.chunk(d, nil)); err != nil {
			cancel()
		}
	}
	// toolIndex maps a content block index to its tool call's index.
	toolIndex := map[int]int{}
	res, _, err := s.backends.Tools.Passthrough(ctx, body, true, func(typ string, data []byte) {
		var ev struct {
			Index        int `json:"index"`
			ContentBlock struct {
				Type string `json:"type"`
				ID   string `json:"id"`
				Name string `json:"name"`
			} `json:"content_block"`
			Delta struct {
				Type        string `json:"type"`
				Text        string `json:"text"`
				PartialJSON string `json:"partial_json"`
			} `json:"delta"`
		}
		if json.Unmarshal(data, &ev) != nil {
			return
		}
		switch typ {
		case "message_start":
			send(Delta{Role: "assistant"})
		case "content_block_start":
			if ev.ContentBlock.Type == "tool_use" {
				k := len(toolIndex)
				toolIndex[ev.Index] = k
				send(Delta{ToolCalls: []ToolCallDelta{{Index: k, ID: ev.ContentBlock.ID, Type: "function",
					Function: FunctionCallDelta{Name: ev.ContentBlock.Name}}}})
			}
		case "content_block_delta":
			switch ev.Delta.Type {
			case "text_delta":
				if ev.Delta.Text != "" {
					send(Delta{Content: ev.Delta.Text})
				}
			case "input_json_delta":
				if k, ok := toolIndex[ev.Index]; ok && ev.Delta.PartialJSON != "" {
					send(Delta{ToolCalls: []ToolCallDelta{{Index: k,
						Function: FunctionCallDelta{Arguments: ev.Delta.PartialJSON}}}})
				}
			}
		}
	})
	if err != nil {
		if !w.Started() {
			writeError(c, err)
			return
		}
		c.Set(ctxError, err)
		_ = w.Event(apiError{Error: classify(err).body})
		return
	}
	s.settleTool(c, res)
	a.model = modelOf(res, a.model)
	fr := chatFinish(res.StopReason)
	_ = w.Event(a.chunk(Delta{}, &fr))
	if req.StreamOptions != nil && req.StreamOptions.IncludeUsage {
		u := usageOf(res)
		uc := a.chunk(Delta{}, nil)
		uc.Choices = []ChunkChoice{}
		uc.Usage = &u
		_ = w.Event(uc)
	}
	_ = w.Done()
}
