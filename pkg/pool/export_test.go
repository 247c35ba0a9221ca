package pool

import "github.com/authpool/authpool/pkg/lua"

// Internals the external tests (package pool_test) check directly.

// WithDefaults is withDefaults.
var WithDefaults = withDefaults

// Admit is the weekly fraction up to which pr admits new sessions.
func (p *Pool) Admit(pr Priority) float64 { return p.admit(pr) }

// Keys are the pool's Redis keys, for tests that read state no pool method
// exposes.
func (p *Pool) Keys() lua.Keys { return p.keys }

// SubSet is the subscription set the pool passes its scripts.
func (p *Pool) SubSet() *lua.SubSet { return p.subs.Load() }

// IdleMS and StaleMS are the configured ages in ms.
func (p *Pool) IdleMS() int64  { return p.idleMS() }
func (p *Pool) StaleMS() int64 { return p.staleMS() }
