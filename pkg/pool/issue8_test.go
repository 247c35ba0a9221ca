package pool

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/authpool/authpool/internal/redistest"
)

// Regression tests of issue 8: each failed before its fix.

// TestPriorityOrderEveryThreshold: high admits at least as far as normal,
// and normal as far as low, for every threshold validation accepts. With
// high capped at 0.95, a threshold above 0.95 admitted high-priority
// sessions less than normal ones.
func TestPriorityOrderEveryThreshold(t *testing.T) {
	for _, th := range []float64{0.01, 0.05, 0.1, 0.5, 0.8, 0.85, 0.9, 0.95, 0.96, 0.99, 1.0} {
		t.Run(fmt.Sprint(th), func(t *testing.T) {
			cfg := testConfig(1, 100, 10)
			cfg.WeeklyBudgetThreshold = th
			if err := withDefaults(cfg).Validate(); err != nil {
				t.Fatalf("threshold %v refused by validation: %v", th, err)
			}
			p := New(nil, cfg, Options{})
			low, normal, high := p.admit(PriorityLow), p.admit(PriorityNormal), p.admit(PriorityHigh)
			if !(high >= normal && normal >= low) {
				t.Fatalf("threshold %v: low %v, normal %v, high %v; want high ≥ normal ≥ low", th, low, normal, high)
			}
			if normal != th {
				t.Errorf("normal = %v, want the threshold %v", normal, th)
			}
		})
	}
}

// TestHighAdmittedWhereNormalIs: the behaviour behind the order above — a
// subscription just under a high threshold takes a high-priority session
// whenever it takes a normal one.
func TestHighAdmittedWhereNormalIs(t *testing.T) {
	for _, th := range []float64{0.96, 0.99, 1.0} {
		t.Run(fmt.Sprint(th), func(t *testing.T) {
			tg := redistest.Mini(t)
			cfg := testConfig(1, 100, 10)
			cfg.WeeklyBudgetThreshold = th
			p := newPool(t, tg, cfg)
			mustSettle(t, p, Usage{RequestID: "seed", SubscriptionID: "sub00", CostUSD: 100*th - 0.5})
			for _, pr := range []Priority{PriorityNormal, PriorityHigh} {
				a, err := p.Allocate(context.Background(), "s-"+string(pr), pr)
				if err != nil {
					t.Fatal(err)
				}
				if a.Kind != Bound {
					t.Errorf("threshold %v, used %v%%, %s: %s (%s), want bound", th, 100*th-0.5, pr, a.Kind, a.Reason)
				}
			}
		})
	}
}

// TestWeeklyBudgetBounded: a budget the scripts cannot hold as micro-USD
// integers (1e20 printed negative) is refused, in the file and in
// WEEKLY_BUDGET, with its path and the bound; the bound itself is accepted.
func TestWeeklyBudgetBounded(t *testing.T) {
	cases := []struct {
		name   string
		file   any
		env    string
		path   string // "" = accepted
		budget float64
	}{
		{name: "file 1e20", file: 1e20, path: "subscriptions[0].weeklyBudget"},
		{name: "file just over", file: MaxWeeklyBudget + 0.01, path: "subscriptions[0].weeklyBudget"},
		{name: "file at the bound", file: MaxWeeklyBudget, budget: MaxWeeklyBudget},
		{name: "env 1e20", file: 100.0, env: "1e20", path: EnvWeeklyBudget},
		{name: "env 1000001", file: 100.0, env: "1000001", path: EnvWeeklyBudget},
		{name: "env at the bound", file: 100.0, env: "1000000", budget: MaxWeeklyBudget},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := validDoc()
			subAt(d, 0)["weeklyBudget"] = tc.file
			getenv := env()
			if tc.env != "" {
				getenv = env(EnvWeeklyBudget, tc.env)
			}
			cfg, err := parseConfig(marshal(t, d), "test.json", getenv)
			if tc.path == "" {
				if err != nil {
					t.Fatal(err)
				}
				if got := cfg.Subscriptions[0].WeeklyBudget; got != tc.budget {
					t.Fatalf("weeklyBudget = %v, want %v", got, tc.budget)
				}
				return
			}
			var ve *ValidationError
			if !errors.As(err, &ve) || len(ve.Problems) != 1 || ve.Problems[0].Path != tc.path {
				t.Fatalf("err = %v, want one problem at %s", err, tc.path)
			}
			if msg := ve.Problems[0].Message; !strings.Contains(msg, "1000000") {
				t.Errorf("message %q does not name the bound", msg)
			}
		})
	}
}

// TestExhaustedWritesExhaustedEvent: with fallbackWhenExhausted false, a
// session whose subscription stops serving it while no other can take it
// is refused; the event says so (exhausted), never that it moved to a
// fallback backend that is off (failover).
func TestExhaustedWritesExhaustedEvent(t *testing.T) {
	redistest.Each(t, func(t *testing.T, tg *redistest.Target) {
		ctx := context.Background()
		cfg := testConfig(2, 100, 10)
		off := false
		cfg.FallbackWhenExhausted = &off
		p := newPool(t, tg, cfg)
		a := mustAllocate(t, p, "s1", PriorityNormal)
		reset := time.Now().Add(2 * time.Hour)
		for _, id := range []string{"sub00", "sub01"} {
			if _, err := p.Mark(ctx, id, StatusLimited, "usage_limit", reset); err != nil {
				t.Fatal(err)
			}
		}
		_, err := p.Allocate(ctx, "s1", PriorityNormal)
		var ex *ExhaustedError
		if !errors.As(err, &ex) {
			t.Fatalf("allocate = %v, want an *ExhaustedError", err)
		}
		if f := events(t, tg, p, "failover"); len(f) != 0 {
			t.Errorf("failover events = %v, want none: there is no fallback", f)
		}
		ev := events(t, tg, p, "exhausted")
		if len(ev) != 1 {
			t.Fatalf("exhausted events = %d, want 1", len(ev))
		}
		e := ev[0]
		if e["subscriptionId"] != a.Subscription.ID || e["severity"] != "critical" {
			t.Errorf("event = %v, want subscription %s, severity critical", e, a.Subscription.ID)
		}
		msg, _ := e["message"].(string)
		if strings.Contains(msg, "fallback backend") || !strings.Contains(msg, "s1") || !strings.Contains(msg, "refused") {
			t.Errorf("message = %q", msg)
		}
		var data map[string]any
		if err := json.Unmarshal([]byte(e["data"].(string)), &data); err != nil || data["sessionId"] != "s1" ||
			data["from"] != a.Subscription.ID || data["reason"] != "all_unavailable" {
			t.Errorf("data = %v (%v)", e["data"], err)
		}
		// The session is no longer bound: its next refusal writes no second event.
		if _, err := p.Allocate(ctx, "s1", PriorityNormal); !errors.As(err, &ex) {
			t.Fatalf("second allocate = %v", err)
		}
		if n := len(events(t, tg, p, "exhausted")); n != 1 {
			t.Errorf("exhausted events after a second refusal = %d, want 1", n)
		}
	})
}

// TestLimitMessagesPrintRFC3339: limit_reached messages name the reset as
// RFC 3339 in UTC, not as epoch milliseconds.
func TestLimitMessagesPrintRFC3339(t *testing.T) {
	redistest.Each(t, func(t *testing.T, tg *redistest.Target) {
		ctx := context.Background()
		p := newPool(t, tg, testConfig(2, 100, 10))
		reset := time.Now().Add(3 * time.Hour).Truncate(time.Second)
		cool := time.Now().Add(20 * time.Minute).Truncate(time.Second)
		if _, err := p.Mark(ctx, "sub00", StatusLimited, "usage_limit", reset); err != nil {
			t.Fatal(err)
		}
		if _, err := p.Mark(ctx, "sub01", StatusCooldown, "auth", cool); err != nil {
			t.Fatal(err)
		}
		ev := events(t, tg, p, "limit_reached")
		if len(ev) != 2 {
			t.Fatalf("limit_reached events = %d, want 2", len(ev))
		}
		for i, when := range []time.Time{reset, cool} {
			msg, _ := ev[i]["message"].(string)
			want := when.UTC().Format(time.RFC3339)
			if !strings.Contains(msg, want) || strings.Contains(msg, fmt.Sprint(when.UnixMilli())) {
				t.Errorf("message %q, want the time as %s and no epoch milliseconds", msg, want)
			}
		}
	})
}

// TestMarkClampsResets (finding 2): whatever reset a caller passes, a
// limited (or cooldown) subscription comes back within [now + 60 s,
// now + 8 d] of Redis' clock. A misread reset once marked four
// subscriptions limited until the year 2286.
func TestMarkClampsResets(t *testing.T) {
	const minAhead, maxAhead = 60 * time.Second, 8 * 24 * time.Hour
	y2286 := time.Date(2286, 11, 20, 17, 46, 39, 0, time.UTC)
	cases := []struct {
		name   string
		status string
		until  func(now time.Time) time.Time
		want   func(now time.Time) (lo, hi time.Time)
	}{
		{"limited until 2286", StatusLimited, func(time.Time) time.Time { return y2286 },
			func(now time.Time) (time.Time, time.Time) { return now.Add(maxAhead - time.Second), now.Add(maxAhead) }},
		{"limited 1 s away", StatusLimited, func(now time.Time) time.Time { return now.Add(time.Second) },
			func(now time.Time) (time.Time, time.Time) { return now.Add(minAhead), now.Add(minAhead + time.Second) }},
		{"limited in the past", StatusLimited, func(now time.Time) time.Time { return now.Add(-time.Hour) },
			func(now time.Time) (time.Time, time.Time) { return now.Add(minAhead), now.Add(maxAhead) }},
		{"limited 3 days away is kept", StatusLimited, func(now time.Time) time.Time { return now.Add(72 * time.Hour) },
			func(now time.Time) (time.Time, time.Time) {
				return now.Add(72 * time.Hour), now.Add(72*time.Hour + time.Second)
			}},
		{"cooldown until 2286", StatusCooldown, func(time.Time) time.Time { return y2286 },
			func(now time.Time) (time.Time, time.Time) { return now.Add(maxAhead - time.Second), now.Add(maxAhead) }},
		{"cooldown 1 s away", StatusCooldown, func(now time.Time) time.Time { return now.Add(time.Second) },
			func(now time.Time) (time.Time, time.Time) { return now.Add(minAhead), now.Add(minAhead + time.Second) }},
	}
	redistest.Each(t, func(t *testing.T, tg *redistest.Target) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				ctx := context.Background()
				p := newPool(t, tg, testConfig(1, 100, 10))
				t.Cleanup(func() { _, _ = p.Mark(ctx, "sub00", StatusAvailable, "test", time.Time{}) })
				before := time.Now().Truncate(time.Millisecond)
				m, err := p.Mark(ctx, "sub00", tc.status, "usage_limit", tc.until(before))
				after := time.Now()
				if err != nil {
					t.Fatal(err)
				}
				lo, _ := tc.want(before)
				_, hi := tc.want(after)
				if m.Until.Before(lo) || m.Until.After(hi) {
					t.Fatalf("until = %s, want within [%s, %s]", m.Until.UTC(), lo.UTC(), hi.UTC())
				}
				if got := subStatus(t, p, "sub00"); got.Status != tc.status {
					t.Fatalf("status = %s, want %s", got.Status, tc.status)
				}
				stored, _ := tg.Client.HGet(ctx, p.keys.Sub("sub00"), "until").Int64()
				if stored != m.Until.UnixMilli() {
					t.Errorf("stored until = %d, want %d", stored, m.Until.UnixMilli())
				}
			})
		}
	})
}

// TestMarkClampsBlockEndAndStoredResets: the end of a block about to close
// is no reset to believe either (at least 60 s), and a later mark repairs
// an until stored before the clamp existed.
func TestMarkClampsBlockEndAndStoredResets(t *testing.T) {
	tg := redistest.Mini(t)
	ctx := context.Background()
	clk := newClock(tg, time.Date(2030, 1, 1, 10, 0, 0, 0, time.UTC))
	p := newPool(t, tg, testConfig(2, 100, 10))
	mustSettle(t, p, Usage{RequestID: "r1", SubscriptionID: "sub00", CostUSD: 1})
	clk.advance(5*time.Hour - 30*time.Second) // the block ends in 30 s
	m, err := p.Mark(ctx, "sub00", StatusLimited, "usage_limit", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if min := clk.now.Add(time.Minute); m.Until.Before(min) {
		t.Errorf("until = %s, want at least %s", m.Until.UTC(), min.UTC())
	}

	// sub01 was marked limited until 2286 by an older version.
	if _, err := p.Mark(ctx, "sub01", StatusLimited, "usage_limit", clk.now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	y2286 := time.Date(2286, 11, 20, 17, 46, 39, 0, time.UTC).UnixMilli()
	if err := tg.Client.HSet(ctx, p.keys.Sub("sub01"), "until", y2286).Err(); err != nil {
		t.Fatal(err)
	}
	m, err = p.Mark(ctx, "sub01", StatusLimited, "usage_limit", clk.now.Add(2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if max := clk.now.Add(8 * 24 * time.Hour); m.Until.After(max) {
		t.Errorf("until after a new mark = %s, want at most %s", m.Until.UTC(), max.UTC())
	}
}
