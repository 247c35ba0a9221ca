package gateway

import "encoding/json"

// ChatRequest is the body of POST /v1/chat/completions: OpenAI's fields plus
// the extensions session_id and priority. Fields the CLI cannot honour are
// either accepted and not applied (temperature, top_p, stop, max_tokens, …:
// listed so that strict decoding accepts them) or refused with 400 by
// validate (tools, n > 1, non-text content, audio, logprobs).
type ChatRequest struct {
	Model         string         `json:"model"`
	Messages      []ChatMessage  `json:"messages"`
	Stream        bool           `json:"stream"`
	StreamOptions *StreamOptions `json:"stream_options"`

	// SessionID (extension) binds the conversation to one subscription; the
	// X-Session-Id header is the alternative.
	SessionID string `json:"session_id"`
	// Priority (extension) is high, normal (default) or low.
	Priority string `json:"priority"`

	// Accepted, not applied by the CLI (max_tokens reaches the fallback API).
	Temperature         *float64        `json:"temperature"`
	TopP                *float64        `json:"top_p"`
	Stop                json.RawMessage `json:"stop"`
	MaxTokens           *int            `json:"max_tokens"`
	MaxCompletionTokens *int            `json:"max_completion_tokens"`
	PresencePenalty     *float64        `json:"presence_penalty"`
	FrequencyPenalty    *float64        `json:"frequency_penalty"`
	Seed                *int64          `json:"seed"`
	User                string          `json:"user"`
	Metadata            json.RawMessage `json:"metadata"`
	Store               *bool           `json:"store"`
	ServiceTier         string          `json:"service_tier"`
	LogitBias           json.RawMessage `json:"logit_bias"`
	ParallelToolCalls   *bool           `json:"parallel_tool_calls"`
	ReasoningEffort     string          `json:"reasoning_effort"`

	// Refused when set to anything but their neutral value.
	N                *int            `json:"n"`
	Tools            json.RawMessage `json:"tools"`
	ToolChoice       json.RawMessage `json:"tool_choice"`
	Functions        json.RawMessage `json:"functions"`
	FunctionCall     json.RawMessage `json:"function_call"`
	ResponseFormat   *ResponseFormat `json:"response_format"`
	Logprobs         *bool           `json:"logprobs"`
	TopLogprobs      *int            `json:"top_logprobs"`
	Modalities       []string        `json:"modalities"`
	Audio            json.RawMessage `json:"audio"`
	Prediction       json.RawMessage `json:"prediction"`
	WebSearchOptions json.RawMessage `json:"web_search_options"`
}

// StreamOptions are OpenAI's stream options.
type StreamOptions struct {
	// IncludeUsage adds a usage chunk before [DONE].
	IncludeUsage bool `json:"include_usage"`
}

// ResponseFormat is OpenAI's response_format; only "text" is accepted.
type ResponseFormat struct {
	Type       string          `json:"type"`
	JSONSchema json.RawMessage `json:"json_schema"`
}

// ChatMessage is one message of a request. Content is a string, an array of
// text parts, or null (assistant only).
type ChatMessage struct {
	Role         string          `json:"role"`
	Content      json.RawMessage `json:"content"`
	Name         string          `json:"name"`
	ToolCalls    json.RawMessage `json:"tool_calls"`
	ToolCallID   string          `json:"tool_call_id"`
	FunctionCall json.RawMessage `json:"function_call"`
	Refusal      *string         `json:"refusal"`
}

// contentPart is one element of an array content.
type contentPart struct {
	Type string  `json:"type"`
	Text *string `json:"text"`
}

// ChatCompletion is the non-streaming answer: OpenAI's chat.completion plus
// session_id and claude_metadata.
type ChatCompletion struct {
	ID             string          `json:"id"`
	Object         string          `json:"object"`
	Created        int64           `json:"created"`
	Model          string          `json:"model"`
	Choices        []Choice        `json:"choices"`
	Usage          CompletionUsage `json:"usage"`
	SessionID      string          `json:"session_id,omitempty"`
	ClaudeMetadata ClaudeMetadata  `json:"claude_metadata"`
	// ConversationTruncated (extension): the session's stored conversation
	// has lost its oldest turns to conversationMaxBytes.
	ConversationTruncated bool `json:"conversation_truncated,omitempty"`
}

// Choice is the single choice of an answer.
type Choice struct {
	Index        int              `json:"index"`
	Message      AssistantMessage `json:"message"`
	FinishReason string           `json:"finish_reason"`
	Logprobs     *struct{}        `json:"logprobs"`
}

// AssistantMessage is the answer's message.
type AssistantMessage struct {
	Role    string  `json:"role"`
	Content string  `json:"content"`
	Refusal *string `json:"refusal"`
	// ToolCalls are the function calls of an answer from the tools backend.
	ToolCalls []ToolCall `json:"tool_calls,omitempty"`
}

// CompletionUsage counts tokens: prompt_tokens = input + cache creation +
// cache read; completion_tokens = output.
type CompletionUsage struct {
	PromptTokens        int64                `json:"prompt_tokens"`
	CompletionTokens    int64                `json:"completion_tokens"`
	TotalTokens         int64                `json:"total_tokens"`
	PromptTokensDetails *PromptTokensDetails `json:"prompt_tokens_details,omitempty"`
}

// PromptTokensDetails says how many prompt tokens came from the cache.
type PromptTokensDetails struct {
	CachedTokens int64 `json:"cached_tokens"`
}

// ClaudeMetadata is the answer's extension: cost and timing of the turn.
type ClaudeMetadata struct {
	CostUSD    float64         `json:"cost_usd"`
	DurationMS int64           `json:"duration_ms"`
	NumTurns   int             `json:"num_turns"`
	ModelUsage json.RawMessage `json:"model_usage"`
}

// ChatCompletionChunk is one SSE chunk of a streaming answer.
type ChatCompletionChunk struct {
	ID             string           `json:"id"`
	Object         string           `json:"object"`
	Created        int64            `json:"created"`
	Model          string           `json:"model"`
	Choices        []ChunkChoice    `json:"choices"`
	Usage          *CompletionUsage `json:"usage,omitempty"`
	SessionID      string           `json:"session_id,omitempty"`
	ClaudeMetadata *ClaudeMetadata  `json:"claude_metadata,omitempty"`
	// ConversationTruncated is set on the final chunk, as in ChatCompletion.
	ConversationTruncated bool `json:"conversation_truncated,omitempty"`
}

// ChunkChoice is the single choice of a chunk.
type ChunkChoice struct {
	Index        int       `json:"index"`
	Delta        Delta     `json:"delta"`
	FinishReason *string   `json:"finish_reason"`
	Logprobs     *struct{} `json:"logprobs"`
}

// Delta is what a chunk adds.
type Delta struct {
	Role    string `json:"role,omitempty"`
	Content string `json:"content"`
	// ToolCalls are pieces of function calls (tools backend only).
	ToolCalls []ToolCallDelta `json:"tool_calls,omitempty"`
}

// Model is one entry of GET /v1/models.
type Model struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

// ModelList is the body of GET /v1/models.
type ModelList struct {
	Object string  `json:"object"`
	Data   []Model `json:"data"`
}
