package backend

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// maxCountTokensResponse bounds a count_tokens answer.
const maxCountTokensResponse = 64 << 10

// Passthrough sends a Messages API body as the client wrote it (after the
// gateway validated its envelope and set its model and stream): tools,
// tool_use and tool_result blocks, images and documents reach the API
// untouched, which the CLI cannot serve. Without streaming it returns the
// API's message as raw JSON; with streaming it relays every event to onEvent
// as it arrives (an `error` event becomes the returned error) and returns
// nil raw. The Result carries usage, model, stop reason, the text blocks'
// text and the estimated cost, for settling.
func (a *AnthropicAPI) Passthrough(ctx context.Context, body []byte, stream bool,
	onEvent func(typ string, data []byte)) (*Result, json.RawMessage, error) {
	release, err := a.gate.acquire(ctx)
	if err != nil {
		return nil, nil, err
	}
	defer release()
	runCtx, cancel := context.WithTimeout(ctx, a.opts.Timeout)
	defer cancel()
	start := time.Now()
	resp, err := a.post(runCtx, a.endpoint, body)
	if err != nil {
		return nil, nil, a.transportErr(ctx, runCtx, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, nil, a.statusErr(resp)
	}
	var res *Result
	var raw json.RawMessage
	if stream {
		res, err = a.readStream(resp.Body, nil, onEvent)
	} else {
		raw, err = io.ReadAll(io.LimitReader(resp.Body, maxResponse))
		if err == nil {
			res, err = a.readMessage(bytes.NewReader(raw))
		}
	}
	if err != nil {
		if runCtx.Err() != nil {
			return nil, nil, a.transportErr(ctx, runCtx, err)
		}
		return nil, nil, err
	}
	a.account(res, start)
	return res, raw, nil
}

// CountTokens forwards a count_tokens body to the API and returns its
// answer as raw JSON. Nothing is spent, so nothing is settled.
func (a *AnthropicAPI) CountTokens(ctx context.Context, body []byte) (json.RawMessage, error) {
	runCtx, cancel := context.WithTimeout(ctx, a.opts.Timeout)
	defer cancel()
	resp, err := a.post(runCtx, a.endpoint+"/count_tokens", body)
	if err != nil {
		return nil, a.transportErr(ctx, runCtx, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, a.statusErr(resp)
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxCountTokensResponse))
	if err != nil || !json.Valid(raw) {
		return nil, fmt.Errorf("%w: %s: bad count_tokens answer", ErrBackend, a.opts.Name)
	}
	return raw, nil
}

// post sends body to url with the API's headers.
func (a *AnthropicAPI) post(ctx context.Context, url string, body []byte) (*http.Response, error) {
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	hreq.Header.Set("x-api-key", a.opts.APIKey)
	hreq.Header.Set("anthropic-version", anthropicVersion)
	hreq.Header.Set("content-type", "application/json")
	return a.opts.HTTPClient.Do(hreq)
}

// account fills in what every API turn reports besides the answer: turns,
// duration, the estimated cost and its per-model breakdown.
func (a *AnthropicAPI) account(res *Result, start time.Time) {
	res.NumTurns = 1
	res.DurationMS = time.Since(start).Milliseconds()
	res.CostUSD = EstimateCostUSD(res.Model, res.Usage)
	res.ModelUsage = map[string]ModelUsage{res.Model: {
		InputTokens:              res.Usage.InputTokens,
		OutputTokens:             res.Usage.OutputTokens,
		CacheReadInputTokens:     res.Usage.CacheReadInputTokens,
		CacheCreationInputTokens: res.Usage.CacheCreationInputTokens,
		CostUSD:                  res.CostUSD,
	}}
}

// APIModel resolves an alias (opus, sonnet, haiku) to the API model name it
// stands for; other names are returned as they are.
func APIModel(m string) string {
	if full, ok := modelAliases[m]; ok {
		return full
	}
	return m
}
