package main

import (
	"context"

	"github.com/authpool/authpool/pkg/pool"
	"github.com/authpool/authpool/pkg/telemetry"
)

// subscriptionSamples reads p's status snapshot as telemetry's generic
// per-subscription gauges: the wiring knows both sides, telemetry knows no
// pool.
func subscriptionSamples(p *pool.Pool) func(context.Context) ([]telemetry.SubscriptionSample, error) {
	return func(ctx context.Context) ([]telemetry.SubscriptionSample, error) {
		snap, err := p.Status(ctx)
		if err != nil {
			return nil, err
		}
		out := make([]telemetry.SubscriptionSample, 0, len(snap.Subscriptions))
		for _, s := range snap.Subscriptions {
			smp := telemetry.SubscriptionSample{ID: s.ID, Status: s.Status,
				WeeklyUsed: s.WeeklyUsed, WeeklyBudget: s.WeeklyBudget, Health: s.Health.Display,
				Clients: float64(s.Clients), BlockCost: s.BlockCost, BurnRate: s.BurnRate}
			for _, name := range []string{pool.WindowFiveHour, pool.WindowSevenDay} {
				w := s.Windows[name]
				// The figure in force: the observation while current, 0
				// once its window has reset; none when never observed.
				smp.Windows = append(smp.Windows, telemetry.WindowSample{Name: name, Utilization: w.Used,
					Reset: w.ResetAt})
			}
			out = append(out, smp)
		}
		return out, nil
	}
}

// savingsSamples reads the pool's 7-day savings report as telemetry's
// generic savings gauges.
func savingsSamples(p *pool.Pool) func(context.Context) ([]telemetry.SavingsSample, error) {
	return func(ctx context.Context) ([]telemetry.SavingsSample, error) {
		r, err := p.Report(ctx, "7d")
		if err != nil {
			return nil, err
		}
		return []telemetry.SavingsSample{{Window: r.Window, SavedUSD: r.Total.ValueUSD(),
			FallbackUSD: r.Total.FallbackUSD(), Share: r.Total.Share()}}, nil
	}
}
