package pool

// Internals the external tests (package pool_test) check directly.

// WithDefaults is withDefaults.
var WithDefaults = withDefaults

// Admit is the weekly fraction up to which pr admits new sessions.
func (p *Pool) Admit(pr Priority) float64 { return p.admit(pr) }
