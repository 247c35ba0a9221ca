package deploy

import (
	"strings"
	"testing"
)

func subscription(id, configDir string) map[string]any {
	return map[string]any{"id": id, "email": id + "@example.com", "type": "claude-pro",
		"configDir": configDir, "weeklyBudget": 456}
}

// validValues is a complete, valid override of the defaults; each bad case
// below changes one thing in it.
func validValues() map[string]any {
	return map[string]any{
		"logFormat": "json",
		"redis":     map[string]any{"url": "redis://redis:6379"},
		"authPool": map[string]any{
			"subscriptions":         []any{subscription("sub1", "~/.claude-sub1"), subscription("sub2", "/var/lib/claude/sub2")},
			"weeklyBudgetThreshold": 0.85,
			"notifications": map[string]any{
				"rules":      []any{map[string]any{"type": "usage_threshold", "threshold": 0.8, "channels": []any{"log"}, "enabled": true}},
				"webhookUrl": "",
			},
		},
	}
}

func authPool(v map[string]any) map[string]any { return v["authPool"].(map[string]any) }
func firstSub(v map[string]any) map[string]any {
	return authPool(v)["subscriptions"].([]any)[0].(map[string]any)
}

// TestBadValuesAreRejected: helm template refuses each mistake before
// anything reaches a cluster, and its message points at the value.
func TestBadValuesAreRejected(t *testing.T) {
	if out, err := templateOutput(t, "-f", writeValues(t, validValues())); err != nil {
		t.Fatalf("the valid base values are refused: %v\n%s", err, out)
	}
	cases := []struct {
		name   string
		change func(v map[string]any)
		want   string // in helm's error
	}{
		{"subscription id with a space", func(v map[string]any) { firstSub(v)["id"] = "sub 1" }, "/authPool/subscriptions/0/id"},
		{"subscription id too long", func(v map[string]any) { firstSub(v)["id"] = strings.Repeat("a", 65) }, "/authPool/subscriptions/0/id"},
		{"weeklyBudget 0", func(v map[string]any) { firstSub(v)["weeklyBudget"] = 0 }, "/authPool/subscriptions/0/weeklyBudget"},
		{"missing email", func(v map[string]any) { delete(firstSub(v), "email") }, "email"},
		{"bad subscription type", func(v map[string]any) { firstSub(v)["type"] = "claude-free" }, "/authPool/subscriptions/0/type"},
		{"relative configDir", func(v map[string]any) { firstSub(v)["configDir"] = "claude/sub1" }, "/authPool/subscriptions/0/configDir"},
		{"configDir escaping with ..", func(v map[string]any) { firstSub(v)["configDir"] = "~/../etc" }, "/authPool/subscriptions/0/configDir"},
		{"lower-case oauthTokenEnv", func(v map[string]any) { firstSub(v)["oauthTokenEnv"] = "token" }, "/authPool/subscriptions/0/oauthTokenEnv"},
		{"unknown subscription key", func(v map[string]any) { firstSub(v)["budget"] = 1 }, "budget"},
		{"no subscriptions", func(v map[string]any) { authPool(v)["subscriptions"] = []any{} }, "/authPool/subscriptions"},
		{"threshold over 1", func(v map[string]any) { authPool(v)["weeklyBudgetThreshold"] = 1.5 }, "/authPool/weeklyBudgetThreshold"},
		{"threshold 0", func(v map[string]any) { authPool(v)["weeklyBudgetThreshold"] = 0 }, "/authPool/weeklyBudgetThreshold"},
		{"rule threshold 0", func(v map[string]any) {
			authPool(v)["notifications"].(map[string]any)["rules"].([]any)[0].(map[string]any)["threshold"] = 0
		}, "/authPool/notifications/rules/0/threshold"},
		{"unknown channel", func(v map[string]any) {
			authPool(v)["notifications"].(map[string]any)["rules"].([]any)[0].(map[string]any)["channels"] = []any{"sms"}
		}, "/authPool/notifications/rules/0/channels/0"},
		{"interval under 10 s", func(v map[string]any) { authPool(v)["rebalancing"] = map[string]any{"intervalSeconds": 5} }, "/authPool/rebalancing/intervalSeconds"},
		{"unknown authPool key", func(v map[string]any) { authPool(v)["maxClients"] = 3 }, "maxClients"},
		{"logFormat xml", func(v map[string]any) { v["logFormat"] = "xml" }, "/logFormat"},
		{"logLevel verbose", func(v map[string]any) { v["logLevel"] = "verbose" }, "/logLevel"},
		{"unknown top-level key", func(v map[string]any) { v["replicas"] = 3 }, "replicas"},
		{"unknown gateway key", func(v map[string]any) { v["gateway"] = map[string]any{"replicas": 3} }, "replicas"},
		{"WEEKLY_BUDGET 0", func(v map[string]any) { v["weeklyBudget"] = 0 }, "/weeklyBudget"},
		{"redis url of another scheme", func(v map[string]any) { v["redis"] = map[string]any{"url": "http://redis:6379"} }, "/redis/url"},
		{"a secret in values", func(v map[string]any) { v["secrets"] = map[string]any{"apiKeys": "k1,k2"} }, "apiKeys"},
		// Beyond the schema: the templates' own checks.
		{"no redis", func(v map[string]any) {
			v["redis"] = map[string]any{"url": "", "bundled": map[string]any{"enabled": false}}
		}, "redis.url"},
		{"duplicate ids", func(v map[string]any) { authPool(v)["subscriptions"].([]any)[1].(map[string]any)["id"] = "sub1" }, `duplicate id "sub1"`},
		{"token without its Secret", func(v map[string]any) { firstSub(v)["oauthTokenEnv"] = "CLAUDE_TOKEN_SUB1" }, "subscriptionTokens.existingSecret"},
		{"volume for an unknown subscription", func(v map[string]any) {
			v["claudeHome"] = map[string]any{"subscriptionVolumes": map[string]any{"sub9": map[string]any{"emptyDir": map[string]any{}}}}
		}, "sub9"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := validValues()
			tc.change(v)
			out, err := templateOutput(t, "-f", writeValues(t, v))
			if err == nil {
				t.Fatalf("helm template accepted the values")
			}
			if !strings.Contains(out, tc.want) {
				t.Errorf("error does not mention %q:\n%s", tc.want, out)
			}
		})
	}
}
