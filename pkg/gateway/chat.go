package gateway

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/authpool/authpool/pkg/backend"
	"github.com/authpool/authpool/pkg/pool"
)

// HeaderSessionID carries the session id when the body has none; every
// answer names its session in it.
const HeaderSessionID = "X-Session-Id"

// HeaderConversationTruncated is "true" when the session's stored
// conversation has lost its oldest turns to conversationMaxBytes.
const HeaderConversationTruncated = "X-AuthPool-Conversation-Truncated"

// HeaderAllocation says where a request ran: subscription or fallback.
const HeaderAllocation = "X-AuthPool-Allocation"

// sessionOf returns the request's session id. A request without one starts
// a new session under an id the server makes (a UUID): it is continued like
// any other and ends by DELETE /v1/sessions/:id or by going stale. made
// says the id is such a new one.
func sessionOf(c *gin.Context, req *ChatRequest) (sid string, made bool, err error) {
	body, header := req.SessionID, c.GetHeader(HeaderSessionID)
	if body != "" && header != "" && body != header {
		return "", false, badField("session_id", "session_id and the X-Session-Id header differ")
	}
	sid = body
	if sid == "" {
		sid = header
	}
	if sid == "" {
		return newRequestID(), true, nil
	}
	if !pool.ValidSessionID(sid) {
		return "", false, pool.ErrInvalidSession
	}
	return sid, false, nil
}

// chatCompletions serves POST /v1/chat/completions.
func (s *Server) chatCompletions(c *gin.Context) {
	data, err := readBody(c)
	var req *ChatRequest
	if err == nil {
		req, err = decodeChat(data)
	}
	if err != nil {
		writeError(c, err)
		return
	}
	req.Model = s.mapModel(req.Model)
	if !s.admitClient(c, req.Model) {
		return
	}
	if field := chatToolField(req); field != "" {
		s.chatTools(c, req, field)
		return
	}
	t, err := validate(req)
	if err != nil {
		writeError(c, err)
		return
	}
	sid, made, err := sessionOf(c, req)
	if err != nil {
		writeError(c, err)
		return
	}
	t.fresh = made
	t.owner = ownerOf(c)
	c.Header(HeaderSessionID, sid)
	a := answer{id: "chatcmpl-" + c.GetString(ctxRequestID), created: time.Now().Unix(), model: t.model,
		session: sid}
	if t.stream {
		s.streamChat(c, t, sid, a)
		return
	}
	res, pl, ok := s.serveWhole(c, t, sid)
	if !ok {
		return
	}
	cc := a.completion(res)
	cc.ConversationTruncated = pl.truncated
	writeAnswer(c, cc)
}

// writeAnswer writes a turn's whole answer as JSON with its length and
// flushes it, so the client has all of it before the turn's settle (run
// after the handler returns) — without a length, the response would end
// only when the handler returns.
func writeAnswer(c *gin.Context, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeError(c, err)
		return
	}
	h := c.Writer.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	setServerTiming(c.Request.Context(), h)
	c.Writer.WriteHeader(http.StatusOK)
	_, _ = c.Writer.Write(b)
	_ = http.NewResponseController(c.Writer).Flush()
	markTiming(c, msEncode)
}

// serveWhole runs a non-streaming turn for either dialect and sets what
// both answer with: the placement for the logs and metrics, the allocation
// and truncation headers, or the error. ok is false when the error is
// written.
func (s *Server) serveWhole(c *gin.Context, t *turn, sid string) (*backend.Result, placement, bool) {
	var pl placement
	res, after, err := s.serve(c.Request.Context(), t, sid, c.GetString(ctxRequestID), &pl, nil, nil)
	setAfter(c, after)
	c.Set(ctxAlloc, pl.kind)
	c.Set(ctxSub, pl.sub)
	if err != nil {
		writeError(c, err)
		return nil, pl, false
	}
	c.Header(HeaderAllocation, pl.kind)
	if pl.truncated {
		c.Header(HeaderConversationTruncated, "true")
	}
	return res, pl, true
}

// streamChat serves a streaming request: the role chunk and text deltas as
// the backend produces them (streamTurn), the finish chunk, a usage chunk
// when asked, then [DONE].
func (s *Server) streamChat(c *gin.Context, t *turn, sid string, a answer) {
	res, pl, w := s.streamTurn(c, t, sid, func(w *sseWriter) streamFrame {
		return streamFrame{
			open:  func() { _ = w.Event(a.chunk(Delta{Role: "assistant"}, nil)) },
			delta: func(text string) error { return w.Event(a.chunk(Delta{Content: text}, nil)) },
			fail:  func(err error) { _ = w.Event(apiError{Error: classify(err).body}) },
		}
	})
	if res == nil {
		return
	}
	a.model = modelOf(res, a.model)
	fr := finishReason(res.StopReason)
	last := a.chunk(Delta{}, &fr)
	md := metadata(res)
	last.ClaudeMetadata = &md
	last.ConversationTruncated = pl.truncated
	_ = w.Event(last)
	if t.usage {
		u := usageOf(res)
		uc := a.chunk(Delta{}, nil)
		uc.Choices = []ChunkChoice{}
		uc.Usage = &u
		_ = w.Event(uc)
	}
	_ = w.Done()
	markTiming(c, msEncode)
}

// answer holds what every chunk and the completion repeat.
type answer struct {
	id      string
	created int64
	model   string
	session string
}

func (a answer) chunk(d Delta, finish *string) ChatCompletionChunk {
	return ChatCompletionChunk{ID: a.id, Object: "chat.completion.chunk", Created: a.created,
		Model: a.modelName(), SessionID: a.session,
		Choices: []ChunkChoice{{Index: 0, Delta: d, FinishReason: finish}}}
}

func (a answer) modelName() string {
	if a.model == "" {
		return "claude"
	}
	return a.model
}

func (a answer) completion(res *backend.Result) ChatCompletion {
	a.model = modelOf(res, a.model)
	return ChatCompletion{ID: a.id, Object: "chat.completion", Created: a.created, Model: a.modelName(),
		Choices: []Choice{{Index: 0, Message: AssistantMessage{Role: "assistant", Content: res.Text},
			FinishReason: finishReason(res.StopReason)}},
		Usage: usageOf(res), SessionID: a.session, ClaudeMetadata: metadata(res)}
}

func modelOf(res *backend.Result, requested string) string {
	if res.Model != "" {
		return res.Model
	}
	return requested
}

// finishReason maps the model's stop reason to OpenAI's.
func finishReason(stop string) string {
	switch stop {
	case "max_tokens":
		return "length"
	case "refusal":
		return "content_filter"
	}
	return "stop"
}

// usageOf counts every input token (uncached, cache writes, cache reads) as
// a prompt token.
func usageOf(res *backend.Result) CompletionUsage {
	u := res.Usage
	prompt := u.InputTokens + u.CacheCreationInputTokens + u.CacheReadInputTokens
	return CompletionUsage{PromptTokens: prompt, CompletionTokens: u.OutputTokens,
		TotalTokens: prompt + u.OutputTokens, PromptTokensDetails: &PromptTokensDetails{CachedTokens: u.CacheReadInputTokens}}
}

func metadata(res *backend.Result) ClaudeMetadata {
	mu := json.RawMessage("{}")
	if len(res.ModelUsage) > 0 {
		if b, err := json.Marshal(res.ModelUsage); err == nil {
			mu = b
		}
	}
	return ClaudeMetadata{CostUSD: res.CostUSD, DurationMS: res.DurationMS, NumTurns: res.NumTurns, ModelUsage: mu}
}
