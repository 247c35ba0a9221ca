package pool

import (
	"errors"
	"strings"
	"testing"
)

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
			cfg, err := parseConfig(marshal(t, d), "test.json", Overrides{WeeklyBudget: tc.env})
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
