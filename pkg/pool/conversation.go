package pool

import (
	"context"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/authpool/authpool/pkg/lua"
)

// A session is a conversation the pool owns (issue 10): each settled turn is
// appended to the session's stored conversation in Redis, next to the
// session and expiring with it, so that a turn can continue on any replica
// and any subscription by replaying it. The CLI's own session (--resume) is
// only a cache of it.

// MaxSystemPromptBytes bounds the system prompt stored with a conversation:
// the most the CLI takes as one argument (--system-prompt), with room.
const MaxSystemPromptBytes = 100_000

// ErrConversationTooLarge: a system prompt over MaxSystemPromptBytes.
var ErrConversationTooLarge = errors.New("pool: conversation text too large")

// ConversationTurn is one settled turn of a stored conversation.
type ConversationTurn struct {
	// User is the text the turn sent (the messages after the last assistant
	// message of its request).
	User string
	// Assistant is the text it answered.
	Assistant string
}

// Conversation is a session's stored conversation.
type Conversation struct {
	// System is the system prompt in force ("" none): the first turn's,
	// until a turn sends a different one.
	System string
	// Truncated is true once the oldest turns were dropped to
	// conversationMaxBytes.
	Truncated bool
	// Turns, oldest first; nil when only the system prompt was asked for.
	Turns []ConversationTurn
}

// TurnRecord is one answered turn to append.
type TurnRecord struct {
	SessionID string
	// TurnID is the turn's settlement id: a retried append adds nothing.
	TurnID string
	// Owner is the caller's key id ("" is NoOwner).
	Owner     string
	User      string
	Assistant string
	// System is the system prompt the request sent ("" keeps the stored one).
	System string
	// SubscriptionID and CLISession: the subscription the turn ran on (""
	// the fallback) and the CLI session it left, which the session's next
	// turn resumes; recorded only while the session is still bound there.
	SubscriptionID, CLISession string
}

// Appended is the stored conversation after an append.
type Appended struct {
	// Duplicate: the turn id was appended before; nothing changed.
	Duplicate bool
	// Bytes and Turns are the conversation's size after the append.
	Bytes int64
	Turns int
	// Dropped is how many of the oldest turns this append pushed out.
	Dropped int
	// Truncated is true once any turn of the session was dropped.
	Truncated bool
	// Clipped is true when this turn's own text was cut to fit the bound.
	Clipped bool
}

// AppendTurn appends one answered turn to its session's conversation, once
// per turn id. The conversation keeps at most conversationMaxBytes: the
// oldest turns go first, and a single turn larger than the bound is clipped.
// A session that does not exist, or is another owner's, is
// ErrSessionNotFound.
func (p *Pool) AppendTurn(ctx context.Context, r TurnRecord) (Appended, error) {
	owner, err := p.checkSession(r.SessionID, r.Owner)
	if err != nil {
		return Appended{}, err
	}
	if !lua.ValidID(r.TurnID) {
		return Appended{}, ErrInvalidRequestID
	}
	if len(r.System) > MaxSystemPromptBytes {
		return Appended{}, ErrConversationTooLarge
	}
	if r.SubscriptionID != "" && !lua.ValidID(r.SubscriptionID) {
		return Appended{}, ErrUnknownSubscription
	}
	max := int64(p.Config().ConversationMaxBytes)
	user, answer, clipped := clipTurn(r.User, r.Assistant, int(max)-entryOverhead)
	v, err := lua.AppendTurn(ctx, p.rdb, p.keys, lua.AppendTurnArgs{SessionID: r.SessionID, TurnID: r.TurnID,
		Owner: owner, User: user, Assistant: answer, System: r.System, MaxBytes: max, StaleMS: p.staleMS(),
		MarkerTTL: p.markerTTL.Milliseconds(), SubID: r.SubscriptionID, CLISession: resumable(r.CLISession)})
	if errors.Is(err, lua.ErrNotFound) {
		return Appended{}, ErrSessionNotFound
	}
	if err != nil {
		return Appended{}, fmt.Errorf("pool: append turn: %w", err)
	}
	return Appended{Duplicate: v.Duplicate, Bytes: v.Bytes, Turns: v.Turns, Dropped: v.Dropped,
		Truncated: v.Truncated, Clipped: clipped}, nil
}

// Conversation reads a session's stored conversation; withTurns false reads
// only its system prompt and flags (a turn that resumes its CLI session
// needs no more). A session that does not exist, or is another owner's, is
// ErrSessionNotFound.
func (p *Pool) Conversation(ctx context.Context, sessionID, owner string, withTurns bool) (Conversation, error) {
	owner, err := p.checkSession(sessionID, owner)
	if err != nil {
		return Conversation{}, err
	}
	c, err := lua.LoadConversation(ctx, p.rdb, p.keys, sessionID, owner, withTurns)
	if errors.Is(err, lua.ErrNotFound) {
		return Conversation{}, ErrSessionNotFound
	}
	if err != nil {
		return Conversation{}, fmt.Errorf("pool: conversation: %w", err)
	}
	out := Conversation{System: c.System, Truncated: c.Truncated}
	for _, t := range c.Turns {
		out.Turns = append(out.Turns, ConversationTurn{User: t.User, Assistant: t.Assistant})
	}
	return out, nil
}

func (p *Pool) checkSession(sessionID, owner string) (string, error) {
	if owner == "" {
		owner = NoOwner
	}
	if !lua.ValidID(sessionID) {
		return "", ErrInvalidSession
	}
	if !lua.ValidID(owner) {
		return "", ErrInvalidOwner
	}
	return owner, nil
}

// entryOverhead is what a stored turn adds to its texts: the JSON object
// around them and the turn id.
const entryOverhead = 200

// clipMark ends a text clipped to the bound, so a replay says so.
const clipMark = "\n[…clipped]"

// clipTurn cuts a turn whose texts, as the script encodes them, exceed
// budget bytes: the longer text gives way first, each keeps its beginning.
func clipTurn(user, answer string, budget int) (string, string, bool) {
	u, a := encodedLen(user), encodedLen(answer)
	if u+a <= budget {
		return user, answer, false
	}
	half := budget / 2
	switch {
	case u <= half:
		answer = clipText(answer, budget-u)
	case a <= half:
		user = clipText(user, budget-a)
	default:
		user, answer = clipText(user, half), clipText(answer, budget-half)
	}
	return user, answer, true
}

// encodedLen is the most bytes s takes in a JSON string as Redis' cjson
// writes it: quotes, backslashes and slashes are escaped in two bytes,
// other control characters in six.
func encodedLen(s string) int {
	n := 0
	for i := 0; i < len(s); i++ {
		n += escLen(s[i])
	}
	return n
}

func escLen(b byte) int {
	switch {
	case b == '"' || b == '\\' || b == '/' || b == '\n' || b == '\r' || b == '\t' || b == '\b' || b == '\f':
		return 2
	case b < 0x20 || b == 0x7f:
		return 6
	}
	return 1
}

// clipText keeps the longest beginning of s (whole runes) that, with
// clipMark, stays within n encoded bytes.
func clipText(s string, n int) string {
	n -= encodedLen(clipMark)
	used, end := 0, 0
	for end < len(s) {
		_, size := utf8.DecodeRuneInString(s[end:])
		w := 0
		for j := end; j < end+size; j++ {
			w += escLen(s[j])
		}
		if used+w > n {
			break
		}
		used += w
		end += size
	}
	return s[:end] + clipMark
}
