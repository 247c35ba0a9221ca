package gateway

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/authpool/authpool/internal/testutil"
)

// TestAnswerBeforeSettle (issue 14): the answer reaches the client before
// its turn is settled; the session's next turn on the replica waits for
// that settle and resumes the CLI session it recorded; each turn's usage
// lands once. Both dialects, streaming or not.
func TestAnswerBeforeSettle(t *testing.T) {
	for _, tc := range []struct {
		name, path, body string
	}{
		{"chat", "/v1/chat/completions", `{"session_id":"held","messages":[{"role":"user","content":"hi"}]}`},
		{"chat stream", "/v1/chat/completions", `{"session_id":"held","stream":true,"messages":[{"role":"user","content":"hi"}]}`},
		{"messages", "/v1/messages", `{"model":"sonnet","max_tokens":64,"metadata":{"user_id":"held"},"messages":[{"role":"user","content":"hi"}]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, harnessOpts{subs: 1})
			hold := make(chan struct{})
			h.srv.beforeSettle = func() { <-hold }
			post := func() (int, string) {
				resp, err := http.Post(h.http.URL+tc.path, "application/json", bytes.NewReader([]byte(tc.body)))
				if err != nil {
					t.Error(err)
					return 0, ""
				}
				defer resp.Body.Close()
				data, _ := io.ReadAll(resp.Body)
				return resp.StatusCode, string(data)
			}

			// Turn 1 is answered, whole, while its settle is held.
			answered := make(chan int, 1)
			go func() {
				st, body := post()
				if !strings.Contains(body, "echo: hi") && !strings.Contains(body, "[DONE]") {
					t.Errorf("turn 1 answer: %d %s", st, body)
				}
				answered <- st
			}()
			select {
			case st := <-answered:
				if st != 200 {
					t.Fatalf("turn 1: status %d", st)
				}
			case <-time.After(5 * time.Second):
				close(hold)
				t.Fatal("turn 1 not answered while its settle was held")
			}
			if h.rawRequests("sub1") != 0 {
				t.Fatalf("turn 1 settled before the test let it")
			}

			// Turn 2 of the session waits for turn 1's settle.
			second := make(chan int, 1)
			go func() {
				st, _ := post()
				second <- st
			}()
			time.Sleep(150 * time.Millisecond)
			if n := len(h.callsSoFar()); n != 1 {
				t.Fatalf("turn 2 ran (%d backend calls) before turn 1 was settled", n)
			}
			close(hold)
			if st := <-second; st != 200 {
				t.Fatalf("turn 2: status %d", st)
			}
			h.settled()
			calls := h.callsSoFar()
			if len(calls) != 2 || calls[1].req.ResumeSession != "cli-sub1-cli-0" {
				t.Fatalf("turn 2 resumed %q, want turn 1's CLI session cli-sub1-cli-0 (%d calls)",
					calls[len(calls)-1].req.ResumeSession, len(calls))
			}
			testutil.Eventually(t, 5*time.Second, "two settlements", func() bool { return h.rawRequests("sub1") == 2 })
			time.Sleep(50 * time.Millisecond)
			if n := h.rawRequests("sub1"); n != 2 {
				t.Errorf("requests = %d, want 2 (each turn once)", n)
			}
		})
	}
}

// rawRequests reads a subscription's settled request count without waiting
// for the settles in progress.
func (h *harness) rawRequests(sub string) int {
	h.t.Helper()
	snap, err := h.pool.Status(context.Background())
	if err != nil {
		h.t.Fatal(err)
	}
	for _, s := range snap.Subscriptions {
		if s.ID == sub {
			return int(s.Requests)
		}
	}
	h.t.Fatalf("no subscription %s", sub)
	return 0
}

// TestNextTurnOnAnotherReplicaWhileSettling (issue 14): what a session's next
// turn reads is written before the answer goes out, so a next turn sent to
// another replica while the first replica still settles the turn resumes
// its CLI session and finds it in the stored conversation; the usage still
// lands once per turn.
func TestNextTurnOnAnotherReplicaWhileSettling(t *testing.T) {
	h := newHarness(t, harnessOpts{subs: 1})
	hold := make(chan struct{})
	released := false
	release := func() {
		if !released {
			released = true
			close(hold)
		}
	}
	t.Cleanup(release)
	h.srv.beforeSettle = func() { <-hold }
	other := h.replica()
	body := `{"session_id":"hop","messages":[{"role":"user","content":"first"}]}`
	resp, err := http.Post(h.http.URL+"/v1/chat/completions", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || h.rawRequests("sub1") != 0 {
		t.Fatalf("turn 1: status %d, %d settled (want 200, none yet)", resp.StatusCode, h.rawRequests("sub1"))
	}
	conv, err := h.pool.Conversation(context.Background(), "hop", "", true)
	if err != nil || len(conv.Turns) != 1 {
		t.Fatalf("stored conversation before the settle: %+v, %v; want turn 1", conv, err)
	}

	body = `{"session_id":"hop","messages":[{"role":"user","content":"second"}]}`
	resp, err = http.Post(other+"/v1/chat/completions", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("turn 2 on the other replica: status %d", resp.StatusCode)
	}
	calls := h.callsSoFar()
	if len(calls) != 2 || calls[1].req.ResumeSession != "cli-sub1-cli-0" {
		t.Fatalf("turn 2 on the other replica resumed %q, want turn 1's CLI session cli-sub1-cli-0 (%d calls)",
			calls[len(calls)-1].req.ResumeSession, len(calls))
	}
	// Turn 1's settle lands after turn 2: the CLI session turn 2 left stays.
	after2, err := h.pool.Session(context.Background(), "hop")
	if err != nil || after2.CLISession == "" {
		t.Fatalf("session after turn 2: %+v, %v", after2, err)
	}
	release()
	h.settled()
	testutil.Eventually(t, 5*time.Second, "two settlements", func() bool { return h.rawRequests("sub1") == 2 })
	if s, _ := h.pool.Session(context.Background(), "hop"); s.CLISession != after2.CLISession {
		t.Fatalf("turn 1's late settle set the CLI session back to %q; turn 2 left %q", s.CLISession, after2.CLISession)
	}
}

// A wait for a key's settles waits for those running when it starts, not
// for the ones that begin while it waits: a busy key is not held up by a
// stream of overlapping settles.
func TestPendingWaitIgnoresLaterSettles(t *testing.T) {
	var p pendingTurns
	endA := p.begin("k")
	waited := make(chan time.Duration, 1)
	go func() {
		start := time.Now()
		p.wait(context.Background(), "k", 2*time.Second)
		waited <- time.Since(start)
	}()
	time.Sleep(20 * time.Millisecond)
	endB := p.begin("k") // later than the wait
	defer endB()
	endA()
	select {
	case d := <-waited:
		if d > time.Second {
			t.Fatalf("waited %v", d)
		}
	case <-time.After(time.Second):
		t.Fatal("the wait held on for a settle that began after it")
	}
	if err := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		return p.idle(ctx)
	}(); err == nil {
		t.Fatal("idle with a settle still running")
	}
}
