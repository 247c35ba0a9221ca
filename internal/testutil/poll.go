package testutil

import (
	"testing"
	"time"
)

// PollInterval is how often Within and Eventually check their condition:
// short against the waits they replace, long enough not to load the
// machine.
const PollInterval = 10 * time.Millisecond

// Within checks cond every PollInterval until it holds or timeout has
// passed, and reports whether it held. Tests that print their own diagnosis
// use it; the others use Eventually.
func Within(timeout time.Duration, cond func() bool) bool {
	return Poll(timeout, PollInterval, cond)
}

// Poll is Within checking every interval, for conditions that cost a
// request to a server (a scrape, a status page) to check.
func Poll(timeout, interval time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return cond()
		}
		time.Sleep(interval)
	}
	return true
}

// Eventually waits until cond holds and returns how long that took; after
// timeout it fails the test, naming what it waited for.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	if !Within(timeout, cond) {
		t.Fatalf("timed out after %s waiting for %s", timeout, what)
	}
	return time.Since(start)
}
