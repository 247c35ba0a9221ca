package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/authpool/authpool/internal/testutil"
	"github.com/authpool/authpool/pkg/backend"
)

func TestStreaming(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	resp := h.do("POST", "/v1/chat/completions", map[string]any{"session_id": "s", "stream": true,
		"stream_options": map[string]any{"include_usage": true}, "messages": msgs(user("one two three"))})
	defer resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") ||
		resp.Header.Get(HeaderAllocation) != "subscription" {
		t.Fatalf("status %d, headers %v", resp.StatusCode, resp.Header)
	}
	events := sse(t, resp.Body)
	if len(events) < 4 || events[len(events)-1] != "[DONE]" {
		t.Fatalf("events = %q", events)
	}
	var chunks []ChatCompletionChunk
	for _, e := range events[:len(events)-1] {
		var ch ChatCompletionChunk
		if err := json.Unmarshal([]byte(e), &ch); err != nil {
			t.Fatalf("chunk %q: %v", e, err)
		}
		if ch.Object != "chat.completion.chunk" || ch.SessionID != "s" {
			t.Errorf("chunk = %+v", ch)
		}
		chunks = append(chunks, ch)
	}
	if d := chunks[0].Choices[0].Delta; d.Role != "assistant" || d.Content != "" {
		t.Errorf("first chunk delta = %+v, want the role", d)
	}
	var text string
	var finish []string
	for _, ch := range chunks {
		for _, c := range ch.Choices {
			text += c.Delta.Content
			if c.FinishReason != nil {
				finish = append(finish, *c.FinishReason)
			}
		}
	}
	if text != "echo: one two three" {
		t.Errorf("text = %q", text)
	}
	if len(finish) != 1 || finish[0] != "stop" {
		t.Errorf("finish reasons = %v", finish)
	}
	usage := chunks[len(chunks)-1]
	if len(usage.Choices) != 0 || usage.Usage == nil || usage.Usage.PromptTokens != 15 || usage.Usage.CompletionTokens != 5 {
		t.Errorf("usage chunk = %+v", usage)
	}
	fin := chunks[len(chunks)-2]
	if fin.ClaudeMetadata == nil || fin.ClaudeMetadata.CostUSD != 0.01 {
		t.Errorf("finish chunk = %+v", fin)
	}
	if calls := h.callsSoFar(); len(calls) != 1 || !calls[0].req.Stream {
		t.Errorf("calls = %+v", calls)
	}
}

// TestStreamMaxTokens: a max_tokens stop is finish_reason length.
func TestStreamMaxTokens(t *testing.T) {
	h := newHarness(t, harnessOpts{subs: 1})
	h.subs["sub1"].setAnswer(func(int, backend.Target, backend.Request) (*backend.Result, error) {
		return &backend.Result{Text: "cut", StopReason: "max_tokens"}, nil
	})
	resp := h.do("POST", "/v1/chat/completions", map[string]any{"stream": true, "messages": msgs(user("x"))})
	defer resp.Body.Close()
	events := sse(t, resp.Body)
	if !strings.Contains(strings.Join(events, "\n"), `"finish_reason":"length"`) {
		t.Errorf("events = %q", events)
	}
}

// TestStreamErrorAfterText: a failure once text went out ends the stream
// with an OpenAI error event (and no [DONE]); nothing is retried.
func TestStreamErrorAfterText(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	fail := &streamingFake{fakeBackend: h.subs["sub1"], err: &backend.LimitError{ResetAt: time.Now().Add(time.Hour)}}
	h.srv.backends.Subscriptions["sub1"] = fail
	h.srv.backends.Subscriptions["sub2"] = &streamingFake{fakeBackend: h.subs["sub2"], err: &backend.LimitError{}}
	resp := h.do("POST", "/v1/chat/completions", map[string]any{"stream": true, "messages": msgs(user("x"))})
	defer resp.Body.Close()
	events := sse(t, resp.Body)
	all := strings.Join(events, "\n")
	if !strings.Contains(all, `"partial"`) || !strings.Contains(all, `"rate_limit_error"`) || strings.Contains(all, "[DONE]") {
		t.Errorf("events = %q", events)
	}
	if n := len(h.callsSoFar()); n != 1 {
		t.Errorf("calls = %d, want 1 (no retry after text was relayed)", n)
	}
	// The limit is recorded all the same.
	limited := 0
	for _, st := range h.snapshot() {
		if st.Status == "limited" {
			limited++
		}
	}
	if limited != 1 {
		t.Errorf("%d subscriptions limited, want 1", limited)
	}
}

// streamingFake relays one delta, then fails.
type streamingFake struct {
	*fakeBackend
	err error
}

func (s *streamingFake) Run(ctx context.Context, tgt backend.Target, req backend.Request, onDelta func(string)) (*backend.Result, error) {
	s.mu.Lock()
	*s.calls = append(*s.calls, call{backend: s.name, target: tgt, req: req})
	s.mu.Unlock()
	onDelta("partial")
	return nil, s.err
}

// TestClientDisconnectStopsBackend: when the client goes away mid-stream
// the backend's context ends (the CLI backend then kills its process).
func TestClientDisconnectStopsBackend(t *testing.T) {
	h := newHarness(t, harnessOpts{subs: 1})
	stopped := make(chan error, 1)
	h.srv.backends.Subscriptions["sub1"] = &blockingFake{stopped: stopped}
	req, _ := http.NewRequest("POST", h.http.URL+"/v1/chat/completions",
		strings.NewReader(`{"stream":true,"messages":[{"role":"user","content":"x"}]}`))
	ctx, cancel := context.WithCancel(context.Background())
	req = req.WithContext(ctx)
	resp, err := h.http.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(resp.Body).ReadString('\n')
	if !strings.HasPrefix(line, "data: ") {
		t.Fatalf("first line = %q", line)
	}
	// The session's activity while its turn runs: its lease.
	scores := func() map[string]float64 {
		zs, _ := h.tg.Client.ZRangeWithScores(context.Background(), h.keys().Clients("sub1"), 0, -1).Result()
		m := map[string]float64{}
		for _, z := range zs {
			m[z.Member.(string)] = z.Score
		}
		return m
	}
	during := scores()
	if len(during) != 1 {
		t.Fatalf("%d sessions on sub1 while the turn runs, want 1", len(during))
	}
	// Scores are in ms: the end must come at least one ms after the start
	// for it to show as a later score.
	time.Sleep(5 * time.Millisecond)
	cancel()
	resp.Body.Close()
	select {
	case err := <-stopped:
		if err == nil {
			t.Error("backend context ended without an error")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("backend still running 5 s after the client left")
	}
	// The turn ended with it: the session is active for the idle age from
	// the end, later than the lease its start gave it.
	ended := func() bool {
		for sid, sc := range scores() {
			if sc > during[sid] {
				return true
			}
		}
		return false
	}
	if !testutil.Within(2*time.Second, ended) {
		t.Errorf("the turn's end was not recorded after the disconnect: %v then %v", during, scores())
	}
}

// blockingFake relays one delta and then waits for its context.
type blockingFake struct{ stopped chan error }

func (b *blockingFake) Name() string { return "blocking" }

func (b *blockingFake) Run(ctx context.Context, _ backend.Target, _ backend.Request, onDelta func(string)) (*backend.Result, error) {
	onDelta("hello")
	<-ctx.Done()
	b.stopped <- ctx.Err()
	return nil, backend.ErrCanceled
}
