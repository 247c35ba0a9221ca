// Package notify delivers the pool's notifications (DESIGN §4, §6): it reads
// the events stream through one consumer group shared by every rebalancer
// replica, routes each event to the channels its rules name (log, webhook),
// retries failed deliveries with exponential back-off and moves events that
// cannot be delivered to the dead stream. Delivery is at-least-once; the
// event id lets receivers drop duplicates.
//
// The package does not log: the log channel and every problem it handles go
// to an injected Logger.
package notify

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Event types written to the events stream by the pool's scripts.
const (
	TypeUsageThreshold = "usage_threshold"
	TypeFailover       = "failover"
	TypeRotation       = "rotation"
	TypeLimitReached   = "limit_reached"
	TypeRecovered      = "recovered"
	// TypeExhausted: a bound session lost its subscription, no other could
	// take it and fallback is off, so it is refused (503 pool_exhausted).
	TypeExhausted = "exhausted"
	// TypeAuthFailed: a subscription's login was refused (critical); once
	// per episode, which a successful turn ends (recovered). Someone must
	// log in again in its config dir or make a new setup-token.
	TypeAuthFailed = "auth_failed"
	// TypeAdminAction: an operator acted through /admin/v1 (drain,
	// disable, enable, reset, move, end); data names the action and actor.
	TypeAdminAction = "admin_action"
	// TypeConfigReloaded: a replica synced a new config version (written
	// once per version, by sync.lua).
	TypeConfigReloaded = "config_reloaded"
	// TypeConfigReloadFailed: a changed config file was invalid; the
	// running config stays. Data lists the problems with their JSON paths.
	TypeConfigReloadFailed = "config_reload_failed"
	// TypeSubscriptionAdded / TypeSubscriptionRemoved: a config version
	// added or dropped a subscription.
	TypeSubscriptionAdded   = "subscription_added"
	TypeSubscriptionRemoved = "subscription_removed"
)

// Severities of events.
const (
	SeverityInfo     = "info"
	SeverityWarning  = "warning"
	SeverityCritical = "critical"
)

// Channels an event can be routed to.
const (
	ChannelLog     = "log"
	ChannelWebhook = "webhook"
)

// ErrMalformedEvent reports a stream entry that is not a valid event. Such
// entries go to the dead stream at once.
var ErrMalformedEvent = errors.New("notify: malformed event")

func validType(t string) bool {
	switch t {
	case TypeUsageThreshold, TypeFailover, TypeRotation, TypeLimitReached, TypeRecovered, TypeExhausted,
		TypeAuthFailed, TypeAdminAction, TypeConfigReloaded, TypeConfigReloadFailed, TypeSubscriptionAdded,
		TypeSubscriptionRemoved:
		return true
	}
	return false
}

func validSeverity(s string) bool {
	return s == SeverityInfo || s == SeverityWarning || s == SeverityCritical
}

// Event is one notification read from the events stream.
type Event struct {
	// ID is the stream entry id; it identifies the event across redeliveries.
	ID string
	// Type is one of the Type* constants.
	Type string
	// Severity is one of the Severity* constants.
	Severity string
	// SubscriptionID names the subscription the event is about.
	SubscriptionID string
	// Message is the human-readable summary.
	Message string
	// Data is the event's details, a JSON object (see DESIGN §4 and the seeds'
	// webhook payload).
	Data json.RawMessage
	// Time is when the script wrote the event (Redis clock).
	Time time.Time
}

// Threshold is data.threshold of a usage_threshold event: the weekly-budget
// fraction whose crossing the event announces. ok is false when absent.
func (e Event) Threshold() (threshold float64, ok bool) {
	var d struct {
		Threshold *float64 `json:"threshold"`
	}
	if json.Unmarshal(e.Data, &d) != nil || d.Threshold == nil {
		return 0, false
	}
	return *d.Threshold, true
}

// Payload is the JSON body a webhook receives: the seeds' payload plus id and
// timestamp.
type Payload struct {
	// ID is the event id; receivers drop duplicates by it.
	ID string `json:"id"`
	// Type is the event type.
	Type string `json:"type"`
	// Severity is info, warning or critical.
	Severity string `json:"severity"`
	// SubscriptionID names the subscription the event is about.
	SubscriptionID string `json:"subscriptionId"`
	// Message is the human-readable summary.
	Message string `json:"message"`
	// Data is the event's details (a JSON object).
	Data json.RawMessage `json:"data"`
	// Timestamp is the event time, RFC 3339 in UTC with milliseconds.
	Timestamp string `json:"timestamp"`
}

// timestampLayout is RFC 3339 with the milliseconds the stream carries.
const timestampLayout = "2006-01-02T15:04:05.000Z07:00"

// Payload returns the webhook payload of e.
func (e Event) Payload() Payload {
	return Payload{
		ID: e.ID, Type: e.Type, Severity: e.Severity, SubscriptionID: e.SubscriptionID,
		Message: e.Message, Data: e.Data, Timestamp: e.Time.UTC().Format(timestampLayout),
	}
}

// parseEvent decodes a stream entry written under the events contract. A ts
// missing from the entry is taken from the entry id (also Redis milliseconds).
func parseEvent(m redis.XMessage) (Event, error) {
	field := func(k string) string {
		s, _ := m.Values[k].(string)
		return s
	}
	e := Event{
		ID: m.ID, Type: field("type"), Severity: field("severity"),
		SubscriptionID: field("subscriptionId"), Message: field("message"),
	}
	if !validType(e.Type) {
		return e, fmt.Errorf("%w: entry %s: unknown type %q", ErrMalformedEvent, m.ID, e.Type)
	}
	if !validSeverity(e.Severity) {
		return e, fmt.Errorf("%w: entry %s: unknown severity %q", ErrMalformedEvent, m.ID, e.Severity)
	}
	data := bytes.TrimSpace([]byte(field("data")))
	switch {
	case len(data) == 0 || string(data) == "[]":
		// cjson encodes an empty Lua table as an array.
		data = []byte("{}")
	case data[0] != '{' || !json.Valid(data):
		return e, fmt.Errorf("%w: entry %s: data is not a JSON object", ErrMalformedEvent, m.ID)
	}
	e.Data = json.RawMessage(data)

	ts := field("ts")
	if ts == "" {
		ts, _, _ = strings.Cut(m.ID, "-")
	}
	ms, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || ms < 0 || ms > math.MaxInt64/int64(time.Millisecond) {
		return e, fmt.Errorf("%w: entry %s: ts %q is not Unix milliseconds", ErrMalformedEvent, m.ID, ts)
	}
	e.Time = time.UnixMilli(ms)
	return e, nil
}

// entryFields are the entry's fields in a stable order: the contract's
// fields first, then any others sorted. The dead stream keeps them all.
func entryFields(m redis.XMessage) []string {
	known := []string{"type", "severity", "subscriptionId", "message", "data", "ts"}
	out := make([]string, 0, 2*len(m.Values))
	seen := make(map[string]bool, len(known))
	for _, k := range known {
		seen[k] = true
		if v, ok := m.Values[k]; ok {
			out = append(out, k, fmt.Sprint(v))
		}
	}
	var rest []string
	for k := range m.Values {
		if !seen[k] {
			rest = append(rest, k)
		}
	}
	slices.Sort(rest)
	for _, k := range rest {
		out = append(out, k, fmt.Sprint(m.Values[k]))
	}
	return out
}
