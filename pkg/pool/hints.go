package pool

import (
	"sync"

	"github.com/authpool/authpool/pkg/lua"
)

// maxHints bounds the hint table; when full it is cleared (a miss costs one
// full allocate, never a wrong answer).
const maxHints = 1 << 16

// hints remembers, per replica, which subscription a session was last bound
// to, so a resumed request can call allocate with that subscription's keys
// only. A hint is never trusted: the script re-checks the binding atomically
// and answers a miss when another replica or the rebalancer moved the session.
type hints struct {
	mu     sync.Mutex
	keys   lua.Keys
	bySess map[string]string
	single map[string]*lua.SubSet // subscription id -> its one-element SubSet
}

func newHints(k lua.Keys, ids []string) *hints {
	h := &hints{keys: k, bySess: make(map[string]string), single: make(map[string]*lua.SubSet, len(ids))}
	for _, id := range ids {
		h.single[id] = k.SubSet([]string{id})
	}
	return h
}

// reset forgets every hint and serves ids: a reloaded config's list.
func (h *hints) reset(ids []string) {
	single := make(map[string]*lua.SubSet, len(ids))
	for _, id := range ids {
		single[id] = h.keys.SubSet([]string{id})
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.single = single
	h.bySess = make(map[string]string)
}

func (h *hints) singleFor(sid string) *lua.SubSet {
	h.mu.Lock()
	defer h.mu.Unlock()
	if sub, ok := h.bySess[sid]; ok {
		return h.single[sub]
	}
	return nil
}

func (h *hints) put(sid, sub string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.bySess) >= maxHints {
		clear(h.bySess)
	}
	h.bySess[sid] = sub
}

func (h *hints) drop(sid string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.bySess, sid)
}
