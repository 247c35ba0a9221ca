// Package testutil holds the small helpers the tests of every package
// wrote again: a goroutine-safe log buffer, a poller for conditions that
// become true on another goroutine's time, and a reader of the Prometheus
// text exposition. It is imported by tests only.
package testutil
