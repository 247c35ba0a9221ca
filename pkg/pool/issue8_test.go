package pool

import (
	"context"
	"fmt"
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
