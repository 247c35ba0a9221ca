package notify

import (
	"errors"
	"slices"
	"testing"

	"github.com/authpool/authpool/pkg/pool"
)

func TestRouterChannels(t *testing.T) {
	seedRules := []pool.NotificationRule{ // the production guide's rules
		{Type: TypeUsageThreshold, Threshold: 0.8, Channels: []string{"webhook"}, Enabled: true},
		{Type: TypeUsageThreshold, Threshold: 0.9, Channels: []string{"webhook", "log"}, Enabled: true},
		{Type: TypeFailover, Channels: []string{"webhook"}, Enabled: true},
		{Type: TypeRotation, Channels: []string{"log"}, Enabled: true},
		{Type: TypeLimitReached, Channels: []string{"webhook", "log"}, Enabled: false},
	}
	usage := func(threshold string) Event {
		return Event{Type: TypeUsageThreshold, Data: []byte(`{"weeklyPercent":"85.0","threshold":` + threshold + `}`)}
	}
	tests := []struct {
		name  string
		rules []pool.NotificationRule
		event Event
		want  []string
	}{
		{"no rules: everything goes to the log", nil, Event{Type: TypeRotation}, []string{"log"}},
		{"no rules: usage threshold to the log", nil, usage("0.8"), []string{"log"}},
		{"threshold 0.8 matches its rule only", seedRules, usage("0.8"), []string{"webhook"}},
		{"threshold 0.9 matches its rule only", seedRules, usage("0.9"), []string{"log", "webhook"}},
		{"threshold written with float noise", seedRules, usage("0.80000000000001"), []string{"webhook"}},
		{"threshold without a rule", seedRules, usage("0.85"), nil},
		{"usage event without a threshold", seedRules, Event{Type: TypeUsageThreshold, Data: []byte(`{}`)}, nil},
		{"failover", seedRules, Event{Type: TypeFailover}, []string{"webhook"}},
		{"rotation", seedRules, Event{Type: TypeRotation}, []string{"log"}},
		{"disabled rule routes nowhere", seedRules, Event{Type: TypeLimitReached}, nil},
		{"type without a rule routes nowhere", seedRules, Event{Type: TypeRecovered}, nil},
		{"all rules disabled is not 'no rules'",
			[]pool.NotificationRule{{Type: TypeFailover, Channels: []string{"log"}}},
			Event{Type: TypeFailover}, nil},
		{"rule without threshold matches every threshold",
			[]pool.NotificationRule{{Type: TypeUsageThreshold, Channels: []string{"log"}, Enabled: true}},
			usage("0.5"), []string{"log"}},
		{"overlapping rules give each channel once",
			[]pool.NotificationRule{
				{Type: TypeFailover, Channels: []string{"webhook", "log"}, Enabled: true},
				{Type: TypeFailover, Channels: []string{"log"}, Enabled: true},
			},
			Event{Type: TypeFailover}, []string{"log", "webhook"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := NewRouter(pool.NotificationsConfig{Rules: tt.rules})
			if err != nil {
				t.Fatalf("NewRouter: %v", err)
			}
			if got := r.Channels(tt.event); !slices.Equal(got, tt.want) {
				t.Fatalf("Channels = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestNewRouterRejectsUnknownNames(t *testing.T) {
	tests := []struct {
		name string
		rule pool.NotificationRule
	}{
		{"unknown type", pool.NotificationRule{Type: "usage", Channels: []string{"log"}}},
		{"unknown channel", pool.NotificationRule{Type: TypeFailover, Channels: []string{"slack"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewRouter(pool.NotificationsConfig{Rules: []pool.NotificationRule{tt.rule}})
			if !errors.Is(err, ErrInvalidRule) {
				t.Fatalf("err = %v, want ErrInvalidRule", err)
			}
		})
	}
}
