package gateway

import "github.com/authpool/authpool/pkg/lua"

// keys builds the harness pool's Redis keys, for the assertions on state no
// pool method reads (the events stream, in-flight leases, the session
// hashes): the gateway itself never names a key.
func (h *harness) keys() lua.Keys { return lua.NewKeys(h.pool.Config().Pool) }
