package tests

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

// TestConversationAcrossReplicas (issue 3, "must show" 1): non-streaming and
// streaming turns of one session on two replicas stay on one subscription;
// the CLI runs under that subscription's config dir (and token), resumes its
// session on the second turn, and a session unknown to the config dir is
// rerun with the full transcript.
func TestConversationAcrossReplicas(t *testing.T) {
	c := startCluster(t, clusterOpts{})
	a, b := c.replicas[0].client(clientKey), c.replicas[1].client(clientKey)
	ctx := context.Background()
	const sid = "e2e-conversation"
	withSession := option.WithHeader("X-Session-Id", sid)

	// Turn 1, replica A, not streaming.
	var hr *http.Response
	params := openai.ChatCompletionNewParams{Model: "sonnet", Messages: []openai.ChatCompletionMessageParamUnion{
		openai.SystemMessage("Answer briefly."), openai.UserMessage("What is 2+2?")}}
	cc, err := a.Chat.Completions.New(ctx, params, withSession, option.WithResponseInto(&hr))
	if err != nil {
		t.Fatalf("turn 1: %v", err)
	}
	if got := cc.Choices[0].Message.Content; got != "echo: What is 2+2?" {
		t.Errorf("turn 1 answer = %q", got)
	}
	if hr.Header.Get("X-AuthPool-Allocation") != "subscription" || cc.Choices[0].FinishReason != "stop" {
		t.Errorf("allocation %q finish %q", hr.Header.Get("X-AuthPool-Allocation"), cc.Choices[0].FinishReason)
	}
	if raw := cc.JSON.ExtraFields["session_id"].Raw(); raw != `"`+sid+`"` {
		t.Errorf("session_id = %s", raw)
	}
	if raw := cc.JSON.ExtraFields["claude_metadata"].Raw(); !strings.Contains(raw, `"cost_usd":0.0123`) ||
		!strings.Contains(raw, `"model_usage":{"claude-sonnet-4-5":`) {
		t.Errorf("claude_metadata = %s", raw)
	}
	if cc.Usage.PromptTokens != 12 || cc.Usage.CompletionTokens == 0 {
		t.Errorf("usage = %+v", cc.Usage)
	}
	subID := c.session(sid)["sub"]
	if subID == "" {
		t.Fatalf("session not bound: %v", c.session(sid))
	}
	calls := c.calls(subID)
	if len(calls) != 1 {
		t.Fatalf("%s calls = %d", subID, len(calls))
	}
	first := calls[0]
	if first.ConfigDir != c.sub(subID).dir || first.flag("--model") != "sonnet" ||
		first.flag("--system-prompt") != "Answer briefly." || first.flag("--output-format") != "stream-json" || first.has("--resume") {
		t.Errorf("turn 1 CLI call = %+v", first)
	}
	cliSession := c.session(sid)["cliSession"]
	if cliSession == "" {
		t.Fatal("no CLI session recorded after turn 1")
	}

	// A second session lands on the other subscription: each call carries
	// only its own subscription's credentials.
	if _, err := b.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "haiku",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")}},
		option.WithHeader("X-Session-Id", "e2e-other")); err != nil {
		t.Fatal(err)
	}
	if other := c.session("e2e-other")["sub"]; other == subID {
		t.Errorf("second session also on %s", other)
	}
	tokenSum := sha256.Sum256([]byte(tokenValue))
	for _, s := range c.subs {
		for _, call := range c.calls(s.id) {
			if call.ConfigDir != s.dir {
				t.Errorf("%s: CLI ran with CLAUDE_CONFIG_DIR %q", s.id, call.ConfigDir)
			}
			wantToken := s.id == "sub1" // the subscription with oauthTokenEnv
			if call.OAuthTokenSet != wantToken || (wantToken && call.OAuthTokenSHA256 != hex.EncodeToString(tokenSum[:])) {
				t.Errorf("%s: CLAUDE_CODE_OAUTH_TOKEN set=%v sha=%s", s.id, call.OAuthTokenSet, call.OAuthTokenSHA256)
			}
			for _, leaked := range []string{tokenVar, "API_KEYS", "ANTHROPIC_API_KEY", "REDIS_URL"} {
				if slices.Contains(call.EnvNames, leaked) {
					t.Errorf("%s: the CLI inherited %s", s.id, leaked)
				}
			}
		}
	}

	// Turn 2, replica B, streaming: same subscription, --resume, only the
	// new message on stdin.
	params.Messages = append(params.Messages, openai.AssistantMessage(cc.Choices[0].Message.Content),
		openai.UserMessage("And 3+3?"))
	params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	stream := b.Chat.Completions.NewStreaming(ctx, params, withSession, option.WithResponseInto(&hr))
	var text, finish string
	deltas, usageChunks := 0, 0
	for stream.Next() {
		ch := stream.Current()
		for _, choice := range ch.Choices {
			if choice.Delta.Content != "" {
				deltas++
				text += choice.Delta.Content
			}
			if choice.FinishReason != "" {
				finish = choice.FinishReason
			}
		}
		if ch.Usage.TotalTokens > 0 {
			usageChunks++
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatalf("turn 2 stream: %v", err)
	}
	if text != "echo: And 3+3?" || deltas < 3 || finish != "stop" || usageChunks != 1 {
		t.Errorf("turn 2: text %q in %d deltas, finish %q, usage chunks %d", text, deltas, finish, usageChunks)
	}
	if hr.Header.Get("X-AuthPool-Allocation") != "subscription" || !strings.HasPrefix(hr.Header.Get("Content-Type"), "text/event-stream") {
		t.Errorf("turn 2 headers = %v", hr.Header)
	}
	if got := c.session(sid)["sub"]; got != subID {
		t.Errorf("session moved from %s to %s between replicas", subID, got)
	}
	calls = c.calls(subID)
	second := calls[len(calls)-1]
	if second.flag("--resume") != cliSession || second.Prompt != "And 3+3?" ||
		second.flag("--output-format") != "stream-json" || !second.has("--verbose") {
		t.Errorf("turn 2 CLI call = args %q prompt %q", second.Args, second.Prompt)
	}

	// Turn 3, replica A: the config dir no longer holds the CLI session (as
	// when another machine ran turn 2): the turn still succeeds, through the
	// full transcript.
	if err := os.RemoveAll(filepath.Join(c.sub(subID).dir, "fake-sessions")); err != nil {
		t.Fatal(err)
	}
	params.Messages = append(params.Messages, openai.AssistantMessage(text), openai.UserMessage("And 4+4?"))
	params.StreamOptions = openai.ChatCompletionStreamOptionsParam{}
	cc, err = a.Chat.Completions.New(ctx, params, withSession)
	if err != nil {
		t.Fatalf("turn 3: %v", err)
	}
	if got := cc.Choices[0].Message.Content; got != "echo: And 4+4?" {
		t.Errorf("turn 3 answer = %q", got)
	}
	calls = c.calls(subID)
	refused, rerun := calls[len(calls)-2], calls[len(calls)-1]
	if refused.flag("--resume") == "" || rerun.has("--resume") {
		t.Errorf("turn 3 calls: %q then %q", refused.Args, rerun.Args)
	}
	for _, want := range []string{"<conversation_history>", "What is 2+2?", "echo: And 3+3?"} {
		if !strings.Contains(rerun.Prompt, want) {
			t.Errorf("rerun prompt lacks %q: %q", want, rerun.Prompt)
		}
	}
	if !strings.HasSuffix(rerun.Prompt, "And 4+4?") || rerun.flag("--system-prompt") != "Answer briefly." {
		t.Errorf("rerun = %q / %q", rerun.Prompt, rerun.flag("--system-prompt"))
	}

	// Every answer was settled: three requests on the subscription, visible
	// from either replica.
	st := c.debugStatus(1)[subID]
	if st["requests"].(float64) != 3 || st["weeklyUsed"].(float64) < 0.0369-1e-9 || st["assignedClients"].(float64) != 1 {
		t.Errorf("%s status = %v", subID, st)
	}
}
