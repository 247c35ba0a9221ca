package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/authpool/authpool/pkg/backend"
	"github.com/authpool/authpool/pkg/pool"
)

func TestChatCompletion(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	resp, cc, ae := h.chat(map[string]any{"model": "sonnet", "session_id": "conv-1",
		"messages": msgs(system("Be brief."), user("Hello"))}, "X-Request-ID", "req-1")
	if resp.StatusCode != 200 {
		t.Fatalf("status = %d: %+v", resp.StatusCode, ae)
	}
	if got := resp.Header.Get(HeaderAllocation); got != "subscription" {
		t.Errorf("%s = %q", HeaderAllocation, got)
	}
	if got := resp.Header.Get(HeaderRequestID); got != "req-1" {
		t.Errorf("X-Request-ID = %q, want the client's", got)
	}
	if cc.Object != "chat.completion" || len(cc.Choices) != 1 || cc.Choices[0].Message.Content != "echo: Hello" ||
		cc.Choices[0].FinishReason != "stop" || cc.Choices[0].Message.Role != "assistant" {
		t.Errorf("answer = %+v", cc)
	}
	if cc.SessionID != "conv-1" || cc.Model != "claude-sonnet-4-5" {
		t.Errorf("session_id = %q model = %q", cc.SessionID, cc.Model)
	}
	// prompt_tokens = input + cache creation + cache read (10 + 3 + 2).
	if cc.Usage.PromptTokens != 15 || cc.Usage.CompletionTokens != 5 || cc.Usage.TotalTokens != 20 {
		t.Errorf("usage = %+v", cc.Usage)
	}
	var mu map[string]backend.ModelUsage
	if err := json.Unmarshal(cc.ClaudeMetadata.ModelUsage, &mu); err != nil || mu["claude-sonnet-4-5"].CostUSD != 0.01 {
		t.Errorf("model_usage = %s (%v)", cc.ClaudeMetadata.ModelUsage, err)
	}
	if cc.ClaudeMetadata.CostUSD != 0.01 || cc.ClaudeMetadata.NumTurns != 1 || cc.ClaudeMetadata.DurationMS != 5 {
		t.Errorf("claude_metadata = %+v", cc.ClaudeMetadata)
	}
	calls := h.callsSoFar()
	if len(calls) != 1 {
		t.Fatalf("calls = %d", len(calls))
	}
	c := calls[0]
	sess, err := h.pool.Session(context.Background(), "conv-1")
	if err != nil {
		t.Fatal(err)
	}
	sub, _ := h.pool.Subscription(sess.Subscription)
	if c.target.ConfigDir != sub.ConfigDir || c.req.SystemPrompt != "Be brief." || c.req.Model != "sonnet" {
		t.Errorf("call = %+v, want config dir of %s", c, sess.Subscription)
	}
	if sess.CLISession != c.backend+"-cli-0" || sess.Requests != 1 {
		t.Errorf("session = %+v", sess)
	}
	st := h.snapshot()[sess.Subscription]
	if st.Requests != 1 || math.Abs(st.WeeklyUsed-0.01) > 1e-9 || st.Clients != 1 {
		t.Errorf("settled = %+v", st)
	}
	// X-Request-ID is correlation only: a second turn with the same id ran
	// the backend again and is counted again (issue 8, finding 3).
	resp, _, _ = h.chat(map[string]any{"session_id": "conv-1", "messages": msgs(user("Hello"))}, "X-Request-ID", "req-1")
	if resp.StatusCode != 200 {
		t.Fatalf("second turn status = %d", resp.StatusCode)
	}
	if st := h.snapshot()[sess.Subscription]; st.Requests != 2 {
		t.Errorf("requests after two turns with one X-Request-ID = %d, want 2", st.Requests)
	}
}

// TestResume: the second turn of a session continues the CLI session with
// only the new message; the CLI session unknown to the config dir gets the
// full transcript in a new session.
func TestResume(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	turn := msgs(user("What is 2+2?"))
	if r, _, ae := h.chat(map[string]any{"session_id": "conv", "messages": turn}); r.StatusCode != 200 {
		t.Fatalf("turn 1: %d %+v", r.StatusCode, ae)
	}
	first := h.callsSoFar()[0]
	turn = append(turn, assistant("4"), user("And 3+3?"))
	if r, _, ae := h.chat(map[string]any{"session_id": "conv", "messages": turn}); r.StatusCode != 200 {
		t.Fatalf("turn 2: %d %+v", r.StatusCode, ae)
	}
	second := h.callsSoFar()[1]
	if second.backend != first.backend || second.req.ResumeSession != first.backend+"-cli-0" || second.req.Prompt != "And 3+3?" {
		t.Errorf("turn 2 call = %+v", second)
	}

	// Turn 3: the CLI does not know the session (another replica's config dir).
	b := h.subs[strings.TrimPrefix(first.backend, "cli-")]
	b.setAnswer(func(n int, tgt backend.Target, req backend.Request) (*backend.Result, error) {
		if req.ResumeSession != "" {
			return nil, fmt.Errorf("%w: No conversation found with session ID: %s", backend.ErrSessionNotFound, req.ResumeSession)
		}
		return &backend.Result{Text: "6 and 8", CLISessionID: "fresh", StopReason: "end_turn", CostUSD: 0.02}, nil
	})
	turn = append(turn, assistant("6"), user("And 4+4?"))
	r, cc, ae := h.chat(map[string]any{"session_id": "conv", "messages": turn})
	if r.StatusCode != 200 || cc.Choices[0].Message.Content != "6 and 8" {
		t.Fatalf("turn 3: %d %+v %+v", r.StatusCode, cc, ae)
	}
	calls := h.callsSoFar()
	if len(calls) != 4 {
		t.Fatalf("calls = %d, want 4 (resume, then the transcript)", len(calls))
	}
	rerun := calls[3]
	if rerun.req.ResumeSession != "" || !strings.Contains(rerun.req.Prompt, "<user>\nWhat is 2+2?\n</user>") ||
		!strings.HasSuffix(rerun.req.Prompt, "And 4+4?") {
		t.Errorf("rerun = %+v", rerun.req)
	}
	if s, _ := h.pool.Session(context.Background(), "conv"); s.CLISession != "fresh" {
		t.Errorf("cli session after the rerun = %q, want fresh", s.CLISession)
	}
}

// TestLimitMarksAndRetries: a subscription answering with a usage limit is
// marked limited until its reset and the request is served elsewhere.
func TestLimitMarksAndRetries(t *testing.T) {
	for _, stream := range []bool{false, true} {
		t.Run(fmt.Sprintf("stream=%v", stream), func(t *testing.T) {
			h := newHarness(t, harnessOpts{})
			// Bind the session first, so we know which subscription it is on.
			if r, _, _ := h.chat(map[string]any{"session_id": "s", "messages": msgs(user("a"))}); r.StatusCode != 200 {
				t.Fatal(r.StatusCode)
			}
			s, _ := h.pool.Session(context.Background(), "s")
			limited := s.Subscription
			reset := time.Now().Add(3 * time.Hour).Truncate(time.Second)
			h.subs[limited].setAnswer(func(int, backend.Target, backend.Request) (*backend.Result, error) {
				return nil, &backend.LimitError{ResetAt: reset, Message: "Claude AI usage limit reached"}
			})
			resp := h.do("POST", "/v1/chat/completions", map[string]any{"session_id": "s", "stream": stream,
				"messages": msgs(user("a"), assistant("echo: a"), user("b"))})
			defer resp.Body.Close()
			if resp.StatusCode != 200 || resp.Header.Get(HeaderAllocation) != "subscription" {
				t.Fatalf("status = %d, allocation %q", resp.StatusCode, resp.Header.Get(HeaderAllocation))
			}
			var text string
			if stream {
				for _, d := range sse(t, resp.Body) {
					var ch ChatCompletionChunk
					if json.Unmarshal([]byte(d), &ch) == nil && len(ch.Choices) > 0 {
						text += ch.Choices[0].Delta.Content
					}
				}
			} else {
				var cc ChatCompletion
				_ = json.NewDecoder(resp.Body).Decode(&cc)
				text = cc.Choices[0].Message.Content
			}
			if !strings.HasPrefix(text, "echo: ") {
				t.Errorf("answer = %q", text)
			}
			st := h.snapshot()[limited]
			if st.Status != pool.StatusLimited || !st.Until.Equal(reset) {
				t.Errorf("%s = %s until %v, want limited until %v", limited, st.Status, st.Until, reset)
			}
			s, _ = h.pool.Session(context.Background(), "s")
			if s.Subscription == limited || s.Subscription == "" {
				t.Errorf("session on %q after the limit", s.Subscription)
			}
			if ev := h.events("limit_reached"); len(ev) != 1 || ev[0]["subscriptionId"] != limited {
				t.Errorf("limit_reached events = %v", ev)
			}
			// The retry ran in a new CLI session on the other subscription: the
			// transcript, not --resume.
			calls := h.callsSoFar()
			last := calls[len(calls)-1]
			if last.req.ResumeSession != "" || !strings.Contains(last.req.Prompt, "<assistant>") {
				t.Errorf("retry = %+v", last.req)
			}
		})
	}
}

func (h *harness) events(typ string) []map[string]any {
	h.t.Helper()
	msgs, err := h.tg.Client.XRange(context.Background(), h.keys().Events(), "-", "+").Result()
	if err != nil {
		h.t.Fatal(err)
	}
	var out []map[string]any
	for _, m := range msgs {
		if m.Values["type"] == typ {
			out = append(out, m.Values)
		}
	}
	return out
}

func TestAuthFailureCoolsDownAndRetries(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	for _, b := range h.subs {
		b.setAnswer(func(int, backend.Target, backend.Request) (*backend.Result, error) {
			return nil, fmt.Errorf("%w: OAuth token has expired", backend.ErrAuth)
		})
	}
	h.subs["sub2"].setAnswer(nil)
	// Pin the session to sub1 first by limiting sub2 only for the binding.
	if _, err := h.pool.Mark(context.Background(), "sub2", pool.StatusDisabled, "test", time.Time{}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.pool.Allocate(context.Background(), "s", pool.PriorityNormal); err != nil {
		t.Fatal(err)
	}
	if _, err := h.pool.Mark(context.Background(), "sub2", pool.StatusAvailable, "test", time.Time{}); err != nil {
		t.Fatal(err)
	}
	r, _, ae := h.chat(map[string]any{"session_id": "s", "messages": msgs(user("x"))})
	if r.StatusCode != 200 {
		t.Fatalf("status = %d %+v", r.StatusCode, ae)
	}
	st := h.snapshot()["sub1"]
	if st.Status != pool.StatusCooldown || st.StatusReason != "auth" {
		t.Errorf("sub1 = %s (%s), want cooldown (auth)", st.Status, st.StatusReason)
	}
}

func TestRepeatedCrashesCoolDown(t *testing.T) {
	h := newHarness(t, harnessOpts{subs: 1, poolOpts: pool.Options{FailureThreshold: 3}})
	h.subs["sub1"].setAnswer(func(int, backend.Target, backend.Request) (*backend.Result, error) {
		return nil, fmt.Errorf("%w: exit status 2", backend.ErrBackend)
	})
	for i := 1; i <= 3; i++ {
		r, _, ae := h.chat(map[string]any{"session_id": "s", "messages": msgs(user("x"))})
		if r.StatusCode != 502 || ae.Error.Type != "backend_error" {
			t.Fatalf("request %d: %d %+v", i, r.StatusCode, ae)
		}
		if strings.Contains(ae.Error.Message, "exit status") {
			t.Errorf("backend detail leaked to the client: %q", ae.Error.Message)
		}
		want := pool.StatusAvailable
		if i == 3 {
			want = pool.StatusCooldown
		}
		if st := h.snapshot()["sub1"]; st.Status != want {
			t.Errorf("after %d crashes: %s, want %s", i, st.Status, want)
		}
	}
	if st := h.snapshot()["sub1"]; st.StatusReason != "failures" {
		t.Errorf("reason = %q", st.StatusReason)
	}
	// The next request goes to the fallback.
	r, _, _ := h.chat(map[string]any{"session_id": "s", "messages": msgs(user("x"))})
	if r.StatusCode != 200 || r.Header.Get(HeaderAllocation) != "fallback" {
		t.Errorf("after cooldown: %d %s", r.StatusCode, r.Header.Get(HeaderAllocation))
	}
}

func TestTimeoutAnswers504(t *testing.T) {
	h := newHarness(t, harnessOpts{subs: 1})
	h.subs["sub1"].setAnswer(func(int, backend.Target, backend.Request) (*backend.Result, error) {
		return nil, fmt.Errorf("%w: after 10m", backend.ErrTimeout)
	})
	r, _, ae := h.chat(map[string]any{"messages": msgs(user("x"))})
	if r.StatusCode != 504 || ae.Error.Type != "timeout_error" {
		t.Errorf("%d %+v", r.StatusCode, ae)
	}
}

func TestQueueFullAnswers429(t *testing.T) {
	h := newHarness(t, harnessOpts{subs: 1})
	h.subs["sub1"].setAnswer(func(int, backend.Target, backend.Request) (*backend.Result, error) {
		return nil, &backend.QueueFullError{Backend: "cli-sub1", RetryAfter: 7 * time.Second}
	})
	r, _, ae := h.chat(map[string]any{"messages": msgs(user("x"))})
	if r.StatusCode != 429 || ae.Error.Type != "rate_limit_error" || r.Header.Get("Retry-After") != "7" {
		t.Errorf("%d %+v Retry-After %q", r.StatusCode, ae, r.Header.Get("Retry-After"))
	}
}

func TestExhausted(t *testing.T) {
	limitAll := func(h *harness, until time.Time) {
		for id := range h.subs {
			if _, err := h.pool.Mark(context.Background(), id, pool.StatusLimited, "limit", until); err != nil {
				t.Fatal(err)
			}
		}
	}
	body := map[string]any{"session_id": "s", "messages": msgs(user("x"))}
	t.Run("fallback", func(t *testing.T) {
		h := newHarness(t, harnessOpts{})
		limitAll(h, time.Now().Add(time.Hour))
		r, cc, _ := h.chat(body)
		if r.StatusCode != 200 || r.Header.Get(HeaderAllocation) != "fallback" || cc.Choices[0].Message.Content != "echo: x" {
			t.Fatalf("%d %s %+v", r.StatusCode, r.Header.Get(HeaderAllocation), cc)
		}
		calls := h.callsSoFar()
		if len(calls) != 1 || calls[0].backend != "api" || calls[0].target != (backend.Target{}) {
			t.Errorf("calls = %+v", calls)
		}
		if fb, err := h.pool.FallbackUsage(context.Background()); err != nil || fb.Requests != 1 {
			t.Errorf("fallback usage = %+v, %v; want one request settled", fb, err)
		}
	})
	for _, tc := range []struct {
		name string
		ho   harnessOpts
	}{{"fallback off", harnessOpts{fallbackOff: true}}, {"no fallback backend", harnessOpts{noFallback: true}}} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.ho)
			limitAll(h, time.Now().Add(90*time.Second))
			r, _, ae := h.chat(body)
			if r.StatusCode != 503 || ae.Error.Type != "pool_exhausted" {
				t.Fatalf("%d %+v", r.StatusCode, ae)
			}
			ra, err := strconv.Atoi(r.Header.Get("Retry-After"))
			if err != nil || ra < 80 || ra > 91 {
				t.Errorf("Retry-After = %q, want about 90", r.Header.Get("Retry-After"))
			}
			if n := len(h.callsSoFar()); n != 0 {
				t.Errorf("%d backend calls", n)
			}
		})
	}
}

// TestServerMadeSession (issue 10): a request without a session id starts
// a session under a server-made id, named in the body and X-Session-Id; it
// is continued like any other (by the new message alone) and ends by
// DELETE, slot, binding and stored conversation.
func TestServerMadeSession(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	r, cc, ae := h.chat(map[string]any{"messages": msgs(user("Remember the number 42"))})
	if r.StatusCode != 200 {
		t.Fatalf("%d %+v", r.StatusCode, ae)
	}
	sid := cc.SessionID
	if !regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`).MatchString(sid) ||
		r.Header.Get(HeaderSessionID) != sid {
		t.Fatalf("session id %q (header %q), want a UUID in both", sid, r.Header.Get(HeaderSessionID))
	}
	r, cc, ae = h.chat(map[string]any{"session_id": sid, "messages": msgs(user("What number did I ask you to remember?"))})
	if r.StatusCode != 200 || cc.SessionID != sid {
		t.Fatalf("turn 2: %d %+v %+v", r.StatusCode, cc, ae)
	}
	calls := h.callsSoFar()
	if len(calls) != 2 || calls[1].req.ResumeSession != calls[0].backend+"-cli-0" ||
		calls[1].req.Prompt != "What number did I ask you to remember?" {
		t.Fatalf("turn 2 did not continue the CLI session with the new message: %+v", calls)
	}
	conv, err := h.pool.Conversation(context.Background(), sid, "", true)
	if err != nil || len(conv.Turns) != 2 || conv.Turns[0].User != "Remember the number 42" {
		t.Fatalf("stored conversation = %+v %v", conv, err)
	}
	resp := h.do("DELETE", "/v1/sessions/"+sid, nil)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("DELETE: %d", resp.StatusCode)
	}
	if n := h.sessionKeys(); n != 0 {
		t.Errorf("%d session keys left after DELETE", n)
	}
	for _, st := range h.snapshot() {
		if st.Clients != 0 {
			t.Errorf("%s keeps %d clients", st.ID, st.Clients)
		}
	}
}

func TestPoolDisabled(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	srv, err := New(Options{Redis: h.tg.Client, Backends: Backends{Fallback: h.fallback}})
	if err != nil {
		t.Fatal(err)
	}
	h.srv = srv
	h.http.Config.Handler = srv.Handler()
	r, cc, ae := h.chat(map[string]any{"session_id": "s", "messages": msgs(user("x"))})
	if r.StatusCode != 200 || r.Header.Get(HeaderAllocation) != "fallback" || cc.Choices[0].Message.Content != "echo: x" {
		t.Fatalf("%d %+v %+v", r.StatusCode, cc, ae)
	}
	if n := h.sessionKeys(); n != 0 {
		t.Errorf("pool off but %d sessions written", n)
	}
}

// TestEverySubscriptionLimitedInFlight: limit answers from every subscription
// in one request end on the fallback, not in an error.
func TestEverySubscriptionLimitedInFlight(t *testing.T) {
	h := newHarness(t, harnessOpts{subs: 2})
	for _, b := range h.subs {
		b.setAnswer(func(int, backend.Target, backend.Request) (*backend.Result, error) {
			return nil, &backend.LimitError{ResetAt: time.Now().Add(time.Hour)}
		})
	}
	r, _, ae := h.chat(map[string]any{"session_id": "s", "messages": msgs(user("x"))})
	if r.StatusCode != 200 || r.Header.Get(HeaderAllocation) != "fallback" {
		t.Fatalf("%d %s %+v", r.StatusCode, r.Header.Get(HeaderAllocation), ae)
	}
	var order []string
	for _, c := range h.callsSoFar() {
		order = append(order, c.backend)
	}
	if len(order) != 3 || order[2] != "api" {
		t.Errorf("calls = %v, want both subscriptions then the fallback", order)
	}
	for id, st := range h.snapshot() {
		if st.Status != pool.StatusLimited {
			t.Errorf("%s = %s", id, st.Status)
		}
	}
}

// A named key's own rate limit holds without a pool too (the limit lives in
// Redis either way): its third request in a minute is refused.
func TestKeyRateLimitWithoutAPool(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	srv, err := New(Options{Redis: h.tg.Client, Backends: Backends{Fallback: h.fallback},
		ClientKeys: []ClientKey{{Name: "alice", Key: "alice-key-0123456789", RateLimitPerMinute: 2}}})
	if err != nil {
		t.Fatal(err)
	}
	h.srv = srv
	h.http.Config.Handler = srv.Handler()
	for i := 1; i <= 3; i++ {
		r, _, ae := h.chat(map[string]any{"messages": msgs(user("x"))}, "Authorization", "Bearer alice-key-0123456789")
		want := 200
		if i == 3 {
			want = 429
		}
		if r.StatusCode != want {
			t.Fatalf("request %d: %d %+v, want %d", i, r.StatusCode, ae, want)
		}
	}
}
