package gateway

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/authpool/authpool/pkg/backend"
	"github.com/authpool/authpool/pkg/pool"
)

// MessagesRequest is the body of POST /v1/messages: Anthropic's Messages API.
// Sampling fields (temperature, top_p, top_k, stop_sequences) and max_tokens
// are accepted and not applied by the CLI (the Messages API backend gets
// them on tool requests). Tools, tool blocks, images and documents send the
// request to the backend that supports tools.
type MessagesRequest struct {
	Model         string             `json:"model"`
	MaxTokens     *int               `json:"max_tokens"`
	System        json.RawMessage    `json:"system"`
	Messages      []AnthropicMessage `json:"messages"`
	Stream        bool               `json:"stream"`
	Metadata      *MessagesMetadata  `json:"metadata"`
	Temperature   *float64           `json:"temperature"`
	TopP          *float64           `json:"top_p"`
	TopK          *int               `json:"top_k"`
	StopSequences []string           `json:"stop_sequences"`
	// Served only by the backend that supports tools.
	Tools      json.RawMessage `json:"tools"`
	ToolChoice json.RawMessage `json:"tool_choice"`
	// Thinking is accepted; the CLI does not apply it, the Messages API
	// backend gets it on tool requests.
	Thinking json.RawMessage `json:"thinking"`
	// ServiceTier is accepted and not applied.
	ServiceTier string `json:"service_tier"`
}

// AnthropicMessage is one message: content is a string or an array of
// content blocks.
type AnthropicMessage struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

// MessagesMetadata is the request's metadata. Claude Code puts its session
// (and account data) in user_id: the gateway derives a session key from it
// and never stores it.
type MessagesMetadata struct {
	UserID string `json:"user_id"`
}

// textBlock is a text content block; cache_control and citations are
// accepted and not applied.
type textBlock struct {
	Type         string          `json:"type"`
	Text         *string         `json:"text"`
	CacheControl json.RawMessage `json:"cache_control"`
	Citations    json.RawMessage `json:"citations"`
}

// toolBlockTypes are the content blocks only a backend that supports tools
// can serve: the CLI runs with no tools and reads text only.
var toolBlockTypes = map[string]bool{
	"tool_use": true, "tool_result": true, "image": true, "document": true,
	"thinking": true, "redacted_thinking": true, "search_result": true,
	"server_tool_use": true, "web_search_tool_result": true,
}

// Bounds of the Anthropic request's fields.
const (
	maxUserIDBytes    = 4096
	maxStopSequences  = 16
	maxStopSeqBytes   = 256
	derivedSessionHex = 40
)

// MessageResponse is the answer of /v1/messages: Anthropic's message object.
type MessageResponse struct {
	ID           string         `json:"id"`
	Type         string         `json:"type"`
	Role         string         `json:"role"`
	Model        string         `json:"model"`
	Content      []ContentBlock `json:"content"`
	StopReason   *string        `json:"stop_reason"`
	StopSequence *string        `json:"stop_sequence"`
	Usage        MessageUsage   `json:"usage"`
}

// ContentBlock is a text block of an answer.
type ContentBlock struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

// MessageUsage counts tokens in Anthropic's names.
type MessageUsage struct {
	InputTokens              int64 `json:"input_tokens"`
	OutputTokens             int64 `json:"output_tokens"`
	CacheCreationInputTokens int64 `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     int64 `json:"cache_read_input_tokens"`
}

// decodeMessages reads and strictly decodes a Messages request.
func decodeMessages(c *gin.Context) (*MessagesRequest, []byte, error) {
	data, err := readBody(c)
	if err != nil {
		return nil, nil, err
	}
	var req MessagesRequest
	if err := strictDecode(data, &req); err != nil {
		return nil, nil, err
	}
	return &req, data, nil
}

// toolField names the first part of req only a backend that supports tools
// can serve, or "".
func (req *MessagesRequest) toolField() string {
	if set(req.Tools) && !emptyArray(req.Tools) {
		return "tools"
	}
	if set(req.ToolChoice) {
		return "tool_choice"
	}
	for i, m := range req.Messages {
		var blocks []struct {
			Type string `json:"type"`
		}
		if json.Unmarshal(m.Content, &blocks) != nil {
			continue
		}
		for j, b := range blocks {
			if toolBlockTypes[b.Type] {
				return fmt.Sprintf("messages[%d].content[%d]", i, j)
			}
		}
	}
	return ""
}

// validateMessages checks every field of req and builds its turn.
// messagesModel is a Messages request's model, mapped through the modelMap,
// or the error a missing or unknown one answers.
func (s *Server) messagesModel(name string) (string, error) {
	if name == "" {
		return "", badField("model", "model is required")
	}
	model := s.mapModel(name)
	if !validModel(model) {
		return "", badField("model", "unknown model %q: see GET /v1/models", clip(name))
	}
	return model, nil
}

func (s *Server) validateMessages(req *MessagesRequest) (*turn, error) {
	model, err := s.messagesModel(req.Model)
	if err != nil {
		return nil, err
	}
	if req.MaxTokens == nil {
		return nil, badField("max_tokens", "max_tokens is required")
	}
	if *req.MaxTokens < 1 {
		return nil, badField("max_tokens", "must be at least 1")
	}
	if req.Temperature != nil && (*req.Temperature < 0 || *req.Temperature > 1) {
		return nil, badField("temperature", "must be between 0 and 1")
	}
	if req.TopP != nil && (*req.TopP < 0 || *req.TopP > 1) {
		return nil, badField("top_p", "must be between 0 and 1")
	}
	if req.TopK != nil && *req.TopK < 0 {
		return nil, badField("top_k", "must be at least 0")
	}
	if len(req.StopSequences) > maxStopSequences {
		return nil, badField("stop_sequences", "at most %d", maxStopSequences)
	}
	for i, ss := range req.StopSequences {
		if len(ss) > maxStopSeqBytes {
			return nil, badField(fmt.Sprintf("stop_sequences[%d]", i), "at most %d bytes", maxStopSeqBytes)
		}
	}
	if req.Metadata != nil && len(req.Metadata.UserID) > maxUserIDBytes {
		return nil, badField("metadata.user_id", "at most %d bytes", maxUserIDBytes)
	}
	if len(req.Messages) == 0 {
		return nil, badField("messages", "at least one message is required")
	}
	t := &turn{model: model, stream: req.Stream, maxTokens: *req.MaxTokens, priority: pool.PriorityNormal}
	var system []string
	if set(req.System) {
		text, err := blocksText("system", req.System)
		if err != nil {
			return nil, err
		}
		system = append(system, text)
	}
	convo := make([]backend.Message, 0, len(req.Messages))
	for i, m := range req.Messages {
		at := fmt.Sprintf("messages[%d]", i)
		switch m.Role {
		case "user", "assistant":
		case "":
			return nil, badField(at+".role", "role is required: user or assistant")
		default:
			return nil, badField(at+".role", "unknown role %q: use user or assistant (system goes in the system field)", clip(m.Role))
		}
		if !set(m.Content) {
			return nil, badField(at+".content", "content is required")
		}
		text, err := blocksText(at+".content", m.Content)
		if err != nil {
			return nil, err
		}
		convo = append(convo, backend.Message{Role: m.Role, Content: text})
	}
	if err := t.setConversation(system, convo, fmt.Sprintf("messages[%d].content", len(req.Messages)-1)); err != nil {
		return nil, err
	}
	return t, nil
}

// blocksText reads a string or an array of text blocks.
func blocksText(at string, raw json.RawMessage) (string, error) {
	var str string
	if err := json.Unmarshal(raw, &str); err == nil {
		return str, nil
	}
	var blocks []json.RawMessage
	if err := json.Unmarshal(raw, &blocks); err != nil {
		return "", badField(at, "must be a string or an array of content blocks")
	}
	var b strings.Builder
	for j, rb := range blocks {
		bat := fmt.Sprintf("%s[%d]", at, j)
		var tb textBlock
		dec := json.NewDecoder(bytes.NewReader(rb))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&tb); err != nil {
			return "", badField(bat, "must be a text block {\"type\":\"text\",\"text\":…}")
		}
		if tb.Type != "text" {
			return "", badField(bat+".type", "content block type %q is not supported here: only text", clip(tb.Type))
		}
		if tb.Text == nil {
			return "", badField(bat+".text", "text is required")
		}
		if j > 0 {
			b.WriteString("\n")
		}
		b.WriteString(*tb.Text)
	}
	return b.String(), nil
}

// messagesSession returns the session of a Messages request: X-Session-Id,
// else a key derived from metadata.user_id and the caller's key (a hash:
// the string carries account data and may be longer than a session id
// allows, so it is never stored), else a new server-made id.
func messagesSession(c *gin.Context, req *MessagesRequest, owner string) (sid string, made bool, err error) {
	if sid := c.GetHeader(HeaderSessionID); sid != "" {
		if !pool.ValidSessionID(sid) {
			return "", false, pool.ErrInvalidSession
		}
		return sid, false, nil
	}
	if req.Metadata != nil && req.Metadata.UserID != "" {
		return derivedSession(owner, req.Metadata.UserID), false, nil
	}
	return newRequestID(), true, nil
}

// derivedSession names the session of a metadata.user_id. The owner is part
// of the hash, so two keys sending the same user_id get two sessions.
func derivedSession(owner, userID string) string {
	d := sha256.Sum256([]byte("authpool-user-id\x00" + owner + "\x00" + userID))
	return "mu-" + hex.EncodeToString(d[:])[:derivedSessionHex]
}

// messages serves POST /v1/messages.
func (s *Server) messages(c *gin.Context) {
	req, raw, err := decodeMessages(c)
	if err != nil {
		writeError(c, err)
		return
	}
	if !s.admitClient(c, s.mapModel(req.Model)) {
		return
	}
	if field := req.toolField(); field != "" {
		s.messagesTools(c, req, raw, field)
		return
	}
	t, err := s.validateMessages(req)
	if err != nil {
		writeError(c, err)
		return
	}
	t.owner = ownerOf(c)
	sid, made, err := messagesSession(c, req, t.owner)
	if err != nil {
		writeError(c, err)
		return
	}
	t.fresh = made
	c.Header(HeaderSessionID, sid)
	id := "msg_" + strings.ReplaceAll(newRequestID(), "-", "")
	if t.stream {
		s.streamMessage(c, t, sid, id)
		return
	}
	res, _, ok := s.serveWhole(c, t, sid)
	if !ok {
		return
	}
	stop := stopReason(res.StopReason)
	writeAnswer(c, MessageResponse{ID: id, Type: "message", Role: "assistant",
		Model: modelOf(res, t.model), Content: []ContentBlock{{Type: "text", Text: res.Text}},
		StopReason: &stop, Usage: messageUsage(res.Usage)})
}

// streamMessage relays the turn as Anthropic's events: message_start,
// content_block_start and ping with the first text, a content_block_delta
// per delta (streamTurn), then content_block_stop, message_delta and
// message_stop.
func (s *Server) streamMessage(c *gin.Context, t *turn, sid, id string) {
	res, _, w := s.streamTurn(c, t, sid, func(w *sseWriter) streamFrame {
		return streamFrame{
			open: func() {
				_ = w.Named("message_start", gin.H{"type": "message_start", "message": MessageResponse{ID: id,
					Type: "message", Role: "assistant", Model: t.modelName(), Content: []ContentBlock{}}})
				_ = w.Named("content_block_start", gin.H{"type": "content_block_start", "index": 0,
					"content_block": ContentBlock{Type: "text"}})
				_ = w.Named("ping", gin.H{"type": "ping"})
			},
			delta: func(text string) error {
				return w.Named("content_block_delta", gin.H{"type": "content_block_delta", "index": 0,
					"delta": gin.H{"type": "text_delta", "text": text}})
			},
			fail: func(err error) {
				_, body := classify(err).anthropic()
				_ = w.Named("error", body)
			},
		}
	})
	if res == nil {
		return
	}
	_ = w.Named("content_block_stop", gin.H{"type": "content_block_stop", "index": 0})
	_ = w.Named("message_delta", gin.H{"type": "message_delta",
		"delta": gin.H{"stop_reason": stopReason(res.StopReason), "stop_sequence": nil},
		"usage": messageUsage(res.Usage)})
	_ = w.Named("message_stop", gin.H{"type": "message_stop"})
	markTiming(c, msEncode)
}

// modelName is the model an answer names before the backend said which.
func (t *turn) modelName() string {
	if t.model == "" {
		return "claude"
	}
	return t.model
}

// stopReason is the model's stop reason, end_turn when the backend gave none.
func stopReason(s string) string {
	if s == "" {
		return "end_turn"
	}
	return s
}

func messageUsage(u backend.Usage) MessageUsage {
	return MessageUsage{InputTokens: u.InputTokens, OutputTokens: u.OutputTokens,
		CacheCreationInputTokens: u.CacheCreationInputTokens, CacheReadInputTokens: u.CacheReadInputTokens}
}
