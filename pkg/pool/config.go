package pool

// Config is the pool configuration, loaded from config/auth-pool.json in the
// seeds' format. Every field states its default; a zero value in the file
// means "use the default" only where noted (see applyDefaults).
type Config struct {
	// Schema names the JSON Schema for editors ("$schema"); the binaries
	// validate with the embedded one whatever it says.
	Schema string `json:"$schema,omitempty"`
	// Subscriptions are the Claude subscriptions in the pool. Required, at least one.
	Subscriptions []SubscriptionConfig `json:"subscriptions"`
	// MaxClientsPerSubscription is the live-client cap of a subscription that sets
	// no maxClientsPerSub of its own. Default 15.
	MaxClientsPerSubscription int `json:"maxClientsPerSubscription"`
	// WeeklyBudgetThreshold is the fraction of the weekly budget at which new
	// normal-priority sessions stop being admitted. In (0,1]. Default 0.85.
	WeeklyBudgetThreshold float64 `json:"weeklyBudgetThreshold"`
	// BlockAdmissionThreshold is the observed 5-hour utilization at which a
	// subscription takes no new sessions until that window resets (the
	// sessions already on it continue). In (0,1]. Default 0.9.
	BlockAdmissionThreshold float64 `json:"blockAdmissionThreshold,omitempty"`
	// FallbackWhenExhausted sends requests to the paid fallback backend when no
	// subscription is eligible; false answers 503 pool_exhausted. Default true.
	FallbackWhenExhausted *bool `json:"fallbackWhenExhausted,omitempty"`
	// Rebalancing configures the periodic rebalancer.
	Rebalancing RebalancingConfig `json:"rebalancing"`
	// Notifications configures which events reach which channels.
	Notifications NotificationsConfig `json:"notifications"`
	// Pool is the pool name, part of every Redis key. Default "default".
	Pool string `json:"pool,omitempty"`
	// IdleAfterSeconds is how long a session must be inactive before the
	// rebalancer may move it. Default 300 (longer than the prompt-cache lifetime).
	IdleAfterSeconds int `json:"idleAfterSeconds,omitempty"`
	// StaleAfterSeconds is how long an inactive session is kept before it is
	// dropped. Default 3600.
	StaleAfterSeconds int `json:"staleAfterSeconds,omitempty"`
	// ConversationMaxBytes bounds the conversation a session keeps in Redis
	// (its settled turns, replayed when the CLI session is not on hand); the
	// oldest turns go first. At least MinConversationBytes, at most
	// MaxConversationBytes. Default 262144.
	ConversationMaxBytes int `json:"conversationMaxBytes,omitempty"`
	// ModelMap maps model names clients hard-code (gpt-4o) to one the
	// gateway serves: an alias (opus, sonnet, haiku) or a claude-* name.
	// Keys match ^[A-Za-z0-9._:/-]{1,100}$, at most 64 entries. Default none.
	ModelMap map[string]string `json:"modelMap,omitempty"`

	// version is set by LoadConfig; a Config built in code gets one in New.
	version Version
}

// SubscriptionConfig is one subscription in the config file.
type SubscriptionConfig struct {
	// ID matches ^[A-Za-z0-9_-]{1,64}$; it is part of Redis keys.
	ID string `json:"id"`
	// Email is the account's e-mail address (informational, validated).
	Email string `json:"email"`
	// Type is claude-pro, claude-max or api.
	Type string `json:"type"`
	// ConfigDir is the Claude Code config dir of this subscription: absolute or
	// ~/…, no "..", no NUL. Expanded at load time.
	ConfigDir string `json:"configDir"`
	// WeeklyBudget is the weekly budget in USD, > 0 and at most
	// MaxWeeklyBudget. WEEKLY_BUDGET overrides it.
	WeeklyBudget float64 `json:"weeklyBudget"`
	// MaxClientsPerSub is this subscription's live-client cap; 0 means the
	// pool's maxClientsPerSubscription.
	MaxClientsPerSub int `json:"maxClientsPerSub,omitempty"`
	// OAuthTokenEnv names an environment variable holding a long-lived
	// `claude setup-token` token, passed to the CLI as CLAUDE_CODE_OAUTH_TOKEN.
	OAuthTokenEnv string `json:"oauthTokenEnv,omitempty"`
}

// RebalancingConfig configures the rebalancer (DESIGN §6).
type RebalancingConfig struct {
	// Enabled turns periodic rebalancing on. Default true.
	// AUTH_POOL_REBALANCING_ENABLED overrides it.
	Enabled *bool `json:"enabled,omitempty"`
	// IntervalSeconds between rebalancer cycles, ≥ 10. Default 300.
	IntervalSeconds int `json:"intervalSeconds,omitempty"`
	// CostGapThreshold is the weeklyUsed gap in USD between the highest and the
	// lowest usable subscription above which idle clients move. Default 5.0;
	// a zero in the file means the default (write 0.01 for "any gap").
	CostGapThreshold float64 `json:"costGapThreshold,omitempty"`
	// MaxClientsToMovePerCycle caps moves per cycle. Default 3.
	MaxClientsToMovePerCycle int `json:"maxClientsToMovePerCycle,omitempty"`
}

// NotificationsConfig configures notification delivery.
type NotificationsConfig struct {
	// Rules decide which events go to which channels.
	Rules []NotificationRule `json:"rules,omitempty"`
	// WebhookURL receives webhook notifications; https:// only, unless
	// AllowInsecureWebhooks and the host is loopback.
	WebhookURL string `json:"webhookUrl,omitempty"`
	// AllowInsecureWebhooks permits http:// to a loopback host (tests, local
	// receivers). Default false.
	AllowInsecureWebhooks bool `json:"allowInsecureWebhooks,omitempty"`
}

// NotificationRule routes one event type to channels.
type NotificationRule struct {
	// Type is usage_threshold, failover, exhausted, rotation, limit_reached,
	// auth_failed, recovered or admin_action.
	Type string `json:"type"`
	// Threshold is the weekly-budget fraction in (0,1] of a usage_threshold rule.
	Threshold float64 `json:"threshold,omitempty"`
	// Channels are "webhook" and/or "log".
	Channels []string `json:"channels"`
	// Enabled turns the rule on.
	Enabled bool `json:"enabled"`
}

// Defaults of DESIGN §3: one home for each number.
const (
	DefaultMaxClientsPerSubscription = 15
	DefaultWeeklyBudgetThreshold     = 0.85
	DefaultBlockAdmissionThreshold   = 0.9
	DefaultIntervalSeconds           = 300
	DefaultCostGapThreshold          = 5.0
	DefaultMaxClientsToMovePerCycle  = 3
	DefaultPoolName                  = "default"
	DefaultIdleAfterSeconds          = 300
	DefaultStaleAfterSeconds         = 3600
	DefaultConversationMaxBytes      = 262144
)

// Bounds of conversationMaxBytes: room for a few real turns at least, and
// at most what one replay may put on the CLI's stdin without surprise.
const (
	MinConversationBytes = 4096
	MaxConversationBytes = 16 << 20
)

// applyDefaults replaces the zero values that mean "default" (DESIGN §3). It
// is the one place the defaults are applied: LoadConfig calls it before
// validating, New on its own copy of a config built in code.
func (c *Config) applyDefaults() {
	if c.MaxClientsPerSubscription == 0 {
		c.MaxClientsPerSubscription = DefaultMaxClientsPerSubscription
	}
	if c.WeeklyBudgetThreshold == 0 {
		c.WeeklyBudgetThreshold = DefaultWeeklyBudgetThreshold
	}
	if c.BlockAdmissionThreshold == 0 {
		c.BlockAdmissionThreshold = DefaultBlockAdmissionThreshold
	}
	if c.Rebalancing.IntervalSeconds == 0 {
		c.Rebalancing.IntervalSeconds = DefaultIntervalSeconds
	}
	if c.Rebalancing.CostGapThreshold == 0 {
		c.Rebalancing.CostGapThreshold = DefaultCostGapThreshold
	}
	if c.Rebalancing.MaxClientsToMovePerCycle == 0 {
		c.Rebalancing.MaxClientsToMovePerCycle = DefaultMaxClientsToMovePerCycle
	}
	if c.Pool == "" {
		c.Pool = DefaultPoolName
	}
	if c.IdleAfterSeconds == 0 {
		c.IdleAfterSeconds = DefaultIdleAfterSeconds
	}
	if c.StaleAfterSeconds == 0 {
		c.StaleAfterSeconds = DefaultStaleAfterSeconds
	}
	if c.ConversationMaxBytes == 0 {
		c.ConversationMaxBytes = DefaultConversationMaxBytes
	}
}

// MaxWeeklyBudget bounds a subscription's weeklyBudget (and WEEKLY_BUDGET), in
// USD: far above any real subscription, and low enough that the scripts'
// micro-USD integers stay exact (below 2^53) and print as the number given.
const MaxWeeklyBudget = 1_000_000.0

// FallbackEnabled reports fallbackWhenExhausted with its default (true).
func (c *Config) FallbackEnabled() bool {
	return c.FallbackWhenExhausted == nil || *c.FallbackWhenExhausted
}

// RebalancingEnabled reports rebalancing.enabled with its default (true).
func (c *Config) RebalancingEnabled() bool {
	return c.Rebalancing.Enabled == nil || *c.Rebalancing.Enabled
}

// MaxClients is the live-client cap of s.
func (c *Config) MaxClients(s SubscriptionConfig) int {
	if s.MaxClientsPerSub > 0 {
		return s.MaxClientsPerSub
	}
	return c.MaxClientsPerSubscription
}

// UsageThresholds are the enabled usage_threshold rules' thresholds, ascending
// and without duplicates. The lowest is where a subscription turns
// "approaching".
func (c *Config) UsageThresholds() []float64 {
	var out []float64
	for _, r := range c.Notifications.Rules {
		if r.Type != "usage_threshold" || !r.Enabled || r.Threshold <= 0 {
			continue
		}
		dup := false
		for _, t := range out {
			if t == r.Threshold {
				dup = true
			}
		}
		if !dup {
			out = append(out, r.Threshold)
		}
	}
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j] < out[j-1]; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}
