package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/authpool/authpool/pkg/backend"
	"github.com/authpool/authpool/pkg/pool"
)

// modelAliases are the CLI's model aliases, listed by GET /v1/models.
var modelAliases = []string{"opus", "sonnet", "haiku"}

// claudeModel is a full model name passed to --model. The shape keeps argv
// free of anything that could read as a flag.
var claudeModel = regexp.MustCompile(`^claude-[A-Za-z0-9._-]{1,100}$`)

// validModel reports whether m may reach --model ("" leaves the default).
func validModel(m string) bool {
	for _, a := range modelAliases {
		if m == a {
			return true
		}
	}
	return m == "" || claudeModel.MatchString(m)
}

// decodeChat strictly decodes a chat request. Unknown fields are refused,
// so a feature the gateway does not know is never silently dropped.
func decodeChat(data []byte) (*ChatRequest, error) {
	var req ChatRequest
	if err := strictDecode(data, &req); err != nil {
		return nil, err
	}
	return &req, nil
}

// bodyReadTimeout bounds reading a request body.
const bodyReadTimeout = 30 * time.Second

// readBody reads a request's body within the size limit limitBody set and
// within bodyReadTimeout: a slow sender gets no longer. The deadline is
// lifted once the body is read, since the turn that follows may take
// minutes.
func readBody(c *gin.Context) ([]byte, error) {
	rc := http.NewResponseController(c.Writer)
	_ = rc.SetReadDeadline(time.Now().Add(bodyReadTimeout))
	defer func() { _ = rc.SetReadDeadline(time.Time{}) }()
	data, err := io.ReadAll(c.Request.Body)
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return nil, ErrBodyTooLarge
	}
	if err != nil {
		return nil, fmt.Errorf("%w: read body: %w", ErrInvalidRequest, err)
	}
	return data, nil
}

// strictDecode decodes one JSON object into v, refusing unknown fields and
// trailing data.
func strictDecode(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return &RequestError{Message: "malformed JSON body: " + jsonProblem(err)}
	}
	if dec.More() {
		return &RequestError{Message: "malformed JSON body: trailing data after the object"}
	}
	return nil
}

// jsonProblem describes a decoding error without echoing request content.
func jsonProblem(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("syntax error at byte %d", se.Offset)
	case errors.As(err, &te):
		if te.Field != "" {
			return fmt.Sprintf("field %s must be %s, got %s", te.Field, te.Type.String(), te.Value)
		}
		return "the body must be a JSON object"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "unexpected end of input"
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return "unknown field " + strings.TrimPrefix(err.Error(), "json: unknown field ")
	}
	return "not a JSON object"
}

// set reports whether a raw JSON value is present and not null.
func set(raw json.RawMessage) bool {
	t := bytes.TrimSpace(raw)
	return len(t) > 0 && !bytes.Equal(t, []byte("null"))
}

// emptyArray reports whether a raw JSON value is [] (a neutral tools list).
func emptyArray(raw json.RawMessage) bool {
	var a []json.RawMessage
	return json.Unmarshal(raw, &a) == nil && len(a) == 0
}

// turn is a validated request, ready to become a backend.Request either way:
// resumed (only the new turn) or fresh (the transcript, then the new turn).
type turn struct {
	model     string
	system    string
	newTurn   string            // the user messages after the last assistant message
	history   []backend.Message // the messages up to the last assistant message
	messages  []backend.Message // every user/assistant message, for the fallback API
	stream    bool
	usage     bool // stream_options.include_usage
	maxTokens int
	priority  pool.Priority
	owner     string // key id of the caller's API key: the session's owner
	// fresh: the session id was made for this turn, so nothing is stored
	// under it yet (no conversation to read).
	fresh bool
}

// convo is what a turn runs with besides its own text: the system prompt in
// force, the earlier turns to replay when no CLI session holds them, and
// the whole conversation as Messages API messages (the fallback).
type convo struct {
	system   string
	history  []backend.Message
	messages []backend.Message
}

// own is the conversation as the request itself tells it: for a gateway
// without a pool, and for a session with nothing stored yet.
func (t *turn) own() convo {
	return convo{system: t.system, history: t.history, messages: t.messages}
}

// convoFrom is the conversation a turn of a session continues (issue 10):
// the stored turns, replayed whatever the request resends, so that a client
// sending only the new message and one resending the whole history get the
// same conversation; the request's own history only while nothing is
// stored. The system prompt is the request's, else the stored one.
func (t *turn) convoFrom(c pool.Conversation) convo {
	cv := t.own()
	if cv.system == "" {
		cv.system = c.System
	}
	if len(c.Turns) == 0 {
		return cv
	}
	cv.history = make([]backend.Message, 0, 2*len(c.Turns))
	cv.messages = make([]backend.Message, 0, 2*len(c.Turns)+1)
	for _, st := range c.Turns {
		cv.history = append(cv.history, backend.Message{Role: "user", Content: st.User},
			backend.Message{Role: "assistant", Content: st.Assistant})
	}
	for _, m := range cv.history {
		// The Messages API refuses empty turns.
		if strings.TrimSpace(m.Content) != "" {
			cv.messages = append(cv.messages, m)
		}
	}
	cv.messages = append(cv.messages, backend.Message{Role: "user", Content: t.newTurn})
	return cv
}

// resumeRequest continues the CLI session id: only the new turn is sent.
func (t *turn) resumeRequest(id string, cv convo) backend.Request {
	r := t.base(cv)
	r.ResumeSession = id
	r.Prompt = t.newTurn
	return r
}

// replayRequest runs the turn in a new CLI session with the earlier turns
// rendered ahead of it (on the Messages API: as its messages).
func (t *turn) replayRequest(cv convo) backend.Request {
	r := t.base(cv)
	r.Prompt = transcript(cv.history, t.newTurn)
	return r
}

func (t *turn) base(cv convo) backend.Request {
	return backend.Request{Model: t.model, SystemPrompt: cv.system, Messages: cv.messages,
		Stream: t.stream, MaxTokens: t.maxTokens}
}

// request builds the backend request from the request alone; resume is the
// CLI session to continue ("" runs the transcript in a new one).
func (t *turn) request(resume string) backend.Request {
	if resume != "" {
		return t.resumeRequest(resume, t.own())
	}
	return t.replayRequest(t.own())
}

// transcript renders earlier turns ahead of the new one, for a CLI session
// that has not seen them.
func transcript(history []backend.Message, newTurn string) string {
	if len(history) == 0 {
		return newTurn
	}
	var b strings.Builder
	b.WriteString("<conversation_history>\n")
	for _, m := range history {
		fmt.Fprintf(&b, "<%s>\n%s\n</%s>\n", m.Role, m.Content, m.Role)
	}
	b.WriteString("</conversation_history>\n\n")
	b.WriteString(newTurn)
	return b.String()
}

// validate checks every field of req and builds its turn. Errors are
// *RequestError naming the field, or the pool's sentinels for session id and
// priority.
func validate(req *ChatRequest) (*turn, error) {
	if err := refuseUnsupported(req); err != nil {
		return nil, err
	}
	if !validModel(req.Model) {
		return nil, badField("model", "unknown model %q: use opus, sonnet, haiku or a claude-* model name", clip(req.Model))
	}
	pr, err := pool.ParsePriority(req.Priority)
	if err != nil {
		return nil, err
	}
	if req.Temperature != nil && (*req.Temperature < 0 || *req.Temperature > 2) {
		return nil, badField("temperature", "must be between 0 and 2")
	}
	if req.TopP != nil && (*req.TopP < 0 || *req.TopP > 1) {
		return nil, badField("top_p", "must be between 0 and 1")
	}
	t := &turn{model: req.Model, stream: req.Stream, priority: pr,
		usage: req.StreamOptions != nil && req.StreamOptions.IncludeUsage}
	for _, mt := range []struct {
		name string
		v    *int
	}{{"max_tokens", req.MaxTokens}, {"max_completion_tokens", req.MaxCompletionTokens}} {
		if mt.v == nil {
			continue
		}
		if *mt.v < 1 {
			return nil, badField(mt.name, "must be at least 1")
		}
		t.maxTokens = *mt.v
	}
	if len(req.Messages) == 0 {
		return nil, badField("messages", "at least one message is required")
	}
	var system []string
	var convo []backend.Message
	for i, m := range req.Messages {
		text, err := messageText(i, m)
		if err != nil {
			return nil, err
		}
		switch m.Role {
		case "system", "developer":
			system = append(system, text)
		case "user", "assistant":
			convo = append(convo, backend.Message{Role: m.Role, Content: text})
		}
	}
	if err := t.setConversation(system, convo, fmt.Sprintf("messages[%d].content", len(req.Messages)-1)); err != nil {
		return nil, err
	}
	return t, nil
}

// setConversation fills t from the system texts and the user/assistant
// messages of a request, either dialect: the trailing user messages are the
// new turn, what precedes them the history. lastField names the last
// message's content in errors.
func (t *turn) setConversation(system []string, convo []backend.Message, lastField string) error {
	if len(convo) == 0 || convo[len(convo)-1].Role != "user" {
		return badField("messages", "the last non-system message must be from the user")
	}
	t.system = strings.Join(system, "\n\n")
	for _, m := range convo {
		// The Messages API refuses empty turns (an assistant's null content).
		if strings.TrimSpace(m.Content) != "" {
			t.messages = append(t.messages, m)
		}
	}
	last := len(convo) - 1
	for last >= 0 && convo[last].Role == "user" {
		last--
	}
	t.history = convo[:last+1]
	var parts []string
	for _, m := range convo[last+1:] {
		parts = append(parts, m.Content)
	}
	t.newTurn = strings.Join(parts, "\n\n")
	if strings.TrimSpace(t.newTurn) == "" {
		return badField(lastField, "the new user message is empty")
	}
	return nil
}

// refuseUnsupported refuses the features the CLI cannot provide, naming the field.
func refuseUnsupported(req *ChatRequest) error {
	switch {
	case req.N != nil && *req.N != 1:
		return badField("n", "only n = 1 is supported")
	case set(req.Tools) && !emptyArray(req.Tools):
		return badField("tools", "tools are not supported")
	case set(req.ToolChoice) && strings.TrimSpace(string(req.ToolChoice)) != `"none"`:
		return badField("tool_choice", "tools are not supported")
	case set(req.Functions):
		return badField("functions", "functions are not supported")
	case set(req.FunctionCall):
		return badField("function_call", "functions are not supported")
	case req.ResponseFormat != nil && req.ResponseFormat.Type != "text":
		return badField("response_format", "only response_format type text is supported")
	case req.Logprobs != nil && *req.Logprobs:
		return badField("logprobs", "logprobs are not supported")
	case req.TopLogprobs != nil:
		return badField("top_logprobs", "logprobs are not supported")
	case set(req.Audio):
		return badField("audio", "audio output is not supported")
	case set(req.Prediction):
		return badField("prediction", "predicted outputs are not supported")
	case set(req.WebSearchOptions):
		return badField("web_search_options", "web search options are not supported")
	}
	for i, m := range req.Modalities {
		if m != "text" {
			return badField(fmt.Sprintf("modalities[%d]", i), "only the text modality is supported")
		}
	}
	return nil
}

// messageText checks one message and returns its text.
func messageText(i int, m ChatMessage) (string, error) {
	at := fmt.Sprintf("messages[%d]", i)
	switch m.Role {
	case "system", "developer", "user", "assistant":
	case "tool", "function":
		return "", badField(at+".role", "role %s is not supported (tools are not supported)", m.Role)
	case "":
		return "", badField(at+".role", "role is required: one of system, developer, user, assistant")
	default:
		return "", badField(at+".role", "unknown role %q: use system, developer, user or assistant", clip(m.Role))
	}
	if set(m.ToolCalls) && !emptyArray(m.ToolCalls) {
		return "", badField(at+".tool_calls", "tool calls are not supported")
	}
	if set(m.FunctionCall) {
		return "", badField(at+".function_call", "function calls are not supported")
	}
	if m.ToolCallID != "" {
		return "", badField(at+".tool_call_id", "tool messages are not supported")
	}
	if !set(m.Content) {
		if m.Role == "assistant" {
			return "", nil
		}
		return "", badField(at+".content", "content is required")
	}
	var s string
	if err := json.Unmarshal(m.Content, &s); err == nil {
		return s, nil
	}
	var parts []json.RawMessage
	if err := json.Unmarshal(m.Content, &parts); err != nil {
		return "", badField(at+".content", "must be a string or an array of text parts")
	}
	var b strings.Builder
	for j, raw := range parts {
		pat := fmt.Sprintf("%s.content[%d]", at, j)
		var p contentPart
		dec := json.NewDecoder(bytes.NewReader(raw))
		if err := dec.Decode(&p); err != nil {
			return "", badField(pat, "must be a content part object")
		}
		if p.Type != "text" {
			return "", badField(pat+".type", "content part type %q is not supported: only text", clip(p.Type))
		}
		if p.Text == nil {
			return "", badField(pat+".text", "text is required")
		}
		if j > 0 {
			b.WriteString("\n")
		}
		b.WriteString(*p.Text)
	}
	return b.String(), nil
}

// clip shortens a client-supplied value before it is echoed in an error.
func clip(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	return s[:max] + "…"
}
