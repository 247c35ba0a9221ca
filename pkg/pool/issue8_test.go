package pool

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

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
