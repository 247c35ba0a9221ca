// Package backend runs one chat turn on a model: through the Claude Code CLI
// under one subscription's config dir (claude-cli), or through the Anthropic
// Messages API (anthropic-api, the fallback). It parses the CLI's output,
// recognises usage-limit and authentication failures, and bounds how many
// turns run at once. It knows nothing of the pool or of Redis: the gateway
// decides which subscription a turn runs under and passes it as a Target.
package backend

import "context"

// Backend runs one turn.
type Backend interface {
	// Name identifies the backend in logs and metrics.
	Name() string
	// Run runs req under tgt. When req.Stream is set, onDelta (nil allowed)
	// receives each text delta as it arrives, on the goroutine that called
	// Run, before Run returns. Errors wrap
	// ErrLimited (as *LimitError), ErrAuth, ErrSessionNotFound, ErrTimeout,
	// ErrQueueFull (as *QueueFullError), ErrCanceled, ErrInvalidRequest or
	// ErrBackend; they never contain a token or an API key.
	Run(ctx context.Context, tgt Target, req Request, onDelta func(text string)) (*Result, error)
}

// Target is the subscription a turn runs under. The anthropic-api backend
// ignores it.
type Target struct {
	// ConfigDir is the subscription's Claude Code config dir, passed to the
	// CLI as CLAUDE_CONFIG_DIR. Absolute; empty leaves the CLI's default.
	ConfigDir string
	// OAuthToken, when set, is passed to the CLI as CLAUDE_CODE_OAUTH_TOKEN
	// (a `claude setup-token` token). It never reaches argv, logs or errors.
	OAuthToken string
}

// Request is one turn.
type Request struct {
	// Model is an alias (opus, sonnet, haiku) or a claude-* name; empty
	// leaves the backend's default.
	Model string
	// SystemPrompt replaces the default system prompt when set.
	SystemPrompt string
	// Prompt is what the CLI reads on stdin: the new turn, or the earlier
	// turns rendered as a transcript followed by the new one. The
	// anthropic-api backend uses it as the only user message when Messages
	// is empty.
	Prompt string
	// ResumeSession is the CLI session to continue (--resume); empty starts
	// a new one. Shape ^[A-Za-z0-9-]{1,128}$. Ignored by anthropic-api.
	ResumeSession string
	// Messages is the full transcript (user and assistant turns, no system),
	// for the anthropic-api backend. Ignored by claude-cli.
	Messages []Message
	// Stream asks for text deltas through onDelta as they are generated.
	Stream bool
	// MaxTokens caps the answer (anthropic-api; default 4096). The CLI has no
	// such option and ignores it.
	MaxTokens int
}

// Message is one turn of a transcript.
type Message struct {
	// Role is "user" or "assistant".
	Role string `json:"role"`
	// Content is the text of the turn.
	Content string `json:"content"`
}

// Result is the outcome of a turn.
type Result struct {
	// Text is the answer.
	Text string
	// CLISessionID is the CLI session the turn ran in; pass it as
	// ResumeSession to continue. Empty for anthropic-api.
	CLISessionID string
	// StopReason is the model's stop reason (end_turn, max_tokens, …).
	StopReason string
	// Model is the model that answered (for the CLI, the one that cost the
	// most when several took part).
	Model string
	// CostUSD is the cost of the turn: the CLI's total_cost_usd, or an
	// estimate from list prices for anthropic-api (see EstimateCostUSD).
	CostUSD float64
	// DurationMS is how long the turn took.
	DurationMS int64
	// NumTurns is the number of model turns the CLI took (1 for the API).
	NumTurns int
	// Usage has the token counts of the turn.
	Usage Usage
	// ModelUsage breaks usage and cost down by model.
	ModelUsage map[string]ModelUsage
	// IsError is the CLI's is_error flag. Run returns a Result with it set
	// only inside a classified error (LimitError.Result: the usage a limited
	// turn reported), never as an answer.
	IsError bool
	// Subtype is the CLI's result subtype (success, error_during_execution, …).
	Subtype string
	// RateLimits are the CLI's rate_limit_event readings of the turn, oldest
	// first: where the subscription's usage windows stood.
	RateLimits []RateLimit
}

// Usage has token counts in the Messages API's names.
type Usage struct {
	// InputTokens are uncached input tokens.
	InputTokens int64 `json:"input_tokens"`
	// OutputTokens are generated tokens.
	OutputTokens int64 `json:"output_tokens"`
	// CacheCreationInputTokens were written to the prompt cache.
	CacheCreationInputTokens int64 `json:"cache_creation_input_tokens"`
	// CacheReadInputTokens were read from the prompt cache.
	CacheReadInputTokens int64 `json:"cache_read_input_tokens"`
}

// Total is every input and output token of u.
func (u Usage) Total() int64 {
	return u.InputTokens + u.OutputTokens + u.CacheCreationInputTokens + u.CacheReadInputTokens
}

// ModelUsage is one model's share of a turn, in the CLI's modelUsage names.
type ModelUsage struct {
	// InputTokens are uncached input tokens.
	InputTokens int64 `json:"inputTokens"`
	// OutputTokens are generated tokens.
	OutputTokens int64 `json:"outputTokens"`
	// CacheReadInputTokens were read from the prompt cache.
	CacheReadInputTokens int64 `json:"cacheReadInputTokens"`
	// CacheCreationInputTokens were written to the prompt cache.
	CacheCreationInputTokens int64 `json:"cacheCreationInputTokens"`
	// WebSearchRequests counts server-side web searches.
	WebSearchRequests int64 `json:"webSearchRequests"`
	// CostUSD is this model's cost.
	CostUSD float64 `json:"costUSD"`
	// ContextWindow is the model's context window in tokens (0 if unknown).
	ContextWindow int64 `json:"contextWindow"`
}
