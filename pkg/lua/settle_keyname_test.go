package lua

import (
	"context"
	"testing"

	"github.com/authpool/authpool/internal/redistest"
)

// TestSettleKeyNameWithObservedWindow: while an observed seven_day
// utilization is current the threshold rules are skipped, and the client
// key's name after them must still be read where it is: settle once used
// the first threshold as the key name then (usage written to the
// never-written placeholder key, keyName "0.8" in the usage stream).
func TestSettleKeyNameWithObservedWindow(t *testing.T) {
	redistest.Each(t, func(t *testing.T, tg *redistest.Target) {
		ctx := context.Background()
		c := tg.Client
		k := NewKeys("kn")
		if _, err := Sync(ctx, c, k, ConfigVersion{Hash: "h1", LoadedAt: 1},
			[]SyncSub{{ID: "s1", Email: "a@example.com", Type: "claude-pro", ConfigDir: "/x", WeeklyBudget: "100", MaxClients: 5}}, nil); err != nil {
			t.Fatal(err)
		}
		u := 0.5
		if _, err := Observe(ctx, c, k, ObserveArgs{SubID: "s1", ApproachAt: 0.8,
			Observations: []Observation{{Window: "seven_day", Utilization: &u, ResetMS: 4102444800000, Status: "allowed", AtMS: 1}}}); err != nil {
			t.Fatal(err)
		}
		for i, name := range []string{"", "team"} {
			if _, err := Settle(ctx, c, k, SettleArgs{RequestID: []string{"r1", "r2"}[i], SubID: "s1", CostUSD: "0.5",
				MarkerTTL: 60000, Retention: 60000, StaleMS: 60000, Thresholds: []string{"0.8"}, KeyName: name}); err != nil {
				t.Fatal(err)
			}
		}
		if n, _ := c.Exists(ctx, k.Base()+":key:-", k.Base()+":key:-:hourly").Result(); n != 0 {
			t.Fatalf("the placeholder key was written (%d keys)", n)
		}
		if cost, _ := c.HGet(ctx, k.ClientKey("team"), "cost").Result(); cost != "0.500000" {
			t.Fatalf("named key cost %q, want 0.500000", cost)
		}
		xs, err := c.XRange(ctx, k.Usage(), "-", "+").Result()
		if err != nil || len(xs) != 2 {
			t.Fatalf("usage stream: %v, %v", xs, err)
		}
		if v, ok := xs[0].Values["keyName"]; ok {
			t.Fatalf("first entry has keyName %v, want none", v)
		}
		if v := xs[1].Values["keyName"]; v != "team" {
			t.Fatalf("second entry keyName %v, want team", v)
		}
	})
}
