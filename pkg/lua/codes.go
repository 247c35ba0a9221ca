package lua

import "errors"

// Reply codes shared by the scripts: codes.lua defines each under the
// upper-case name (CodeStaleEpoch is CODE_STALE_EPOCH) and is prepended to
// every script; TestReplyCodesMatchLua holds the two lists equal.
const (
	CodeOK             = 0
	CodeFallback       = 1
	CodeExhausted      = 2
	CodeStaleSubs      = 3
	CodeStaleEpoch     = 4
	CodeDuplicate      = 5
	CodeNotFound       = 6
	CodeUnchanged      = 8
	CodeNothingToDo    = 9
	CodeResumeMiss     = 10
	CodeRateLimited    = 11
	CodeLockLost       = 12
	CodeNeedCandidates = 13
	CodeRefused        = 14
	CodeOlderConfig    = 15
)

// Sentinel errors of the wrappers.
var (
	// ErrStaleSubscriptions: the subscription SET changed since the caller
	// read it; reload the list and call again.
	ErrStaleSubscriptions = errors.New("lua: subscription list changed")
	// ErrStaleEpoch: a fenced script was called with an epoch that has moved
	// on; the caller is no longer the leader and nothing was changed.
	ErrStaleEpoch = errors.New("lua: stale fencing epoch")
	// ErrNotFound: the session or subscription does not exist.
	ErrNotFound = errors.New("lua: not found")
	// ErrRefused: an operator's request the state does not allow (a move
	// to a full or unusable subscription); the reply's detail says why.
	ErrRefused = errors.New("lua: refused")
	// ErrOlderConfig: Redis holds a newer config version than the caller's;
	// sync.lua wrote nothing.
	ErrOlderConfig = errors.New("lua: an older config version than the one in force")
	// ErrReply: the script answered in a shape the wrapper does not know.
	ErrReply = errors.New("lua: unexpected script reply")
)

// codeErrs are the codes that mean the script refused: the one place where
// a code becomes a sentinel error. Every other code is an answer.
var codeErrs = map[int]error{
	CodeStaleSubs:   ErrStaleSubscriptions,
	CodeStaleEpoch:  ErrStaleEpoch,
	CodeNotFound:    ErrNotFound,
	CodeRefused:     ErrRefused,
	CodeOlderConfig: ErrOlderConfig,
}
