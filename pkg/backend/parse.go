package backend

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// cliResult is the `result` object the CLI prints: the last line of
// stream-json (and the whole output of --output-format json, which the
// gateway does not use: one parser serves streaming and non-streaming turns).
type cliResult struct {
	Type         string                `json:"type"`
	Subtype      string                `json:"subtype"`
	IsError      bool                  `json:"is_error"`
	DurationMS   int64                 `json:"duration_ms"`
	NumTurns     int                   `json:"num_turns"`
	Result       string                `json:"result"`
	SessionID    string                `json:"session_id"`
	TotalCostUSD float64               `json:"total_cost_usd"`
	Usage        Usage                 `json:"usage"`
	ModelUsage   map[string]ModelUsage `json:"modelUsage"`
	StopReason   string                `json:"stop_reason"`
}

func (r *cliResult) toResult() (*Result, error) {
	if r.Type != "result" {
		return nil, fmt.Errorf("%w: output is not a result object (type %q)", ErrBackend, excerpt(r.Type))
	}
	if r.TotalCostUSD < 0 || r.DurationMS < 0 || r.NumTurns < 0 || r.Usage.negative() {
		return nil, fmt.Errorf("%w: result has negative cost or counts", ErrBackend)
	}
	for _, mu := range r.ModelUsage {
		if mu.CostUSD < 0 || mu.InputTokens < 0 || mu.OutputTokens < 0 ||
			mu.CacheReadInputTokens < 0 || mu.CacheCreationInputTokens < 0 {
			return nil, fmt.Errorf("%w: result has negative model usage", ErrBackend)
		}
	}
	res := &Result{
		Text:         r.Result,
		CLISessionID: r.SessionID,
		StopReason:   r.StopReason,
		Model:        mainModel(r.ModelUsage),
		CostUSD:      r.TotalCostUSD,
		DurationMS:   r.DurationMS,
		NumTurns:     r.NumTurns,
		Usage:        r.Usage,
		ModelUsage:   r.ModelUsage,
		IsError:      r.IsError,
		Subtype:      r.Subtype,
	}
	if res.StopReason == "" && !r.IsError {
		// The json format carries no stop reason; a finished turn ended.
		res.StopReason = "end_turn"
	}
	return res, nil
}

func (u Usage) negative() bool {
	return u.InputTokens < 0 || u.OutputTokens < 0 || u.CacheCreationInputTokens < 0 || u.CacheReadInputTokens < 0
}

// mainModel picks the model that cost the most (the CLI may use a small
// model on the side); ties go to the most output, then the name.
func mainModel(mu map[string]ModelUsage) string {
	best := ""
	for name, u := range mu {
		if best == "" {
			best = name
			continue
		}
		b := mu[best]
		switch {
		case u.CostUSD != b.CostUSD:
			if u.CostUSD > b.CostUSD {
				best = name
			}
		case u.OutputTokens != b.OutputTokens:
			if u.OutputTokens > b.OutputTokens {
				best = name
			}
		case name < best:
			best = name
		}
	}
	return best
}

// StreamDecoder decodes the lines of `claude -p --output-format stream-json
// --verbose --include-partial-messages`, one Line call per line, and relays
// text deltas as they come.
//
// It is also the sandbox's last check: the first line that carries text
// must follow a system/init line that lists no tools and no MCP servers
// (ErrSandbox otherwise), so a CLI that mounted tools — a changed flag, a
// new CLI version — is stopped before any of its output is relayed.
type StreamDecoder struct {
	onDelta    func(string)
	initSeen   bool
	model      string
	session    string
	stop       string
	result     *cliResult
	rateLimits []RateLimit
	stray      []string // non-JSON lines, kept (bounded) for error classification
	strayLen   int
	synthetic  strings.Builder // the CLI's own assistant messages, for classifying a failure
}

// NewStreamDecoder returns a decoder that calls onDelta (nil allowed) with
// each text delta. Only the stream events' text_delta are relayed, never the
// whole assistant messages: the CLI reports a limit or a login failure as a
// synthetic assistant message without stream events, and that must not reach
// a client as an answer.
func NewStreamDecoder(onDelta func(text string)) *StreamDecoder {
	return &StreamDecoder{onDelta: onDelta}
}

// streamLine is the union of the stream-json line shapes this package reads.
type streamLine struct {
	Type          string            `json:"type"`
	Subtype       string            `json:"subtype"`
	SessionID     string            `json:"session_id"`
	Model         string            `json:"model"`
	Tools         []json.RawMessage `json:"tools"`
	MCPServers    []json.RawMessage `json:"mcp_servers"`
	Event         json.RawMessage   `json:"event"`
	Message       *apiMessage       `json:"message"`
	RateLimitInfo *rateLimitInfo    `json:"rate_limit_info"`
}

// apiMessage is a Messages API message, as the CLI wraps it.
type apiMessage struct {
	Model      string `json:"model"`
	StopReason string `json:"stop_reason"`
	Content    []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	} `json:"content"`
}

// syntheticModel is the model the CLI names on the assistant messages it
// writes itself (a limit, a refused login), as opposed to the model's.
const syntheticModel = "<synthetic>"

// apiEvent is a Messages API stream event.
type apiEvent struct {
	Type    string      `json:"type"`
	Message *apiMessage `json:"message"`
	Delta   struct {
		Type       string `json:"type"`
		Text       string `json:"text"`
		StopReason string `json:"stop_reason"`
	} `json:"delta"`
}

// Bounds on what the decoder keeps besides the answer.
const (
	maxStray      = 4 << 10 // non-JSON output kept for classification
	maxRateLimits = 16      // rate_limit_event lines kept (the newest win)
)

// Line decodes one line. Lines that are not JSON are kept for error
// classification, not refused: the CLI may print warnings. It fails on a
// result line that does not decode, and with ErrSandbox on an init line
// that lists tools or MCP servers or on text that comes before any init.
func (d *StreamDecoder) Line(line []byte) error {
	line = bytes.TrimSpace(line)
	if len(line) == 0 {
		return nil
	}
	var l streamLine
	if line[0] != '{' || json.Unmarshal(line, &l) != nil {
		if d.strayLen < maxStray {
			d.stray = append(d.stray, string(line[:min(len(line), maxStray-d.strayLen)]))
			d.strayLen += len(line)
		}
		return nil
	}
	switch l.Type {
	case "system":
		if l.Subtype == "init" {
			if len(l.Tools) > 0 || len(l.MCPServers) > 0 {
				return fmt.Errorf("%w: %w: init lists %d tools and %d MCP servers (%s)", ErrBackend, ErrSandbox,
					len(l.Tools), len(l.MCPServers), excerpt(string(bytes.Join(rawStrings(l.Tools), []byte(",")))))
			}
			d.initSeen = true
			d.model, d.session = l.Model, l.SessionID
		}
		return nil
	case "rate_limit_event":
		if l.RateLimitInfo != nil {
			if len(d.rateLimits) == maxRateLimits {
				d.rateLimits = d.rateLimits[1:]
			}
			r := l.RateLimitInfo.reading()
			r.ObservedAt = time.Now()
			d.rateLimits = append(d.rateLimits, r)
		}
		return nil
	case "stream_event", "assistant", "result":
		if !d.initSeen {
			return fmt.Errorf("%w: %w: %s line before the init line", ErrBackend, ErrSandbox, l.Type)
		}
	}
	switch l.Type {
	case "stream_event":
		d.event(l.Event)
	case "assistant":
		if l.Message == nil {
			return nil
		}
		if l.Message.StopReason != "" {
			d.stop = l.Message.StopReason
		}
		if l.Message.Model != syntheticModel {
			return nil // the model's own words never classify a failure
		}
		for _, c := range l.Message.Content {
			if c.Type == "text" && d.synthetic.Len() < maxStray {
				d.synthetic.WriteString(c.Text)
			}
		}
	case "result":
		var r cliResult
		if err := json.Unmarshal(line, &r); err != nil {
			return fmt.Errorf("%w: bad result line: %s", ErrBackend, excerpt(err.Error()))
		}
		d.result = &r
	}
	return nil
}

// rawStrings are the JSON values of vs, for naming them in an error.
func rawStrings(vs []json.RawMessage) [][]byte {
	out := make([][]byte, len(vs))
	for i, v := range vs {
		out[i] = v
	}
	return out
}

func (d *StreamDecoder) event(raw json.RawMessage) {
	var ev apiEvent
	if json.Unmarshal(raw, &ev) != nil {
		return
	}
	switch ev.Type {
	case "message_start":
		if ev.Message != nil && ev.Message.Model != "" {
			d.model = ev.Message.Model
		}
	case "content_block_delta":
		if ev.Delta.Type == "text_delta" && ev.Delta.Text != "" {
			if d.onDelta != nil {
				d.onDelta(ev.Delta.Text)
			}
		}
	case "message_delta":
		if ev.Delta.StopReason != "" {
			d.stop = ev.Delta.StopReason
		}
	}
}

// Result returns the turn's result once the last line has been decoded, with
// IsError set for an is_error result. No result line yields an error
// wrapping ErrBackend.
func (d *StreamDecoder) Result() (*Result, error) {
	if d.result == nil {
		return nil, fmt.Errorf("%w: stream ended without a result", ErrBackend)
	}
	res, err := d.result.toResult()
	if err != nil {
		return nil, err
	}
	if d.result.StopReason == "" && d.stop != "" {
		res.StopReason = d.stop
	}
	if res.Model == "" {
		res.Model = d.model
	}
	if res.CLISessionID == "" {
		res.CLISessionID = d.session
	}
	res.RateLimits = d.rateLimits
	return res, nil
}

// text is everything the stream said besides deltas that may explain a
// failure: stray lines and the CLI's own (synthetic) assistant messages.
// The model's text is never part of it: a prompt can make the model say
// anything, a limit message included.
func (d *StreamDecoder) text() string {
	return strings.Join(append(d.stray, d.synthetic.String()), "\n")
}

// RateLimits are the rate_limit_event lines decoded so far, oldest first
// (at most the newest 16).
func (d *StreamDecoder) RateLimits() []RateLimit { return d.rateLimits }
