package gateway

import (
	"maps"

	"github.com/authpool/authpool/pkg/backend"
)

// subBackend is the backend and OAuth token of subscription id, as of the
// last AddBackends: a reload swaps the maps, a turn reads them once.
func (s *Server) subBackend(id string) (backend.Backend, string) {
	s.subsMu.RLock()
	defer s.subsMu.RUnlock()
	return s.backends.Subscriptions[id], s.tokens[id]
}

// AddBackends makes the backends (and OAuth tokens, never logged) of
// subscriptions a reloaded config added available to turns. Call it before
// the pool takes the config, so that no session is bound to a subscription
// this replica cannot run. Backends of removed subscriptions are kept: a
// turn in flight may still use one, and the pool no longer allocates it.
func (s *Server) AddBackends(b map[string]backend.Backend, tokens map[string]string) {
	s.subsMu.Lock()
	defer s.subsMu.Unlock()
	subs := maps.Clone(s.backends.Subscriptions)
	if subs == nil {
		subs = map[string]backend.Backend{}
	}
	maps.Copy(subs, b)
	toks := maps.Clone(s.tokens)
	for id, t := range tokens {
		if t != "" {
			toks[id] = t
		}
	}
	s.backends.Subscriptions, s.tokens = subs, toks
}

// HasBackend reports whether subscription id has a backend here.
func (s *Server) HasBackend(id string) bool {
	b, _ := s.subBackend(id)
	return b != nil
}

// clientKeys is the keyring in force.
func (s *Server) clientKeys() *keyring { return s.keys.Load() }

// SetClientKeys replaces API_KEYS_FILE's named keys (validated by
// LoadKeysFile); API_KEYS stay. A request keeps the key it was let in with.
func (s *Server) SetClientKeys(keys []ClientKey) { s.keys.Store(s.apiKeys.with(keys)) }
