package pool

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/authpool/authpool/pkg/lua"
)

// Operator actions (DESIGN §10, /admin/v1). Every write is one admin.lua
// call: atomic, refused on a removed subscription, and recorded as an
// admin_action event naming the actor.

// Subscription actions of an operator.
const (
	ActionDrain   = lua.AdminDrain
	ActionDisable = lua.AdminDisable
	ActionEnable  = lua.AdminEnable
	ActionReset   = lua.AdminReset
)

// AdminResult is the outcome of an operator action.
type AdminResult struct {
	// Changed is false when the state already was what was asked (nothing
	// written, no event).
	Changed bool
	// Status is the subscription's status after the action (drain,
	// disable, enable, reset), or the session's subscription (move: the
	// destination; end: the one it left, "" for the fallback).
	Status string
	// Previous is the status before (subscription actions) or the
	// subscription a moved session left.
	Previous string
}

// ErrInvalidAction: an action other than drain, disable, enable or reset.
var ErrInvalidAction = errors.New("pool: invalid action")

// SubscriptionAction drains, disables, enables or resets a subscription on
// behalf of actor (the admin token's name).
func (p *Pool) SubscriptionAction(ctx context.Context, action, subID, actor string) (AdminResult, error) {
	switch action {
	case ActionDrain, ActionDisable, ActionEnable, ActionReset:
	default:
		return AdminResult{}, fmt.Errorf("pool: %q: %w", action, ErrInvalidAction)
	}
	if !lua.ValidID(subID) {
		return AdminResult{}, fmt.Errorf("pool: %s %q: %w", action, subID, ErrSubscriptionNotFound)
	}
	return p.admin(ctx, lua.AdminArgs{Op: action, Target: subID, Actor: actor})
}

// MoveSession moves a session to subscription to (capacity-checked, a
// rotation event), whatever its owner.
func (p *Pool) MoveSession(ctx context.Context, sessionID, to, actor string) (AdminResult, error) {
	if !lua.ValidID(sessionID) {
		return AdminResult{}, ErrInvalidSession
	}
	if !lua.ValidID(to) {
		return AdminResult{}, fmt.Errorf("pool: move to %q: %w", to, ErrSubscriptionNotFound)
	}
	r, err := p.admin(ctx, lua.AdminArgs{Op: lua.AdminMove, Target: sessionID, To: to, Actor: actor})
	p.hints.drop(sessionID)
	return r, err
}

// EndSession ends a session whatever its owner: its slot, binding and
// stored conversation go.
func (p *Pool) EndSession(ctx context.Context, sessionID, actor string) (AdminResult, error) {
	if !lua.ValidID(sessionID) {
		return AdminResult{}, ErrInvalidSession
	}
	r, err := p.admin(ctx, lua.AdminArgs{Op: lua.AdminEnd, Target: sessionID, Actor: actor})
	p.hints.drop(sessionID)
	return r, err
}

func (p *Pool) admin(ctx context.Context, a lua.AdminArgs) (AdminResult, error) {
	a.ApproachAt, a.StaleMS, a.IdleMS = p.conf().approachAt, p.staleMS(), p.idleMS()
	var r lua.AdminReply
	err := p.withSubs(ctx, func(s *lua.SubSet) error {
		var err error
		r, err = lua.Admin(ctx, p.rdb, p.keys, s, a)
		return err
	})
	switch {
	case errors.Is(err, lua.ErrNotFound) && (a.Op == lua.AdminMove || a.Op == lua.AdminEnd) && r.Detail == "":
		return AdminResult{}, fmt.Errorf("pool: %s %s: %w", a.Op, a.Target, ErrSessionNotFound)
	case errors.Is(err, lua.ErrNotFound):
		return AdminResult{}, fmt.Errorf("pool: %s %s: %w", a.Op, a.Target, ErrSubscriptionNotFound)
	case errors.Is(err, lua.ErrRefused):
		return AdminResult{}, fmt.Errorf("pool: %s %s to %s (%s): %w", a.Op, a.Target, a.To, r.Detail, ErrRefused)
	case err != nil:
		return AdminResult{}, fmt.Errorf("pool: %s: %w", a.Op, err)
	}
	return AdminResult{Changed: r.Changed, Status: r.Status, Previous: r.Detail}, nil
}

// SessionFilter narrows a session listing; empty fields match all.
type SessionFilter struct {
	Subscription string // "fallback" for sessions on the fallback
	Owner        string // owner key id
}

// SessionPage is one page of a session listing.
type SessionPage struct {
	Sessions []Session
	// Next is the cursor of the next page; 0 when the listing is complete.
	Next uint64
}

// sessionScanCount is the SCAN COUNT hint of one step, and sessionPageMax
// bounds the SCAN steps of one page: a page ends at the first of enough
// sessions, the end of the key space, or this many steps.
const (
	sessionScanCount = 200
	sessionPageMax   = 10
	sessionPageSize  = 100
)

// Sessions lists the pool's sessions from cursor (0: the start) with SCAN,
// never KEYS, so a large pool never blocks Redis.
func (p *Pool) Sessions(ctx context.Context, f SessionFilter, cursor uint64) (SessionPage, error) {
	var page SessionPage
	for step := 0; step < sessionPageMax; step++ {
		sids, next, err := lua.ScanSessions(ctx, p.rdb, p.keys, cursor, sessionScanCount)
		if err != nil {
			return SessionPage{}, fmt.Errorf("pool: sessions: %w", err)
		}
		for _, sid := range sids {
			s, err := p.Session(ctx, sid)
			if errors.Is(err, ErrSessionNotFound) {
				continue // ended between SCAN and read
			}
			if err != nil {
				return SessionPage{}, err
			}
			sub := s.Subscription
			if sub == "" {
				sub = "fallback"
			}
			if (f.Subscription == "" || f.Subscription == sub) && (f.Owner == "" || f.Owner == s.Owner) {
				page.Sessions = append(page.Sessions, s)
			}
		}
		cursor = next
		if cursor == 0 || len(page.Sessions) >= sessionPageSize {
			break
		}
	}
	page.Next = cursor
	return page, nil
}

// Event is one entry of the events stream.
type Event struct {
	ID           string          `json:"id"`
	Type         string          `json:"type"`
	Severity     string          `json:"severity"`
	Subscription string          `json:"subscriptionId"`
	Message      string          `json:"message"`
	Data         json.RawMessage `json:"data,omitempty"`
	Time         time.Time       `json:"timestamp"`
}

// MaxRecentEvents bounds one read of RecentEvents.
const MaxRecentEvents = 200

// RecentEvents returns up to count events after the stream id since (""
// for the newest), newest first.
func (p *Pool) RecentEvents(ctx context.Context, since string, count int) ([]Event, error) {
	if count <= 0 || count > MaxRecentEvents {
		count = MaxRecentEvents
	}
	msgs, err := lua.RecentEvents(ctx, p.rdb, p.keys, since, int64(count))
	if err != nil {
		return nil, fmt.Errorf("pool: events: %w", err)
	}
	out := make([]Event, 0, len(msgs))
	for _, m := range msgs {
		str := func(k string) string { v, _ := m.Values[k].(string); return v }
		e := Event{ID: m.ID, Type: str("type"), Severity: str("severity"), Subscription: str("subscriptionId"),
			Message: str("message"), Time: msTime(str("ts"))}
		if d := str("data"); json.Valid([]byte(d)) {
			e.Data = json.RawMessage(d)
		}
		out = append(out, e)
	}
	return out, nil
}

// Report windows: a fixed set, the longest the usage stream's retention.
var reportWindows = map[string]time.Duration{"1h": time.Hour, "1d": 24 * time.Hour, "7d": 7 * 24 * time.Hour}

// ReportWindows lists the accepted report windows, shortest first.
func ReportWindows() []string { return []string{"1h", "1d", "7d"} }

// ErrInvalidWindow: a report window outside ReportWindows.
var ErrInvalidWindow = errors.New("pool: invalid report window")

// reportMax bounds the usage entries one report reads.
const reportMax = 1_000_000

// ReportRow is the usage of one subscription or one key over a window.
// Money is in micro-USD internally, so sums are exact to the cent.
type ReportRow struct {
	ID       string `json:"id"`
	Requests int64  `json:"requests"`
	Tokens   int64  `json:"tokens"`
	// SubscriptionRequests were served by subscriptions.
	SubscriptionRequests int64 `json:"subscriptionRequests"`
	// ValueMicros is the API-equivalent value of what subscriptions served.
	ValueMicros int64 `json:"-"`
	// FallbackMicros is what the fallback (the paid API) cost.
	FallbackMicros int64 `json:"-"`
}

// ValueUSD is the API-equivalent value of the turns subscriptions served.
func (r ReportRow) ValueUSD() float64 { return float64(r.ValueMicros) / 1e6 }

// FallbackUSD is the fallback's spend.
func (r ReportRow) FallbackUSD() float64 { return float64(r.FallbackMicros) / 1e6 }

// Share is the fraction of requests subscriptions served (0 without requests).
func (r ReportRow) Share() float64 {
	if r.Requests == 0 {
		return 0
	}
	return float64(r.SubscriptionRequests) / float64(r.Requests)
}

// MarshalJSON renders money as decimal strings of USD (as Redis stores it).
func (r ReportRow) MarshalJSON() ([]byte, error) {
	type plain ReportRow
	return json.Marshal(struct {
		plain
		ValueUSD    string  `json:"apiEquivalentUSD"`
		FallbackUSD string  `json:"fallbackUSD"`
		Share       float64 `json:"subscriptionShare"`
	}{plain(r), microsUSD(r.ValueMicros), microsUSD(r.FallbackMicros), r.Share()})
}

// Report is the savings report: what subscriptions served at API prices
// (the CLI's total_cost_usd, which is the API-equivalent cost of a
// subscription turn, as settled in the usage stream), against what the
// fallback cost.
type Report struct {
	Window string    `json:"window"`
	From   time.Time `json:"from"`
	To     time.Time `json:"to"`
	// Total sums every row; its ValueUSD is the savings achieved.
	Total ReportRow `json:"total"`
	// Subscriptions has one row per subscription, and "fallback".
	Subscriptions []ReportRow `json:"subscriptions"`
	// Keys has one row per owner key id ("-": no keys; "": no session).
	Keys []ReportRow `json:"keys"`
	// Basis says where the value comes from.
	Basis string `json:"basis"`
}

// ReportBasis names the source of the API-equivalent value.
const ReportBasis = "total_cost_usd reported by the Claude CLI per settled turn (the API-equivalent cost)"

// Report sums the usage stream over window (ReportWindows).
func (p *Pool) Report(ctx context.Context, window string) (*Report, error) {
	d, ok := reportWindows[window]
	if !ok {
		return nil, fmt.Errorf("pool: report %q: %w", window, ErrInvalidWindow)
	}
	now := time.Now()
	msgs, err := lua.UsageSince(ctx, p.rdb, p.keys, now.Add(-d).UnixMilli(), reportMax)
	if err != nil {
		return nil, fmt.Errorf("pool: report: %w", err)
	}
	rep := &Report{Window: window, From: now.Add(-d), To: now, Basis: ReportBasis}
	rep.Total.ID = "total"
	subs, keys := map[string]*ReportRow{}, map[string]*ReportRow{}
	for _, sc := range p.Config().Subscriptions {
		subs[sc.ID] = &ReportRow{ID: sc.ID}
	}
	row := func(m map[string]*ReportRow, id string) *ReportRow {
		r := m[id]
		if r == nil {
			r = &ReportRow{ID: id}
			m[id] = r
		}
		return r
	}
	for _, m := range msgs {
		str := func(k string) string { v, _ := m.Values[k].(string); return v }
		cost := usdMicros(str("cost"))
		tokens := atoi(str("in")) + atoi(str("out")) + atoi(str("cacheCreate")) + atoi(str("cacheRead"))
		sub := str("sub")
		for _, r := range []*ReportRow{&rep.Total, row(subs, sub), row(keys, cmp.Or(str("keyName"), str("key")))} {
			r.Requests++
			r.Tokens += tokens
			if sub == "fallback" {
				r.FallbackMicros += cost
			} else {
				r.SubscriptionRequests++
				r.ValueMicros += cost
			}
		}
	}
	rep.Subscriptions, rep.Keys = sortedRows(subs), sortedRows(keys)
	return rep, nil
}

func sortedRows(m map[string]*ReportRow) []ReportRow {
	out := make([]ReportRow, 0, len(m))
	for _, r := range m {
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// usdMicros parses a decimal USD string exactly into micro-USD (the
// scripts write at most six decimals), so that sums do not drift.
func usdMicros(s string) int64 {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	whole, frac, _ := strings.Cut(s, ".")
	frac = (frac + "000000")[:6]
	w, _ := strconv.ParseInt(whole, 10, 64)
	f, _ := strconv.ParseInt(frac, 10, 64)
	v := w*1_000_000 + f
	if neg {
		v = -v
	}
	return v
}

// microsUSD renders micro-USD as a decimal USD string with six decimals.
func microsUSD(v int64) string {
	sign := ""
	if v < 0 {
		sign, v = "-", -v
	}
	return fmt.Sprintf("%s%d.%06d", sign, v/1_000_000, v%1_000_000)
}
