package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/authpool/authpool/pkg/backend"
	"github.com/authpool/authpool/pkg/pool"
)

// ToolBackend serves what the CLI cannot: tools, tool_use and tool_result
// blocks, images and documents, as Messages API bodies passed through (the
// anthropic-api backend whose supportsTools is true). The CLI never gets
// them: it runs sandboxed with no tools.
type ToolBackend interface {
	// Name identifies the backend in logs.
	Name() string
	// Passthrough sends a Messages API body; see backend.AnthropicAPI.
	Passthrough(ctx context.Context, body []byte, stream bool,
		onEvent func(typ string, data []byte)) (*backend.Result, json.RawMessage, error)
}

// tokenCounter forwards /v1/messages/count_tokens.
type tokenCounter interface {
	CountTokens(ctx context.Context, body []byte) (json.RawMessage, error)
}

var (
	_ ToolBackend  = (*backend.AnthropicAPI)(nil)
	_ tokenCounter = (*backend.AnthropicAPI)(nil)
)

// noToolBackend is the refusal of a request only a tools backend can serve
// when none is configured.
func noToolBackend(field string) error {
	return badField(field, "needs a backend that supports tools (an anthropic-api backend with supportsTools "+
		"in backends.json); none is configured, and the CLI runs without tools")
}

// messagesTools serves a Messages request that carries tools, tool blocks,
// images or documents: passed through to the tools backend, settled as
// fallback usage. Such a request carries its whole conversation (the tool
// blocks cannot be replayed as text), so it is not stored in a session.
func (s *Server) messagesTools(c *gin.Context, req *MessagesRequest, raw []byte, field string) {
	if s.backends.Tools == nil {
		writeError(c, noToolBackend(field))
		return
	}
	body, err := s.toolBody(req, raw)
	if err != nil {
		writeError(c, err)
		return
	}
	if err := echoSession(c); err != nil {
		writeError(c, err)
		return
	}
	c.Set(ctxAlloc, AllocFallback)
	if !req.Stream {
		res, out, err := s.backends.Tools.Passthrough(c.Request.Context(), body, false, nil)
		if err != nil {
			writeError(c, err)
			return
		}
		s.settleTool(c, res)
		c.Header(HeaderAllocation, AllocFallback)
		c.Data(http.StatusOK, "application/json", out)
		return
	}
	ctx, cancel := context.WithCancel(c.Request.Context())
	defer cancel()
	w := newSSEWriter(c.Writer, func(h http.Header) { h.Set(HeaderAllocation, AllocFallback) })
	res, _, err := s.backends.Tools.Passthrough(ctx, body, true, func(typ string, data []byte) {
		if err := w.NamedRaw(typ, data); err != nil {
			cancel()
		}
	})
	if err != nil {
		if !w.Started() {
			writeError(c, err)
			return
		}
		c.Set(ctxError, err)
		_, eb := classify(err).anthropic()
		_ = w.Named("error", eb)
		return
	}
	s.settleTool(c, res)
}

// echoSession names a tool request's X-Session-Id in the answer, checked
// like any session id. The request itself carries its conversation (tool
// blocks cannot be replayed as text), so nothing is stored under it.
func echoSession(c *gin.Context) error {
	sid := c.GetHeader(HeaderSessionID)
	if sid == "" {
		return nil
	}
	if !pool.ValidSessionID(sid) {
		return pool.ErrInvalidSession
	}
	c.Header(HeaderSessionID, sid)
	return nil
}

// toolBody checks the envelope of a tool request (the blocks themselves are
// the API's to judge) and rewrites what the gateway owns: the model (mapped,
// aliases resolved) and metadata, which stays here (user_id carries the
// client's account data).
func (s *Server) toolBody(req *MessagesRequest, raw []byte) ([]byte, error) {
	model, err := s.messagesModel(req.Model)
	if err != nil {
		return nil, err
	}
	if req.MaxTokens == nil || *req.MaxTokens < 1 {
		return nil, badField("max_tokens", "max_tokens is required, at least 1")
	}
	if len(req.Messages) == 0 {
		return nil, badField("messages", "at least one message is required")
	}
	for i, m := range req.Messages {
		at := fmt.Sprintf("messages[%d]", i)
		if m.Role != "user" && m.Role != "assistant" {
			return nil, badField(at+".role", "role must be user or assistant")
		}
		var str string
		var blocks []struct {
			Type string `json:"type"`
		}
		if json.Unmarshal(m.Content, &str) == nil {
			continue
		}
		if json.Unmarshal(m.Content, &blocks) != nil || len(blocks) == 0 {
			return nil, badField(at+".content", "must be a string or a non-empty array of content blocks")
		}
		for j, b := range blocks {
			if b.Type == "" {
				return nil, badField(fmt.Sprintf("%s.content[%d].type", at, j), "type is required")
			}
		}
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return nil, &RequestError{Message: "malformed JSON body"}
	}
	m, _ := json.Marshal(backend.APIModel(model))
	fields["model"] = m
	delete(fields, "metadata")
	return json.Marshal(fields)
}

// settleTool settles a tool request as fallback usage under a server-made
// settlement id.
func (s *Server) settleTool(c *gin.Context, res *backend.Result) {
	if s.pool == nil || res == nil {
		return
	}
	s.settle(c.Request.Context(), c.GetString(ctxRequestID), newRequestID(), "", "", res, false)
}

// countTokens serves POST /v1/messages/count_tokens by forwarding it to the
// anthropic-api backend; without one it is a clear 404: the CLI cannot count.
func (s *Server) countTokens(c *gin.Context) {
	var counter tokenCounter
	if tc, ok := s.backends.Tools.(tokenCounter); ok && s.backends.Tools != nil {
		counter = tc
	} else if tc, ok := s.backends.Fallback.(tokenCounter); ok && s.backends.Fallback != nil {
		counter = tc
	}
	data, err := readBody(c)
	if err != nil {
		writeError(c, err)
		return
	}
	if counter == nil {
		writeError(c, ErrNoCounter)
		return
	}
	var req struct {
		Model    string          `json:"model"`
		Messages json.RawMessage `json:"messages"`
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil {
		writeError(c, &RequestError{Message: "malformed JSON body: " + jsonProblem(err)})
		return
	}
	_ = json.Unmarshal(data, &req)
	model := s.mapModel(req.Model)
	if req.Model == "" || !validModel(model) {
		writeError(c, badField("model", "a known model is required: see GET /v1/models"))
		return
	}
	if !set(req.Messages) {
		writeError(c, badField("messages", "messages are required"))
		return
	}
	// A named key's models hold here too: counting is the model's service.
	if !s.admitClient(c, model) {
		return
	}
	m, _ := json.Marshal(backend.APIModel(model))
	fields["model"] = m
	delete(fields, "metadata")
	body, _ := json.Marshal(fields)
	out, err := counter.CountTokens(c.Request.Context(), body)
	if err != nil {
		writeError(c, err)
		return
	}
	c.Data(http.StatusOK, "application/json", out)
}
