package backend

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// sseEvent is the union of the Messages API stream events read here.
type sseEvent struct {
	Type    string `json:"type"`
	Message struct {
		Model string `json:"model"`
		Usage Usage  `json:"usage"`
	} `json:"message"`
	Delta struct {
		Type       string `json:"type"`
		Text       string `json:"text"`
		StopReason string `json:"stop_reason"`
	} `json:"delta"`
	Usage *Usage `json:"usage"` // message_delta: cumulative counts
	Error struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	} `json:"error"`
}

// errStreamDone stops reading at message_stop.
var errStreamDone = errors.New("stream done")

// readStream reads the server-sent events of a streaming answer, relaying
// text deltas to onDelta as they arrive, and every event but `error` (which
// becomes the returned error) to onEvent (nil allowed) as its type and data.
func (a *AnthropicAPI) readStream(r io.Reader, onDelta func(string), onEvent func(typ string, data []byte)) (*Result, error) {
	res := &Result{}
	var text strings.Builder
	var data []byte
	dispatch := func() error {
		if len(data) == 0 {
			return nil
		}
		var ev sseEvent
		err := json.Unmarshal(data, &ev)
		if err == nil && onEvent != nil && ev.Type != "error" && ev.Type != "" {
			onEvent(ev.Type, data)
		}
		data = data[:0]
		if err != nil {
			return fmt.Errorf("%w: %s: bad stream event: %s", ErrBackend, a.opts.Name, excerpt(err.Error()))
		}
		switch ev.Type {
		case "message_start":
			res.Model, res.Usage = ev.Message.Model, ev.Message.Usage
		case "content_block_delta":
			if ev.Delta.Type == "text_delta" && ev.Delta.Text != "" {
				text.WriteString(ev.Delta.Text)
				if onDelta != nil {
					onDelta(ev.Delta.Text)
				}
			}
		case "message_delta":
			if ev.Delta.StopReason != "" {
				res.StopReason = ev.Delta.StopReason
			}
			if u := ev.Usage; u != nil {
				mergeUsage(&res.Usage, *u)
			}
		case "message_stop":
			return errStreamDone
		case "error":
			return a.streamErr(ev.Error.Type, ev.Error.Message)
		}
		return nil
	}
	err := readLines(r, func(line []byte) error {
		line = bytes.TrimRight(line, "\r\n")
		switch {
		case len(line) == 0:
			return dispatch()
		case bytes.HasPrefix(line, []byte("data:")):
			if len(data) > 0 {
				data = append(data, '\n')
			}
			data = append(data, bytes.TrimPrefix(bytes.TrimPrefix(line, []byte("data:")), []byte(" "))...)
		}
		return nil // event:, id:, comments: the type is in the data
	})
	if err == nil {
		err = dispatch() // a last event without its blank line
	}
	switch {
	case errors.Is(err, errStreamDone):
	case err != nil:
		if errors.Is(err, ErrLimited) || errors.Is(err, ErrAuth) || errors.Is(err, ErrBackend) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %s: reading stream: %s", ErrBackend, a.opts.Name, excerpt(err.Error(), a.opts.APIKey))
	default:
		return nil, fmt.Errorf("%w: %s: stream ended before message_stop", ErrBackend, a.opts.Name)
	}
	if res.Usage.negative() {
		return nil, fmt.Errorf("%w: %s: negative usage", ErrBackend, a.opts.Name)
	}
	res.Text = text.String()
	return res, nil
}

// mergeUsage takes the counts message_delta reports (output always, input
// and cache counts in newer API versions).
func mergeUsage(dst *Usage, u Usage) {
	if u.OutputTokens != 0 {
		dst.OutputTokens = u.OutputTokens
	}
	if u.InputTokens != 0 {
		dst.InputTokens = u.InputTokens
	}
	if u.CacheCreationInputTokens != 0 {
		dst.CacheCreationInputTokens = u.CacheCreationInputTokens
	}
	if u.CacheReadInputTokens != 0 {
		dst.CacheReadInputTokens = u.CacheReadInputTokens
	}
}

// streamErr classifies an `error` event.
func (a *AnthropicAPI) streamErr(typ, msg string) error {
	m := excerpt(typ+": "+msg, a.opts.APIKey)
	switch typ {
	case "rate_limit_error":
		return &LimitError{Message: m}
	case "authentication_error", "permission_error":
		return fmt.Errorf("%w: %s: %s", ErrAuth, a.opts.Name, m)
	}
	return fmt.Errorf("%w: %s: %s", ErrBackend, a.opts.Name, m)
}
