package pool

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/authpool/authpool/pkg/lua"
)

// Health is a subscription's health score with its parts (DESIGN §5).
type Health struct {
	// Score is the unclamped score used for ranking.
	Score float64
	// Display is Score clamped to 0–100, for people.
	Display float64
	// WeeklyPercent, BlockPercent and BurnPenalty are the formula's inputs.
	WeeklyPercent, BlockPercent, BurnPenalty float64
	// Clients is the live-client count in the formula.
	Clients int
	// IdleBonus is the bonus for having no active block.
	IdleBonus float64
}

// SubscriptionStatus is one subscription in a Snapshot.
type SubscriptionStatus struct {
	ID, Email, Type, ConfigDir string
	// Status is the status in force (a due restore is shown as done).
	Status       string
	StatusReason string
	Until        time.Time
	WeeklyUsed   float64
	WeeklyBudget float64
	// WeeklyPercent is the weekly fraction in force ·100: the observed
	// seven_day utilization while current, else WeeklyUsed/WeeklyBudget.
	WeeklyPercent float64
	BlockActive   bool
	BlockStart    time.Time
	BlockEnd      time.Time
	// BlockCost is the cost of the active 5-hour block (0 when none is active).
	BlockCost float64
	// BurnRate is USD per hour in the active block.
	BurnRate    float64
	LastUsageAt time.Time
	Tokens      int64
	Requests    int64
	// Clients is the number of live sessions bound to it: ActiveClients
	// (a turn within idleAfterSeconds, or in flight), which count against
	// MaxClients, plus IdleClients, which keep their binding but no slot.
	Clients       int
	ActiveClients int
	IdleClients   int
	MaxClients    int
	// EstimatedHoursUntilExhaustion is (budget − used) / burn rate; −1 when
	// nothing is burning.
	EstimatedHoursUntilExhaustion float64
	Health                        Health
	// WeeklySource says where WeeklyPercent comes from: SourceObserved
	// (the CLI's seven_day utilization), SourceReset (that window reset
	// since: 0) or SourceEstimate (WeeklyUsed/WeeklyBudget).
	WeeklySource string
	// Windows are the observed usage windows, keyed by WindowFiveHour and
	// WindowSevenDay.
	Windows map[string]WindowStatus
	// AuthFailures counts the refused logins in a row.
	AuthFailures int
}

// Statuses lists every subscription status, the usable ones first: the
// values a status label can take.
func Statuses() []string {
	return []string{StatusAvailable, StatusApproaching, StatusLimited, StatusCooldown, StatusDraining, StatusDisabled, StatusRemoved}
}

// Snapshot is the pool as one atomic read saw it.
type Snapshot struct {
	Now           time.Time
	Subscriptions []SubscriptionStatus
}

type rawStatus struct {
	Now           int64 `json:"now"`
	Stale         bool  `json:"stale"`
	Subscriptions []struct {
		ID            string `json:"id"`
		Email         string `json:"email"`
		Type          string `json:"type"`
		ConfigDir     string `json:"configDir"`
		Status        string `json:"status"`
		StatusReason  string `json:"statusReason"`
		Until         int64  `json:"until"`
		WeeklyUsed    string `json:"weeklyUsed"`
		WeeklyBudget  string `json:"weeklyBudget"`
		WeeklyPercent string `json:"weeklyPercent"`
		BlockActive   bool   `json:"blockActive"`
		BlockStart    int64  `json:"blockStart"`
		BlockEnd      int64  `json:"blockEnd"`
		BlockCost     string `json:"blockCost"`
		BurnRate      string `json:"burnRate"`
		LastUsageAt   int64  `json:"lastUsageAt"`
		Tokens        int64  `json:"tokens"`
		Requests      int64  `json:"requests"`
		Clients       int    `json:"clients"`
		ActiveClients int    `json:"activeClients"`
		IdleClients   int    `json:"idleClients"`
		MaxClients    int    `json:"maxClients"`
		ETA           string `json:"estimatedHoursUntilExhaustion"`
		WeeklySource  string `json:"weeklySource"`
		AuthFailures  int    `json:"authFailures"`
		Windows       struct {
			FiveHour rawWindow `json:"five_hour"`
			SevenDay rawWindow `json:"seven_day"`
		} `json:"windows"`
		Health struct {
			Score         string  `json:"score"`
			Display       string  `json:"display"`
			WeeklyPercent string  `json:"weeklyPercent"`
			BlockPercent  string  `json:"blockPercent"`
			BurnPenalty   string  `json:"burnPenalty"`
			Clients       int     `json:"clients"`
			IdleBonus     float64 `json:"idleBonus"`
		} `json:"health"`
	} `json:"subscriptions"`
}

// Status reads the whole pool in one atomic script call.
func (p *Pool) Status(ctx context.Context) (*Snapshot, error) {
	for attempt := 0; ; attempt++ {
		raw, err := lua.Status(ctx, p.rdb, p.keys, p.subs.Load(),
			lua.StatusArgs{StaleMS: p.staleMS(), ApproachAt: p.conf().approachAt, Weights: p.weights, IdleMS: p.idleMS()})
		if err != nil {
			return nil, fmt.Errorf("pool: status: %w", err)
		}
		var rs rawStatus
		if err := json.Unmarshal(raw, &rs); err != nil {
			return nil, fmt.Errorf("pool: status: decode: %w", err)
		}
		if rs.Stale && attempt < 3 {
			if err := p.refreshSubs(ctx); err != nil {
				return nil, fmt.Errorf("pool: status: %w", err)
			}
			continue
		}
		return rs.snapshot(), nil
	}
}

func (rs *rawStatus) snapshot() *Snapshot {
	s := &Snapshot{Now: time.UnixMilli(rs.Now)}
	for _, r := range rs.Subscriptions {
		s.Subscriptions = append(s.Subscriptions, SubscriptionStatus{
			ID: r.ID, Email: r.Email, Type: r.Type, ConfigDir: r.ConfigDir,
			Status: r.Status, StatusReason: r.StatusReason, Until: optMS(r.Until),
			WeeklyUsed: atof(r.WeeklyUsed), WeeklyBudget: atof(r.WeeklyBudget), WeeklyPercent: atof(r.WeeklyPercent),
			BlockActive: r.BlockActive, BlockStart: optMS(r.BlockStart), BlockEnd: optMS(r.BlockEnd),
			BlockCost: atof(r.BlockCost), BurnRate: atof(r.BurnRate), LastUsageAt: optMS(r.LastUsageAt),
			Tokens: r.Tokens, Requests: r.Requests, Clients: r.Clients, MaxClients: r.MaxClients,
			ActiveClients: r.ActiveClients, IdleClients: r.IdleClients,
			EstimatedHoursUntilExhaustion: atof(r.ETA),
			Health: Health{Score: atof(r.Health.Score), Display: atof(r.Health.Display),
				WeeklyPercent: atof(r.Health.WeeklyPercent), BlockPercent: atof(r.Health.BlockPercent),
				BurnPenalty: atof(r.Health.BurnPenalty), Clients: r.Health.Clients, IdleBonus: r.Health.IdleBonus},
			WeeklySource: r.WeeklySource, AuthFailures: r.AuthFailures,
			Windows: map[string]WindowStatus{WindowFiveHour: r.Windows.FiveHour.status(),
				WindowSevenDay: r.Windows.SevenDay.status()},
		})
	}
	return s
}

func optMS(ms int64) time.Time {
	if ms <= 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

// FormatUSD renders a USD amount the way Redis stores it.
func FormatUSD(v float64) string { return strconv.FormatFloat(v, 'f', 6, 64) }
