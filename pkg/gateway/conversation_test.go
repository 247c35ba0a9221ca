package gateway

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/authpool/authpool/pkg/backend"
	"github.com/authpool/authpool/pkg/pool"
)

// TestContinuationSameForBothClientStyles (issue 10): a client that sends
// only the new message and one that resends the whole history (OpenAI
// style) get the same conversation: on --resume the CLI receives the new
// turn alone.
func TestContinuationSameForBothClientStyles(t *testing.T) {
	h := newHarness(t, harnessOpts{subs: 1})
	say := []string{"Remember the number 42", "And the word blue", "What did I ask you to remember?"}
	var history []map[string]any
	for i, text := range say {
		// Client A: the new message only.
		r, a, ae := h.chat(map[string]any{"session_id": "only-new", "messages": msgs(user(text))})
		if r.StatusCode != 200 {
			t.Fatalf("A turn %d: %d %+v", i+1, r.StatusCode, ae)
		}
		// Client B: the whole history, then the new message.
		history = append(history, user(text))
		r, b, ae := h.chat(map[string]any{"session_id": "whole-history", "messages": history})
		if r.StatusCode != 200 {
			t.Fatalf("B turn %d: %d %+v", i+1, r.StatusCode, ae)
		}
		history = append(history, assistant(b.Choices[0].Message.Content))
		if a.Choices[0].Message.Content != b.Choices[0].Message.Content {
			t.Errorf("turn %d: A got %q, B got %q", i+1, a.Choices[0].Message.Content, b.Choices[0].Message.Content)
		}
	}
	calls := h.callsSoFar()
	if len(calls) != 6 {
		t.Fatalf("%d backend calls, want 6", len(calls))
	}
	for i, c := range calls {
		turn := i / 2
		if c.req.Prompt != say[turn] {
			t.Errorf("call %d (turn %d) prompt %q, want only %q", i, turn+1, c.req.Prompt, say[turn])
		}
		if (turn > 0) != (c.req.ResumeSession != "") {
			t.Errorf("call %d (turn %d) resume %q", i, turn+1, c.req.ResumeSession)
		}
	}
}

// TestReplayOnAnotherSubscription (issue 10): when its subscription is
// limited between turns, a session continues on another with its stored
// conversation replayed (system prompt included) into a new CLI session,
// which the next turn resumes with the new message only.
func TestReplayOnAnotherSubscription(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	ctx := context.Background()
	r, cc, ae := h.chat(map[string]any{"messages": msgs(system("Be brief."), user("Remember the number 42"))})
	if r.StatusCode != 200 {
		t.Fatalf("turn 1: %d %+v", r.StatusCode, ae)
	}
	sid := cc.SessionID
	first, _ := h.pool.Session(ctx, sid)
	if _, err := h.pool.Mark(ctx, first.Subscription, pool.StatusLimited, "limit", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if r, _, ae := h.chat(map[string]any{"session_id": sid, "messages": msgs(user("Which number?"))}); r.StatusCode != 200 {
		t.Fatalf("turn 2: %d %+v", r.StatusCode, ae)
	}
	if r, _, ae := h.chat(map[string]any{"session_id": sid, "messages": msgs(user("And doubled?"))}); r.StatusCode != 200 {
		t.Fatalf("turn 3: %d %+v", r.StatusCode, ae)
	}
	calls := h.callsSoFar()
	if len(calls) != 3 {
		t.Fatalf("%d calls, want 3", len(calls))
	}
	second, third := calls[1], calls[2]
	if second.backend == calls[0].backend || second.req.ResumeSession != "" {
		t.Fatalf("turn 2 ran on %s resuming %q, want another subscription and a new CLI session", second.backend, second.req.ResumeSession)
	}
	for _, want := range []string{"<user>\nRemember the number 42\n</user>", "<assistant>\necho: Remember the number 42\n</assistant>"} {
		if !strings.Contains(second.req.Prompt, want) {
			t.Errorf("turn 2 replay lacks %q:\n%s", want, second.req.Prompt)
		}
	}
	if !strings.HasSuffix(second.req.Prompt, "Which number?") || second.req.SystemPrompt != "Be brief." {
		t.Errorf("turn 2 = prompt %q, system %q", second.req.Prompt, second.req.SystemPrompt)
	}
	if third.backend != second.backend || third.req.ResumeSession != second.backend+"-cli-0" ||
		third.req.Prompt != "And doubled?" || third.req.SystemPrompt != "Be brief." {
		t.Errorf("turn 3 = %s resume %q prompt %q system %q", third.backend, third.req.ResumeSession,
			third.req.Prompt, third.req.SystemPrompt)
	}
	// A different system prompt applies from its turn on.
	h.chat(map[string]any{"session_id": sid, "messages": msgs(system("Answer in French."), user("Encore?"))})
	h.chat(map[string]any{"session_id": sid, "messages": msgs(user("Et après?"))})
	calls = h.callsSoFar()
	if got := calls[len(calls)-1].req.SystemPrompt; got != "Answer in French." {
		t.Errorf("system prompt after a new one = %q", got)
	}
}

// TestFallbackGetsStoredConversation (issue 10): on the fallback API the
// stored conversation becomes the Messages API messages.
func TestFallbackGetsStoredConversation(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	ctx := context.Background()
	r, cc, ae := h.chat(map[string]any{"messages": msgs(user("Remember the number 42"))})
	if r.StatusCode != 200 {
		t.Fatalf("turn 1: %d %+v", r.StatusCode, ae)
	}
	for id := range h.subs {
		if _, err := h.pool.Mark(ctx, id, pool.StatusLimited, "limit", time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	var answers []string
	for _, text := range []string{"Which number?", "And doubled?"} {
		r, a, ae := h.chat(map[string]any{"session_id": cc.SessionID, "messages": msgs(user(text))})
		if r.StatusCode != 200 || r.Header.Get(HeaderAllocation) != AllocFallback {
			t.Fatalf("%q: %d %s %+v", text, r.StatusCode, r.Header.Get(HeaderAllocation), ae)
		}
		answers = append(answers, a.Choices[0].Message.Content)
	}
	calls := h.callsSoFar()
	want := []backend.Message{{Role: "user", Content: "Remember the number 42"},
		{Role: "assistant", Content: "echo: Remember the number 42"},
		{Role: "user", Content: "Which number?"}, {Role: "assistant", Content: answers[0]},
		{Role: "user", Content: "And doubled?"}}
	got := calls[2].req.Messages
	if calls[2].backend != "api" || len(got) != len(want) {
		t.Fatalf("fallback call %s messages %+v", calls[2].backend, got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("message %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}
