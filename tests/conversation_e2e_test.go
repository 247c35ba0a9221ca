package tests

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

// seedTurn sends one turn the way the seed's client does: session_id in the
// body ("" for the first turn) and only the new message. It returns the
// answer, the session id the answer names (body or final chunk) and the
// response headers; the X-Session-Id header must name the same session.
func (c *cluster) seedTurn(i int, sid, text string, stream bool) (answer, session string, h http.Header) {
	c.t.Helper()
	body := map[string]any{"model": "sonnet", "stream": stream,
		"messages": []map[string]any{{"role": "user", "content": text}}}
	if sid != "" {
		body["session_id"] = sid
	}
	data, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", c.replicas[i].url+"/v1/chat/completions", strings.NewReader(string(data)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+clientKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		var b strings.Builder
		_, _ = bufio.NewReader(resp.Body).WriteTo(&b)
		c.t.Fatalf("replica %d, %q: %d %s", i, text, resp.StatusCode, b.String())
	}
	if !stream {
		var cc struct {
			Choices []struct {
				Message struct{ Content string } `json:"message"`
			} `json:"choices"`
			SessionID string `json:"session_id"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&cc); err != nil {
			c.t.Fatal(err)
		}
		answer, session = cc.Choices[0].Message.Content, cc.SessionID
	} else {
		var b strings.Builder
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line, ok := strings.CutPrefix(sc.Text(), "data: ")
			if !ok || line == "[DONE]" {
				continue
			}
			var ch struct {
				Choices []struct {
					Delta        struct{ Content string } `json:"delta"`
					FinishReason *string                  `json:"finish_reason"`
				} `json:"choices"`
				SessionID string `json:"session_id"`
			}
			if err := json.Unmarshal([]byte(line), &ch); err != nil {
				c.t.Fatalf("chunk %q: %v", line, err)
			}
			for _, chc := range ch.Choices {
				b.WriteString(chc.Delta.Content)
				if chc.FinishReason != nil {
					session = ch.SessionID // the final chunk names the session
				}
			}
		}
		answer = b.String()
	}
	if session == "" || resp.Header.Get("X-Session-Id") != session {
		c.t.Fatalf("answer names session %q, X-Session-Id %q", session, resp.Header.Get("X-Session-Id"))
	}
	return answer, session, resp.Header
}

// recalled is what the recall fake answers after seeing these user lines.
func recalled(lines ...string) string { return "recall: " + strings.Join(lines, " | ") }

// TestSeedConversationFlow (issue 10): the seed's client flow — three turns,
// each sending only the new message, the first without a session id — on
// two replicas whose hosts differ (HOME and config dirs). Turn 2 on the
// replica of turn 1 continues the CLI session (--resume, the new message
// only); turn 3 on the other replica, whose config dir holds no such CLI
// session, replays the stored conversation into a new one; turn 4 there
// resumes that one. The fake CLI answers with every user line it was given.
func TestSeedConversationFlow(t *testing.T) {
	for _, stream := range []bool{false, true} {
		t.Run(fmt.Sprintf("stream=%v", stream), func(t *testing.T) {
			c := startCluster(t, clusterOpts{perReplica: true})
			c.setModeEverywhere("recall")
			say := []string{"Remember the number 42", "And the word blue", "What did I ask you to remember?", "Anything else?"}

			got, sid, _ := c.seedTurn(0, "", say[0], stream)
			if got != recalled(say[0]) {
				t.Fatalf("turn 1 = %q", got)
			}
			subID := c.session(sid)["sub"]
			if subID == "" {
				t.Fatalf("session %s not bound", sid)
			}
			if got, _, _ := c.seedTurn(0, sid, say[1], stream); got != recalled(say[:2]...) {
				t.Errorf("turn 2 (same replica) = %q", got)
			}
			calls := c.callsOn(0, subID)
			if last := calls[len(calls)-1]; last.flag("--resume") == "" || last.Prompt != say[1] {
				t.Errorf("turn 2 CLI call: resume %q prompt %q, want --resume with the new message only",
					last.flag("--resume"), last.Prompt)
			}

			if got, _, _ := c.seedTurn(1, sid, say[2], stream); got != recalled(say[:3]...) {
				t.Errorf("turn 3 (other host) = %q", got)
			}
			calls = c.callsOn(1, subID)
			if len(calls) != 2 || calls[0].flag("--resume") == "" || calls[1].has("--resume") {
				t.Fatalf("turn 3 on the other host: %d calls, want a failed --resume then a replay", len(calls))
			}
			for _, want := range say[:3] {
				if !strings.Contains(calls[1].Prompt, want) {
					t.Errorf("turn 3's replay lacks %q:\n%s", want, calls[1].Prompt)
				}
			}
			if got, _, _ := c.seedTurn(1, sid, say[3], stream); got != recalled(say...) {
				t.Errorf("turn 4 = %q", got)
			}
			calls = c.callsOn(1, subID)
			if last := calls[len(calls)-1]; last.flag("--resume") == "" || last.Prompt != say[3] {
				t.Errorf("turn 4 CLI call: resume %q prompt %q", last.flag("--resume"), last.Prompt)
			}
			c.settled()
			if n := c.rdb.LLen(context.Background(), c.keys.Turns(sid)).Val(); n != 4 {
				t.Errorf("stored turns = %d, want 4", n)
			}
		})
	}
}

// TestConversationContinuesAfterLimit (issue 10): the seed's flow, with the
// session's subscription marked limited between turns: the turn continues
// on another subscription (a rotation event), replaying the conversation.
func TestConversationContinuesAfterLimit(t *testing.T) {
	for _, stream := range []bool{false, true} {
		t.Run(fmt.Sprintf("stream=%v", stream), func(t *testing.T) {
			c := startCluster(t, clusterOpts{perReplica: true})
			c.setModeEverywhere("recall")
			ctx := context.Background()
			say := []string{"Remember the number 42", "And the word blue", "What did I ask you to remember?"}
			_, sid, _ := c.seedTurn(0, "", say[0], stream)
			c.seedTurn(0, sid, say[1], stream)
			from := c.session(sid)["sub"]
			until := time.Now().Add(time.Hour).UnixMilli()
			if err := c.rdb.HSet(ctx, c.keys.Sub(from), "status", "limited", "statusReason", "limit",
				"until", until).Err(); err != nil {
				t.Fatal(err)
			}
			if got, _, _ := c.seedTurn(1, sid, say[2], stream); got != recalled(say...) {
				t.Errorf("turn 3 after %s was limited = %q", from, got)
			}
			to := c.session(sid)["sub"]
			if to == "" || to == from {
				t.Fatalf("session on %q after its subscription %s was limited", to, from)
			}
			if calls := c.callsOn(1, to); len(calls) != 1 || calls[0].has("--resume") {
				t.Errorf("turn 3 on %s: %d calls, want one replay", to, len(calls))
			}
			if len(c.events("rotation")) == 0 {
				t.Error("no rotation event for the move")
			}
		})
	}
}

// TestOpenAIClientResendsHistory (issue 10): the official client, resending
// the whole history with session_id in the body, gets the same
// conversation; on --resume the CLI receives only the new turn.
func TestOpenAIClientResendsHistory(t *testing.T) {
	c := startCluster(t, clusterOpts{replicas: 1})
	cl := c.replicas[0].client(clientKey)
	ctx := context.Background()
	history := []openai.ChatCompletionMessageParamUnion{openai.SystemMessage("Be brief.")}
	sid := ""
	for i, text := range []string{"What is 2+2?", "And 3+3?", "And 4+4?"} {
		history = append(history, openai.UserMessage(text))
		var opts []option.RequestOption
		if sid != "" {
			opts = append(opts, option.WithJSONSet("session_id", sid))
		}
		cc, err := cl.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "sonnet", Messages: history}, opts...)
		if err != nil {
			t.Fatalf("turn %d: %v", i+1, err)
		}
		if got := cc.Choices[0].Message.Content; got != "echo: "+text {
			t.Errorf("turn %d answer %q", i+1, got)
		}
		if err := json.Unmarshal([]byte(cc.JSON.ExtraFields["session_id"].Raw()), &sid); err != nil || sid == "" {
			t.Fatalf("turn %d names no session: %v", i+1, err)
		}
		history = append(history, openai.AssistantMessage(cc.Choices[0].Message.Content))
		calls := c.calls(c.session(sid)["sub"])
		last := calls[len(calls)-1]
		if last.Prompt != text || (i > 0) != (last.flag("--resume") != "") || last.flag("--system-prompt") != "Be brief." {
			t.Errorf("turn %d CLI call: prompt %q resume %q system %q", i+1, last.Prompt, last.flag("--resume"),
				last.flag("--system-prompt"))
		}
	}
}

// TestIdleSessionsFreeTheirSlots (issue 10): 3 subscriptions of cap 5 with
// an idle age of 3 s. 15 active sessions fill the pool (a 16th is refused,
// there is no fallback); once they are idle, 15 new sessions are answered by
// subscriptions. With every session idle, sub1 fills with 5 active ones:
// its old sessions come back, move (rotation, capacity) and remember their
// turns by replay; an old session of another subscription stays there.
func TestIdleSessionsFreeTheirSlots(t *testing.T) {
	const idle = 3 * time.Second
	c := startCluster(t, clusterOpts{subs: 3, config: map[string]any{"maxClientsPerSubscription": 5,
		"idleAfterSeconds": int(idle / time.Second), "staleAfterSeconds": 600}})
	c.setModeEverywhere("recall")
	ctx := context.Background()
	turn := func(n int, sid, text string) string {
		t.Helper()
		got, named, h := c.seedTurn(n%len(c.replicas), sid, text, false)
		if named != sid || h.Get("X-AuthPool-Allocation") != "subscription" {
			t.Fatalf("%s: session %q allocation %q", sid, named, h.Get("X-AuthPool-Allocation"))
		}
		return got
	}
	activeIdle := func() map[string][2]float64 {
		out := map[string][2]float64{}
		for id, st := range c.debugStatus(0) {
			out[id] = [2]float64{st["activeClients"].(float64), st["idleClients"].(float64)}
			if st["activeClients"].(float64) > 5 {
				t.Errorf("%s shows %v active clients, cap 5", id, st["activeClients"])
			}
		}
		return out
	}
	old := map[string]string{} // session -> subscription
	for i := 0; i < 15; i++ {
		sid := fmt.Sprintf("old-%02d", i)
		turn(i, sid, "I am "+sid)
		old[sid] = c.session(sid)["sub"]
	}
	resp, data := c.post(0, `{"session_id":"one-too-many","messages":[{"role":"user","content":"hi"}]}`,
		"Authorization", "Bearer "+clientKey)
	if resp.StatusCode != 503 {
		t.Fatalf("a 16th active session: %d %s", resp.StatusCode, data)
	}
	time.Sleep(idle + 300*time.Millisecond)
	for id, ai := range activeIdle() {
		if ai != [2]float64{0, 5} {
			t.Errorf("%s once idle: active/idle %v, want 0/5", id, ai)
		}
	}
	for i := 0; i < 15; i++ {
		turn(i, fmt.Sprintf("new-%02d", i), "hello")
	}
	time.Sleep(idle + 300*time.Millisecond)

	// sub1 fills with 5 active sessions (the others disabled meanwhile).
	setStatus := func(id, status string) {
		if err := c.rdb.HSet(ctx, c.keys.Sub(id), "status", status).Err(); err != nil {
			t.Fatal(err)
		}
	}
	setStatus("sub2", "disabled")
	setStatus("sub3", "disabled")
	for i := 0; i < 5; i++ {
		sid := fmt.Sprintf("fill-%d", i)
		turn(i, sid, "fill")
		if s := c.session(sid)["sub"]; s != "sub1" {
			t.Fatalf("%s on %s", sid, s)
		}
	}
	setStatus("sub2", "available")
	setStatus("sub3", "available")

	moved, stayed := 0, 0
	for sid, sub := range old {
		if sub != "sub1" && stayed > 0 {
			continue
		}
		got := turn(moved+stayed, sid, "Who am I?")
		if want := recalled("I am "+sid, "Who am I?"); got != want {
			t.Errorf("%s back: %q, want %q", sid, got, want)
		}
		now := c.session(sid)["sub"]
		switch {
		case sub == "sub1" && now == "sub1":
			t.Errorf("%s came back to sub1 full of active sessions and stayed", sid)
		case sub == "sub1":
			moved++
		case now != sub:
			t.Errorf("%s left %s with room for it (now on %s)", sid, sub, now)
		default:
			stayed++
		}
	}
	if moved != 5 || stayed != 1 {
		t.Errorf("moved %d (want 5), stayed %d (want 1)", moved, stayed)
	}
	capacity := 0
	for _, e := range c.events("rotation") {
		if strings.Contains(e["data"].(string), `"reason":"capacity"`) {
			capacity++
		}
	}
	if capacity != 5 {
		t.Errorf("%d rotation events for capacity, want 5", capacity)
	}
	activeIdle()
}

// TestConversationBoundE2E (issue 10): a conversation over
// conversationMaxBytes drops its oldest turns and the answer says so.
func TestConversationBoundE2E(t *testing.T) {
	c := startCluster(t, clusterOpts{replicas: 1, subs: 1, config: map[string]any{"conversationMaxBytes": 4096}})
	ctx := context.Background()
	sid := ""
	var truncatedAt int
	for i := 1; i <= 6; i++ {
		text := fmt.Sprintf("turn %d %s", i, strings.Repeat("x", 900))
		_, named, h := c.seedTurn(0, sid, text, i%2 == 0)
		sid = named
		if h.Get("X-AuthPool-Conversation-Truncated") == "true" && truncatedAt == 0 {
			truncatedAt = i
		}
	}
	if truncatedAt == 0 {
		t.Fatal("6 turns of ~1.8 KB under a 4 KiB bound: no X-AuthPool-Conversation-Truncated")
	}
	c.settled()
	turns, err := c.rdb.LRange(ctx, c.keys.Turns(sid), 0, -1).Result()
	if err != nil || len(turns) == 0 || len(turns) >= 6 {
		t.Fatalf("stored turns %d (%v), want fewer than 6", len(turns), err)
	}
	size := 0
	for _, s := range turns {
		size += len(s)
	}
	if size > 4096 || !strings.Contains(turns[len(turns)-1], "turn 6") || strings.Contains(turns[0], "turn 1 ") {
		t.Errorf("stored %d bytes in %d turns: the bound or the order is wrong", size, len(turns))
	}
	if ttl := c.rdb.PTTL(ctx, c.keys.Turns(sid)).Val(); ttl <= 0 {
		t.Errorf("stored turns TTL %v: they must expire with the session", ttl)
	}
}
