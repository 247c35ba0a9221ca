package gateway

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/authpool/authpool/internal/pooltest"
	"github.com/authpool/authpool/internal/redistest"
	"github.com/authpool/authpool/pkg/backend"
	"github.com/authpool/authpool/pkg/pool"
)

// rateLimitFixture is every rate_limit_event line of the shared CLI
// fixtures, in file order.
func rateLimitFixture(t *testing.T) [][]byte {
	t.Helper()
	dir := "../../../shared/fixtures/claude-cli"
	b, err := os.ReadFile(filepath.Join(dir, "rate-limit-events.jsonl"))
	if err != nil {
		t.Skipf("CLI fixtures not found at %s: %v", dir, err)
	}
	var out [][]byte
	for _, l := range bytes.Split(b, []byte("\n")) {
		if len(bytes.TrimSpace(l)) > 0 {
			out = append(out, l)
		}
	}
	return out
}

// readings decodes lines as the CLI runner does, after a sandboxed init.
func readings(t *testing.T, lines ...[]byte) []backend.RateLimit {
	t.Helper()
	d := backend.NewStreamDecoder(nil)
	if err := d.Line([]byte(`{"type":"system","subtype":"init","session_id":"s","tools":[],"mcp_servers":[]}`)); err != nil {
		t.Fatal(err)
	}
	for _, l := range lines {
		if err := d.Line(l); err != nil {
			t.Fatal(err)
		}
	}
	return d.RateLimits()
}

type wantWindow struct {
	util   float64 // -1: none
	status string
	reset  int64 // Unix seconds; 0: none
}

// TestRecordFixtureShapes records every shape of the fixture file, each on
// a subscription of its own, and reads back what the pool keeps per window
// (missing fields, integer utilization, unifiedWindows with and without the
// top-level utilization, a bare event).
func TestRecordFixtureShapes(t *testing.T) {
	lines := rateLimitFixture(t)
	if len(lines) != 6 {
		t.Fatalf("fixture has %d lines, this test knows 6", len(lines))
	}
	const r5, r7 = 1796050800, 1796400000
	none := wantWindow{util: -1}
	cases := []struct {
		name     string
		five     wantWindow
		seven    wantWindow
		status   string
		observed bool
	}{
		{"allowed five_hour, no utilization", wantWindow{-1, "allowed", r5}, none, pool.StatusAvailable, true},
		{"allowed_warning seven_day 0.86", none, wantWindow{0.86, "allowed_warning", r7}, pool.StatusApproaching, true},
		{"unifiedWindows, no top-level utilization", wantWindow{0.42, "allowed", r5}, wantWindow{0.31, "", r7},
			pool.StatusAvailable, true},
		{"rejected five_hour, integer utilization", wantWindow{1, "rejected", r5}, wantWindow{0.65, "", r7},
			pool.StatusApproaching, true},
		{"rejected seven_day, no utilization", none, wantWindow{-1, "rejected", r7}, pool.StatusAvailable, true},
		{"bare event", none, none, pool.StatusAvailable, false},
	}
	tg := redistest.Mini(t)
	tg.Mini.SetTime(time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC))
	p := pool.New(tg.Client, pooltest.Config(len(cases), 100, 5), pool.Options{})
	if err := p.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	for i, c := range cases {
		id := p.Config().Subscriptions[i].ID
		obs := observations(readings(t, lines[i]))
		r, err := p.Observe(context.Background(), id, obs)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if (r.Applied > 0) != c.observed {
			t.Errorf("%s: applied %d, want observed %v", c.name, r.Applied, c.observed)
		}
		snap, err := p.Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		st := snap.Subscriptions[i]
		if st.Status != c.status {
			t.Errorf("%s: status %s, want %s", c.name, st.Status, c.status)
		}
		for name, want := range map[string]wantWindow{pool.WindowFiveHour: c.five, pool.WindowSevenDay: c.seven} {
			w := st.Windows[name]
			got := -1.0
			if w.Utilization != nil {
				got = *w.Utilization
			}
			var reset int64
			if !w.ResetAt.IsZero() {
				reset = w.ResetAt.Unix()
			}
			if got != want.util || w.Status != want.status || reset != want.reset {
				t.Errorf("%s: %s = util %v status %q reset %d, want %v %q %d", c.name, name, got, w.Status, reset,
					want.util, want.status, want.reset)
			}
			wantSource := pool.SourceEstimate
			if want.util >= 0 {
				wantSource = pool.SourceObserved
			}
			if w.Source != wantSource {
				t.Errorf("%s: %s source %s, want %s", c.name, name, w.Source, wantSource)
			}
		}
	}
}

// One run's lines, all of them, in order: each window ends with its newest
// reading, a utilization a later line leaves out kept for the same reset.
func TestRecordFixtureInOrder(t *testing.T) {
	lines := rateLimitFixture(t)
	tg := redistest.Mini(t)
	tg.Mini.SetTime(time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC))
	p := pool.New(tg.Client, pooltest.Config(1, 100, 5), pool.Options{})
	if err := p.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	rls := readings(t, lines...)
	for i := range rls { // one run reads its lines a moment apart
		rls[i].ObservedAt = time.Date(2026, 11, 30, 12, 0, i, 0, time.UTC)
	}
	if _, err := p.Observe(context.Background(), "sub00", observations(rls)); err != nil {
		t.Fatal(err)
	}
	st, err := p.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	w5, w7 := st.Subscriptions[0].Windows[pool.WindowFiveHour], st.Subscriptions[0].Windows[pool.WindowSevenDay]
	if w5.Utilization == nil || *w5.Utilization != 1 || w5.Status != "rejected" {
		t.Errorf("five_hour = %+v, want 1 rejected (line 4)", w5)
	}
	if w7.Utilization == nil || *w7.Utilization != 0.65 || w7.Status != "rejected" {
		t.Errorf("seven_day = %+v, want rejected (line 5) with line 4's 0.65 kept", w7)
	}
}
