package notify

import (
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/authpool/authpool/pkg/pool"
)

// ErrInvalidRule reports a notification rule with an unknown type or channel.
var ErrInvalidRule = errors.New("notify: invalid notification rule")

// thresholdEpsilon absorbs the float formatting between the config file and
// the threshold a script wrote into data (cjson prints 14 significant digits).
const thresholdEpsilon = 1e-6

// Router decides the channels of an event from the notification rules.
//
//   - No rules at all: every event goes to the log channel, so nothing is
//     silently hidden.
//   - Otherwise the enabled rules of the event's type apply; for
//     usage_threshold only those whose threshold equals the event's
//     data.threshold (a rule without a threshold matches any).
//   - An event no enabled rule matches goes nowhere (the operator chose so).
type Router struct {
	rules []pool.NotificationRule
}

// NewRouter checks the rules and returns their router.
func NewRouter(cfg pool.NotificationsConfig) (*Router, error) {
	var errs []error
	for i, r := range cfg.Rules {
		if !validType(r.Type) {
			errs = append(errs, fmt.Errorf("%w: notifications.rules[%d].type %q", ErrInvalidRule, i, r.Type))
		}
		for j, c := range r.Channels {
			if c != ChannelLog && c != ChannelWebhook {
				errs = append(errs, fmt.Errorf("%w: notifications.rules[%d].channels[%d] %q", ErrInvalidRule, i, j, c))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &Router{rules: slices.Clone(cfg.Rules)}, nil
}

// Channels returns the channels e goes to, sorted and without duplicates;
// empty when no enabled rule matches.
func (r *Router) Channels(e Event) []string {
	if len(r.rules) == 0 {
		return []string{ChannelLog}
	}
	var out []string
	for _, rule := range r.rules {
		if !rule.Enabled || rule.Type != e.Type {
			continue
		}
		if e.Type == TypeUsageThreshold && rule.Threshold > 0 {
			t, ok := e.Threshold()
			if !ok || math.Abs(t-rule.Threshold) > thresholdEpsilon {
				continue
			}
		}
		out = append(out, rule.Channels...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// UsesWebhook reports whether any enabled rule sends to the webhook channel.
func (r *Router) UsesWebhook() bool {
	for _, rule := range r.rules {
		if rule.Enabled && slices.Contains(rule.Channels, ChannelWebhook) {
			return true
		}
	}
	return false
}
