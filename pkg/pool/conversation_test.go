package pool_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/authpool/authpool/internal/redistest"

	"github.com/authpool/authpool/internal/pooltest"
	. "github.com/authpool/authpool/pkg/pool"
)

// TestConversationAppend (issue 10): each answered turn is appended once per
// turn id, owner-checked, with the system prompt kept until a turn sends
// another; DELETE (release) forgets the conversation with the session.
func TestConversationAppend(t *testing.T) {
	redistest.Each(t, func(t *testing.T, tg *redistest.Target) {
		ctx := context.Background()
		p := newPool(t, tg, pooltest.Config(2, 100, 5))
		if _, err := p.AllocateTurn(ctx, TurnRequest{SessionID: "conv", Owner: "key-a"}); err != nil {
			t.Fatal(err)
		}
		add := func(turn, owner, user, answer, system string) (Appended, error) {
			return p.AppendTurn(ctx, TurnRecord{SessionID: "conv", TurnID: turn, Owner: owner, User: user,
				Assistant: answer, System: system})
		}
		if _, err := add("t1", "key-a", "Remember 42", "OK", "Be brief."); err != nil {
			t.Fatal(err)
		}
		// A retried append of the same turn adds nothing.
		if ap, err := add("t1", "key-a", "Remember 42", "OK", "Be brief."); err != nil || !ap.Duplicate {
			t.Fatalf("retried append = %+v %v, want a duplicate", ap, err)
		}
		// Another owner's append does not exist, and takes no marker.
		if _, err := add("t2", "key-b", "steal", "x", ""); !errors.Is(err, ErrSessionNotFound) {
			t.Fatalf("another owner's append: %v", err)
		}
		ap, err := add("t2", "key-a", "Which number?", "42", "")
		if err != nil || ap.Duplicate || ap.Turns != 2 || ap.Truncated {
			t.Fatalf("second turn = %+v %v", ap, err)
		}
		c, err := p.Conversation(ctx, "conv", "key-a", true)
		if err != nil {
			t.Fatal(err)
		}
		want := []ConversationTurn{{"Remember 42", "OK"}, {"Which number?", "42"}}
		if c.System != "Be brief." || len(c.Turns) != 2 || c.Turns[0] != want[0] || c.Turns[1] != want[1] {
			t.Fatalf("conversation = %+v", c)
		}
		if _, err := add("t3", "key-a", "Now in French", "Quarante-deux", "Answer in French."); err != nil {
			t.Fatal(err)
		}
		if c, _ := p.Conversation(ctx, "conv", "key-a", false); c.System != "Answer in French." || c.Turns != nil {
			t.Errorf("system after a new one = %+v", c)
		}
		if _, err := p.Conversation(ctx, "conv", "key-b", true); !errors.Is(err, ErrSessionNotFound) {
			t.Errorf("another owner read the conversation: %v", err)
		}
		// The stored turns expire with the session.
		ttl := tg.Client.PTTL(ctx, p.Keys().Turns("conv")).Val()
		if stale := time.Duration(p.Config().StaleAfterSeconds) * time.Second; ttl <= 0 || ttl > stale {
			t.Errorf("turns TTL = %v, want up to %v", ttl, stale)
		}
		if _, err := p.ReleaseAs(ctx, "conv", "key-a"); err != nil {
			t.Fatal(err)
		}
		if n := tg.Client.Exists(ctx, p.Keys().Session("conv"), p.Keys().Turns("conv")).Val(); n != 0 {
			t.Errorf("%d keys of the session left after its release", n)
		}
		if _, err := add("t4", "key-a", "after", "x", ""); !errors.Is(err, ErrSessionNotFound) {
			t.Errorf("append to a released session: %v", err)
		}
	})
}

// TestConversationBound: a conversation over conversationMaxBytes drops its
// oldest turns and says so; a turn larger than the bound is clipped.
func TestConversationBound(t *testing.T) {
	redistest.Each(t, func(t *testing.T, tg *redistest.Target) {
		ctx := context.Background()
		cfg := pooltest.Config(1, 100, 5)
		cfg.ConversationMaxBytes = MinConversationBytes
		p := newPool(t, tg, cfg)
		if _, err := p.Allocate(ctx, "long", PriorityNormal); err != nil {
			t.Fatal(err)
		}
		text := strings.Repeat("x", 1000)
		var last Appended
		for i := 0; i < 10; i++ {
			var err error
			last, err = p.AppendTurn(ctx, TurnRecord{SessionID: "long", TurnID: fmt.Sprintf("t%d", i),
				User: fmt.Sprintf("turn %d", i), Assistant: text})
			if err != nil {
				t.Fatal(err)
			}
			if last.Bytes > MinConversationBytes {
				t.Fatalf("turn %d: %d bytes stored, bound %d", i, last.Bytes, MinConversationBytes)
			}
		}
		if !last.Truncated || last.Turns >= 10 || last.Turns < 2 {
			t.Fatalf("after 10 turns of 1 KB under a 4 KiB bound: %+v", last)
		}
		c, err := p.Conversation(ctx, "long", "", true)
		if err != nil {
			t.Fatal(err)
		}
		if !c.Truncated || c.Turns[len(c.Turns)-1].User != "turn 9" || c.Turns[0].User == "turn 0" {
			t.Errorf("kept turns %d, first %q, truncated %v", len(c.Turns), c.Turns[0].User, c.Truncated)
		}
		huge := strings.Repeat("\"", 3*MinConversationBytes)
		ap, err := p.AppendTurn(ctx, TurnRecord{SessionID: "long", TurnID: "huge", User: "big", Assistant: huge})
		if err != nil || !ap.Clipped || ap.Turns != 1 || ap.Bytes > MinConversationBytes {
			t.Fatalf("a turn over the bound = %+v %v", ap, err)
		}
		if _, err := p.AppendTurn(ctx, TurnRecord{SessionID: "long", TurnID: "sys", User: "u",
			System: strings.Repeat("s", MaxSystemPromptBytes+1)}); !errors.Is(err, ErrConversationTooLarge) {
			t.Errorf("an oversized system prompt: %v", err)
		}
		if _, err := p.AppendTurn(ctx, TurnRecord{SessionID: "long", TurnID: "bad:id", User: "u"}); !errors.Is(err, ErrInvalidRequestID) {
			t.Errorf("a bad turn id: %v", err)
		}
	})
}

// TestCapacityCountsActiveSessions (issue 10): the cap counts sessions active
// within idleAfterSeconds. Idle sessions keep their binding, but new
// sessions take their slots; an idle one that comes back to a subscription
// full of active sessions moves (a rotation event, reason capacity); one
// that finds room stays.
func TestCapacityCountsActiveSessions(t *testing.T) {
	redistest.Each(t, func(t *testing.T, tg *redistest.Target) {
		ctx := context.Background()
		var clk *clock
		if tg.Mini != nil {
			clk = newClock(tg, time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC))
		}
		cfg := pooltest.Config(2, 100, 2)
		cfg.IdleAfterSeconds, cfg.StaleAfterSeconds = 1, 60
		p := newPool(t, tg, cfg)
		place := map[string]string{}
		for _, sid := range []string{"old1", "old2", "old3", "old4"} {
			a := mustAllocate(t, p, sid, PriorityNormal)
			if a.Kind != Bound {
				t.Fatalf("%s: %+v", sid, a)
			}
			place[sid] = a.Subscription.ID
		}
		// Full of active sessions: a fifth goes to the fallback.
		if a := mustAllocate(t, p, "early", PriorityNormal); a.Kind != Fallback || a.Reason != "capacity" {
			t.Fatalf("a fifth active session: %+v", a)
		}
		passTime(tg, clk, 1500*time.Millisecond)
		for _, st := range []string{"sub00", "sub01"} {
			s := subStatus(t, p, st)
			if s.ActiveClients != 0 || s.IdleClients != 2 {
				t.Errorf("%s after the idle age: active %d idle %d", st, s.ActiveClients, s.IdleClients)
			}
		}
		// Four new sessions take the idle ones' slots.
		for _, sid := range []string{"new1", "new2", "new3", "new4"} {
			if a := mustAllocate(t, p, sid, PriorityNormal); a.Kind != Bound {
				t.Fatalf("%s with every other session idle: %+v", sid, a)
			}
		}
		for _, st := range []string{"sub00", "sub01"} {
			if s := subStatus(t, p, st); s.ActiveClients != 2 || s.IdleClients != 2 {
				t.Errorf("%s: active %d idle %d, want 2 and 2", st, s.ActiveClients, s.IdleClients)
			}
		}
		// An old session comes back: both subscriptions are full of active
		// sessions, so it leaves for the fallback.
		if a := mustAllocate(t, p, "old1", PriorityNormal); a.Kind != Fallback || a.From != place["old1"] {
			t.Fatalf("old1 back to full subscriptions: %+v", a)
		}
		// Everyone idle; sub00 fills with two active sessions (sub01 disabled
		// meanwhile). An idle session of sub00 that comes back moves to
		// sub01, with a rotation event; one of sub01 stays there.
		passTime(tg, clk, 1500*time.Millisecond)
		if _, err := p.Mark(ctx, "sub01", StatusDisabled, "test", time.Time{}); err != nil {
			t.Fatal(err)
		}
		for _, sid := range []string{"busy1", "busy2"} {
			if a := mustAllocate(t, p, sid, PriorityNormal); a.Subscription.ID != "sub00" {
				t.Fatalf("%s: %+v", sid, a)
			}
		}
		if _, err := p.Mark(ctx, "sub01", StatusAvailable, "test", time.Time{}); err != nil {
			t.Fatal(err)
		}
		var of00, of01 string
		for _, sid := range []string{"old2", "old3", "old4"} {
			if place[sid] == "sub00" {
				of00 = sid
			} else {
				of01 = sid
			}
		}
		ev0 := len(events(t, tg, p, "rotation"))
		if a := mustAllocate(t, p, of00, PriorityNormal); a.Kind != Bound || a.Subscription.ID != "sub01" ||
			a.From != "sub00" || a.Reason != "capacity" {
			t.Errorf("%s back to sub00 full of active sessions: %+v, want moved to sub01 (capacity)", of00, a)
		}
		if ev := events(t, tg, p, "rotation"); len(ev) != ev0+1 {
			t.Errorf("the move wrote %d rotation events", len(ev)-ev0)
		}
		if a := mustAllocate(t, p, of01, PriorityNormal); a.Kind != Resumed || a.Subscription.ID != "sub01" {
			t.Errorf("%s back to sub01 with room: %+v, want resumed", of01, a)
		}
		for _, st := range []string{"sub00", "sub01"} {
			if s := subStatus(t, p, st); s.ActiveClients > 2 {
				t.Errorf("%s has %d active sessions, cap 2", st, s.ActiveClients)
			}
		}
	})
}

// The CLI session an append records is the next turn's --resume argument:
// one that is not a CLI session id (an option, a path, a newline) is not
// recorded, one for a subscription the session has left is not either, and
// a well-formed one for the subscription it is on is.
func TestAppendRecordsOnlyAWellFormedCLISession(t *testing.T) {
	redistest.Each(t, func(t *testing.T, tg *redistest.Target) {
		ctx := context.Background()
		p := newPool(t, tg, pooltest.Config(2, 100, 5))
		a, err := p.AllocateTurn(ctx, TurnRequest{SessionID: "cli", Owner: "key-a"})
		if err != nil {
			t.Fatal(err)
		}
		on, other := a.Subscription.ID, "sub00"
		if on == other {
			other = "sub01"
		}
		for i, tc := range []struct{ sub, cli, want string }{
			{on, "--dangerously-skip-permissions", ""},
			{on, "../../etc/passwd", ""},
			{on, "abc\ndef", ""},
			{other, "0b6e1c1e-5f9a-4a5e-9c7e-2d1f3a4b5c6d", ""},
			{on, "0b6e1c1e-5f9a-4a5e-9c7e-2d1f3a4b5c6d", "0b6e1c1e-5f9a-4a5e-9c7e-2d1f3a4b5c6d"},
		} {
			if _, err := p.AppendTurn(ctx, TurnRecord{SessionID: "cli", TurnID: fmt.Sprintf("t%d", i), Owner: "key-a",
				User: "u", Assistant: "a", SubscriptionID: tc.sub, CLISession: tc.cli}); err != nil {
				t.Fatal(err)
			}
			s, err := p.Session(ctx, "cli")
			if err != nil {
				t.Fatal(err)
			}
			if s.CLISession != tc.want {
				t.Fatalf("after an append with CLI session %q on %s: recorded %q, want %q", tc.cli, tc.sub, s.CLISession, tc.want)
			}
		}
	})
}

// A settle records the turn's CLI session like the append does: only a
// well-formed one.
func TestSettleRecordsOnlyAWellFormedCLISession(t *testing.T) {
	redistest.Each(t, func(t *testing.T, tg *redistest.Target) {
		ctx := context.Background()
		p := newPool(t, tg, pooltest.Config(1, 100, 5))
		a, err := p.AllocateTurn(ctx, TurnRequest{SessionID: "cli"})
		if err != nil {
			t.Fatal(err)
		}
		for i, tc := range []struct{ cli, want string }{
			{"--resume=../x", ""},
			{"abc def", ""},
			{"0b6e1c1e-5f9a-4a5e-9c7e-2d1f3a4b5c6d", "0b6e1c1e-5f9a-4a5e-9c7e-2d1f3a4b5c6d"},
		} {
			if _, err := p.Settle(ctx, Usage{RequestID: fmt.Sprintf("r%d", i), SubscriptionID: a.Subscription.ID,
				SessionID: "cli", CLISession: tc.cli}); err != nil {
				t.Fatal(err)
			}
			if s, _ := p.Session(ctx, "cli"); s.CLISession != tc.want {
				t.Fatalf("after a settle with CLI session %q: recorded %q, want %q", tc.cli, s.CLISession, tc.want)
			}
		}
	})
}
