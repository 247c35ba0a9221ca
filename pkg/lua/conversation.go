package lua

import (
	"context"
	"encoding/json"
	"fmt"
)

// StoredTurn is one settled turn of a stored conversation.
type StoredTurn struct {
	// ID is the turn's settlement id.
	ID string `json:"id"`
	// User is the user text the turn sent.
	User string `json:"u"`
	// Assistant is the text it answered.
	Assistant string `json:"a"`
}

// AppendTurnArgs are the inputs of conversation_append.lua.
type AppendTurnArgs struct {
	SessionID string
	TurnID    string
	Owner     string
	User      string
	Assistant string
	System    string // "" keeps the stored system prompt
	MaxBytes  int64
	StaleMS   int64
	MarkerTTL int64 // ms
	// SubID and CLISession: the subscription the turn ran on and the CLI
	// session it left, recorded while the session is still bound there.
	SubID, CLISession string
}

// AppendTurnReply is conversation_append.lua's answer.
type AppendTurnReply struct {
	Duplicate bool  // the turn id was appended already; nothing changed
	Bytes     int64 // the stored conversation's size after the append
	Turns     int   // its turns
	Dropped   int   // the oldest turns this append pushed out
	Truncated bool  // some turn of the session was ever dropped
}

// AppendTurn runs conversation_append.lua. A session that does not exist, or
// is another owner's, is ErrNotFound.
func AppendTurn(ctx context.Context, c Scripter, k Keys, a AppendTurnArgs) (AppendTurnReply, error) {
	keys := []string{k.Session(a.SessionID), k.Turns(a.SessionID), k.TurnMarker(a.TurnID)}
	v, err := run(ctx, c, "append turn", conversationAppendScript, keys, 5, a.TurnID, a.Owner, a.User,
		a.Assistant, a.System, a.MaxBytes, a.StaleMS, a.MarkerTTL, a.SubID, a.CLISession)
	switch {
	case err != nil:
		return AppendTurnReply{}, err
	case v.code() == CodeDuplicate:
		return AppendTurnReply{Duplicate: true}, nil
	case v.code() != CodeOK:
		return AppendTurnReply{}, fmt.Errorf("lua: append turn: code %d: %w", v.code(), ErrReply)
	}
	return AppendTurnReply{Bytes: v.int64(1), Turns: v.int(2), Dropped: v.int(3), Truncated: v.int(4) == 1}, nil
}

// Conversation is a session's stored conversation.
type Conversation struct {
	// System is the stored system prompt ("" none).
	System string
	// Truncated: the oldest turns were dropped to the byte bound.
	Truncated bool
	// Turns, oldest first (nil when not asked for).
	Turns []StoredTurn
}

// LoadConversation runs conversation_load.lua; withTurns false reads only
// the system prompt and the flags. A session that does not exist, or is
// another owner's, is ErrNotFound.
func LoadConversation(ctx context.Context, c Scripter, k Keys, sessionID, owner string, withTurns bool) (Conversation, error) {
	keys := []string{k.Session(sessionID), k.Turns(sessionID)}
	// The reply's length is 3 plus the turns, so it is read here rather
	// than by run, which wants a fixed length.
	v, err := conversationLoadScript.Run(ctx, c, keys, owner, b01(withTurns)).Slice()
	if err != nil {
		return Conversation{}, fmt.Errorf("lua: load conversation: %w", err)
	}
	if len(v) < 3 {
		return Conversation{}, fmt.Errorf("lua: load conversation: %w", ErrReply)
	}
	if err := codeErrs[toInt(v[0])]; err != nil {
		return Conversation{}, fmt.Errorf("lua: load conversation: %w", err)
	}
	conv := Conversation{System: toStr(v[1]), Truncated: toInt(v[2]) == 1}
	for _, raw := range v[3:] {
		var t StoredTurn
		if err := json.Unmarshal([]byte(toStr(raw)), &t); err != nil {
			return Conversation{}, fmt.Errorf("lua: load conversation: %w: %w", ErrReply, err)
		}
		conv.Turns = append(conv.Turns, t)
	}
	return conv, nil
}
