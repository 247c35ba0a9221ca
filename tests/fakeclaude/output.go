package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// output prints answers in the format the flags asked for.
type output struct {
	format  string
	partial bool
	model   string
	session string
	start   time.Time
	delay   time.Duration // between stream deltas
	dir     string        // the config dir
	tools   []string      // what the init line lists
	mcp     []any
}

// builtinTools are the tools a run mounts by default
// (fixtures/claude-cli/init-default-tools.json).
var builtinTools = []string{"Task", "Bash", "Glob", "Grep", "LS", "ExitPlanMode", "Read", "Edit", "MultiEdit",
	"Write", "NotebookEdit", "WebFetch", "TodoWrite", "WebSearch"}

func newOutput(f flags, dir string, forceTools bool) *output {
	model := f.model
	switch model {
	case "":
		model = "claude-sonnet-4-5"
	case "opus":
		model = "claude-opus-4-1"
	case "sonnet":
		model = "claude-sonnet-4-5"
	case "haiku":
		model = "claude-haiku-4-5"
	}
	o := &output{format: f.format, partial: f.partial, model: model, session: newUUID(),
		start: time.Now(), delay: 10 * time.Millisecond, dir: dir, tools: []string{}, mcp: []any{}}
	switch {
	case forceTools:
		o.tools = []string{"Read"}
	case f.tools == nil:
		o.tools = builtinTools
	case *f.tools != "":
		o.tools = strings.Split(*f.tools, ",")
	}
	if !f.strictMCP {
		for _, name := range settingsMCPServers(dir) {
			o.mcp = append(o.mcp, map[string]any{"name": name, "status": "connected"})
			o.tools = append(o.tools, "mcp__"+name+"__search")
		}
	}
	return o
}

// settingsMCPServers are the names of the MCP servers of dir/settings.json.
func settingsMCPServers(dir string) []string {
	b, err := os.ReadFile(filepath.Join(dir, "settings.json"))
	if err != nil {
		return nil
	}
	var s struct {
		MCPServers map[string]any `json:"mcpServers"`
	}
	_ = json.Unmarshal(b, &s)
	var names []string
	for name := range s.MCPServers {
		names = append(names, name)
	}
	return names
}

// result is the CLI's result object, field for field as
// fixtures/claude-cli/result-success.json.
type result struct {
	Type              string                `json:"type"`
	Subtype           string                `json:"subtype"`
	IsError           bool                  `json:"is_error"`
	DurationMS        int64                 `json:"duration_ms"`
	DurationAPIMS     int64                 `json:"duration_api_ms"`
	NumTurns          int                   `json:"num_turns"`
	Result            string                `json:"result"`
	SessionID         string                `json:"session_id"`
	TotalCostUSD      float64               `json:"total_cost_usd"`
	Usage             usage                 `json:"usage"`
	ModelUsage        map[string]modelUsage `json:"modelUsage"`
	PermissionDenials []any                 `json:"permission_denials"`
	UUID              string                `json:"uuid"`
}

type usage struct {
	InputTokens              int64 `json:"input_tokens"`
	CacheCreationInputTokens int64 `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     int64 `json:"cache_read_input_tokens"`
	OutputTokens             int64 `json:"output_tokens"`
	ServerToolUse            struct {
		WebSearchRequests int64 `json:"web_search_requests"`
	} `json:"server_tool_use"`
	ServiceTier string `json:"service_tier"`
}

type modelUsage struct {
	InputTokens              int64   `json:"inputTokens"`
	OutputTokens             int64   `json:"outputTokens"`
	CacheReadInputTokens     int64   `json:"cacheReadInputTokens"`
	CacheCreationInputTokens int64   `json:"cacheCreationInputTokens"`
	WebSearchRequests        int64   `json:"webSearchRequests"`
	CostUSD                  float64 `json:"costUSD"`
	ContextWindow            int64   `json:"contextWindow"`
}

func (o *output) result(text string, isError bool, cost float64) result {
	in, out := int64(12), int64(len(text)/4+1)
	ms := time.Since(o.start).Milliseconds()
	subtype := "success"
	if isError {
		subtype = "error_during_execution"
	}
	r := result{Type: "result", Subtype: subtype, IsError: isError, DurationMS: ms, DurationAPIMS: ms,
		NumTurns: 1, Result: text, SessionID: o.session, TotalCostUSD: cost,
		ModelUsage: map[string]modelUsage{o.model: {InputTokens: in, OutputTokens: out, CostUSD: cost,
			ContextWindow: 200000}},
		PermissionDenials: []any{}, UUID: newUUID()}
	r.Usage.InputTokens, r.Usage.OutputTokens, r.Usage.ServiceTier = in, out, "standard"
	return r
}

// succeed prints the answer and remembers the session.
func (o *output) succeed(dir, text string) {
	cost := 0.0123
	raw := os.Getenv("FAKECLAUDE_COST")
	if b, err := os.ReadFile(filepath.Join(dir, "fake-cost")); err == nil {
		raw = strings.TrimSpace(string(b))
	}
	if v, err := strconv.ParseFloat(raw, 64); err == nil && v >= 0 {
		cost = v
	}
	recordSession(dir, o.session)
	res := o.result(text, false, cost)
	switch o.format {
	case "text":
		fmt.Println(text)
	case "json":
		emit(res)
	case "stream-json":
		o.init()
		if o.partial {
			o.streamEvents(text)
		}
		o.assistant(text)
		emit(res)
	}
}

// fail prints an error result the way the CLI reports a limit or a refused
// login, and returns the exit status.
func (o *output) fail(msg string) int {
	res := o.result(msg, true, 0)
	switch o.format {
	case "text":
		fmt.Println(msg)
	case "json":
		emit(res)
	case "stream-json":
		o.init()
		o.message(msg, "<synthetic>")
		emit(res)
	}
	return 1
}

// init prints the init line, then the rate_limit_event lines of
// fake-rate-limits.jsonl.
func (o *output) init() {
	cwd, _ := os.Getwd()
	emit(map[string]any{"type": "system", "subtype": "init", "cwd": cwd, "session_id": o.session,
		"tools": o.tools, "mcp_servers": o.mcp, "model": o.model, "permissionMode": "default", "apiKeySource": "none"})
	if b, err := os.ReadFile(filepath.Join(o.dir, "fake-rate-limits.jsonl")); err == nil {
		if len(b) > 0 && b[len(b)-1] != '\n' {
			b = append(b, '\n')
		}
		os.Stdout.Write(b)
	}
}

// streamEvents prints the Messages API stream of text, one text_delta per
// word, with o.delay between them.
func (o *output) streamEvents(text string) {
	ev := func(e map[string]any) {
		emit(map[string]any{"type": "stream_event", "session_id": o.session, "event": e})
	}
	ev(map[string]any{"type": "message_start", "message": map[string]any{"id": "msg_fake", "type": "message",
		"role": "assistant", "model": o.model, "content": []any{}}})
	ev(map[string]any{"type": "content_block_start", "index": 0,
		"content_block": map[string]any{"type": "text", "text": ""}})
	for i, w := range words(text) {
		if i > 0 {
			time.Sleep(o.delay)
		}
		ev(map[string]any{"type": "content_block_delta", "index": 0,
			"delta": map[string]any{"type": "text_delta", "text": w}})
	}
	ev(map[string]any{"type": "content_block_stop", "index": 0})
	ev(map[string]any{"type": "message_stop"})
}

func (o *output) assistant(text string) { o.message(text, o.model) }

// message prints a whole assistant message; the CLI names the model
// "<synthetic>" on the messages it writes itself (a limit, a refused login).
func (o *output) message(text, model string) {
	emit(map[string]any{"type": "assistant", "session_id": o.session, "message": map[string]any{
		"id": "msg_fake", "type": "message", "role": "assistant", "model": model,
		"content":     []any{map[string]any{"type": "text", "text": text}},
		"stop_reason": "end_turn", "usage": map[string]any{"input_tokens": 12, "output_tokens": len(text)/4 + 1}}})
}

// words splits text before each space, so that the pieces join back to it.
func words(text string) []string {
	var out []string
	for len(text) > 0 {
		i := strings.IndexByte(text[1:], ' ')
		if i < 0 {
			out = append(out, text)
			break
		}
		out = append(out, text[:i+1])
		text = text[i+1:]
	}
	return out
}

// emit prints one JSON line and flushes it (stdout is unbuffered in Go), so
// that a reader sees each line as it is written.
func emit(v any) {
	b, _ := json.Marshal(v)
	os.Stdout.Write(append(b, '\n'))
}
