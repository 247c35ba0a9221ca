package pool

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

type obj = map[string]any

func sub(id string) obj {
	return obj{"id": id, "email": id + "@example.com", "type": "claude-max",
		"configDir": "/srv/claude-" + id, "weeklyBudget": 100.0}
}

func rule(typ string, threshold float64, channels ...string) obj {
	r := obj{"type": typ, "channels": channels, "enabled": true}
	if threshold != 0 {
		r["threshold"] = threshold
	}
	return r
}

// badConfig is a config with problems and the paths of all of them.
type badConfig struct {
	name  string
	edit  func(d obj)
	raw   string // instead of the edited document
	paths []string
	// code: a rule across fields or values, which only the code checks;
	// the schema finds a part of the paths or none.
	code bool
}

// badConfigs are fed to the loader and to the schema alone.
var badConfigs = []badConfig{
	{name: "empty subscriptions", edit: func(d obj) { d["subscriptions"] = []any{} }, paths: []string{"subscriptions"}},
	{name: "no subscriptions key", edit: func(d obj) { delete(d, "subscriptions") }, paths: []string{"subscriptions"}},
	{name: "three problems in one subscription", edit: func(d obj) {
		s := subAt(d, 0)
		s["id"], s["email"], s["type"] = "sub 1", "Bob <bob@example.com>", "claude-ultra"
	}, paths: []string{"subscriptions[0].email", "subscriptions[0].id", "subscriptions[0].type"}, code: true},
	{name: "ids rejected, not rewritten", edit: func(d obj) {
		subAt(d, 0)["id"] = strings.Repeat("x", 65)
		subAt(d, 1)["id"] = "b.c"
	}, paths: []string{"subscriptions[0].id", "subscriptions[1].id"}},
	{name: "duplicate id", edit: func(d obj) { subAt(d, 1)["id"] = "a" }, paths: []string{"subscriptions[1].id"}, code: true},
	{name: "emails", edit: func(d obj) {
		subAt(d, 0)["email"] = ""
		subAt(d, 1)["email"] = "not-an-address"
	}, paths: []string{"subscriptions[0].email", "subscriptions[1].email"}, code: true},
	{name: "config dirs", edit: func(d obj) {
		var subs []any
		for i, dir := range []string{".claude", "~/../etc", "/srv/a\x00b", "", "~root/.claude", "/srv/ok/../../etc"} {
			s := sub(string(rune('c' + i)))
			s["configDir"] = dir
			subs = append(subs, s)
		}
		d["subscriptions"] = subs
	}, paths: []string{"subscriptions[0].configDir", "subscriptions[1].configDir", "subscriptions[2].configDir",
		"subscriptions[3].configDir", "subscriptions[4].configDir", "subscriptions[5].configDir"}},
	{name: "two subscriptions share a config dir", edit: func(d obj) { subAt(d, 1)["configDir"] = "/srv//claude-a/" },
		paths: []string{"subscriptions[1].configDir"}, code: true},
	{name: "budgets, caps and token variable", edit: func(d obj) {
		subAt(d, 0)["weeklyBudget"] = 0
		subAt(d, 0)["oauthTokenEnv"] = "claude_token"
		subAt(d, 1)["weeklyBudget"] = -5
		subAt(d, 1)["maxClientsPerSub"] = -1
	}, paths: []string{"subscriptions[0].oauthTokenEnv", "subscriptions[0].weeklyBudget",
		"subscriptions[1].maxClientsPerSub", "subscriptions[1].weeklyBudget"}},
	{name: "model map", edit: func(d obj) {
		d["modelMap"] = obj{"gpt-4o": "--dangerously-skip-permissions", "bad key!": "sonnet"}
	}, paths: []string{"modelMap", "modelMap.gpt-4o"}, code: true},
	{name: "pool-wide numbers and name", edit: func(d obj) {
		d["maxClientsPerSubscription"], d["weeklyBudgetThreshold"], d["pool"] = -1, 1.5, "my pool"
	}, paths: []string{"maxClientsPerSubscription", "pool", "weeklyBudgetThreshold"}},
	{name: "rebalancing", edit: func(d obj) {
		d["rebalancing"] = obj{"intervalSeconds": 5, "costGapThreshold": -1, "maxClientsToMovePerCycle": -2}
	}, paths: []string{"rebalancing.costGapThreshold", "rebalancing.intervalSeconds", "rebalancing.maxClientsToMovePerCycle"}},
	{name: "rule types and thresholds", edit: func(d obj) {
		notif(d)["rules"] = []any{rule("bogus", 0, "log"), rule("usage_threshold", 0, "log"),
			rule("usage_threshold", 1.2, "log"), rule("failover", 0.5, "log")}
	}, paths: []string{"notifications.rules[0].type", "notifications.rules[1].threshold",
		"notifications.rules[2].threshold", "notifications.rules[3].threshold"}},
	{name: "rule channels", edit: func(d obj) {
		notif(d)["rules"] = []any{rule("failover", 0), rule("rotation", 0, "email"), rule("recovered", 0, "log", "log")}
	}, paths: []string{"notifications.rules[0].channels", "notifications.rules[1].channels[0]", "notifications.rules[2].channels[1]"}, code: true},
	{name: "webhook rule without webhookUrl", edit: func(d obj) { delete(notif(d), "webhookUrl") },
		paths: []string{"notifications.webhookUrl"}, code: true},
	{name: "plain http webhook", edit: func(d obj) { notif(d)["webhookUrl"] = "http://127.0.0.1:9000/hook" },
		paths: []string{"notifications.webhookUrl"}, code: true},
	{name: "insecure webhooks only to loopback", edit: func(d obj) {
		notif(d)["webhookUrl"], notif(d)["allowInsecureWebhooks"] = "http://localhost.example.com/hook", true
	}, paths: []string{"notifications.webhookUrl"}, code: true},
	{name: "webhook without scheme", edit: func(d obj) { notif(d)["webhookUrl"] = "hooks.example.com/notify" },
		paths: []string{"notifications.webhookUrl"}},
	{name: "stale not after idle", edit: func(d obj) { d["idleAfterSeconds"], d["staleAfterSeconds"] = 600, 300 },
		paths: []string{"staleAfterSeconds"}, code: true},
	{name: "negative idle", edit: func(d obj) { d["idleAfterSeconds"] = -1 }, paths: []string{"idleAfterSeconds"}},
	{name: "conversation bound too small", edit: func(d obj) { d["conversationMaxBytes"] = 1024 },
		paths: []string{"conversationMaxBytes"}},
	{name: "conversation bound too large", edit: func(d obj) { d["conversationMaxBytes"] = 1 << 30 },
		paths: []string{"conversationMaxBytes"}},
	{name: "wrong JSON types, reported once each", edit: func(d obj) {
		subAt(d, 0)["weeklyBudget"] = "456"
		d["maxClientsPerSubscription"] = 1.5
		d["rebalancing"] = obj{"enabled": "yes"}
		d["subscriptions"] = append(d["subscriptions"].([]any), "c")
	}, paths: []string{"maxClientsPerSubscription", "rebalancing.enabled", "subscriptions[0].weeklyBudget", "subscriptions[2]"}},
	{name: "unknown keys beside other problems", edit: func(d obj) {
		subAt(d, 1)["budget"] = 5
		subAt(d, 0)["id"] = ""
		d["extra"] = true
		d["rebalancing"] = obj{"intervalSecs": 60}
	}, paths: []string{"extra", "rebalancing.intervalSecs", "subscriptions[0].id", "subscriptions[1].budget"}},
	{name: "duplicate key", raw: `{"subscriptions":[{"id":"a","id":"b","email":"a@example.com","type":"api","configDir":"/a","weeklyBudget":1}]}`,
		paths: []string{"subscriptions[0].id"}, code: true},
	{name: "top level is an array", raw: `[{"subscriptions":[]}]`, paths: []string{""}},
	{name: "top level is null", raw: `null`, paths: []string{""}},
}

// validDoc is a small valid config; each bad case edits one copy of it.
func validDoc() obj {
	return obj{
		"subscriptions": []any{sub("a"), sub("b")},
		"notifications": obj{
			"rules":      []any{rule("usage_threshold", 0.8, "webhook", "log"), rule("failover", 0, "log")},
			"webhookUrl": "https://hooks.example.com/notify",
		},
	}
}

func subAt(d obj, i int) obj { return d["subscriptions"].([]any)[i].(obj) }

func notif(d obj) obj { return d["notifications"].(obj) }

func marshal(t *testing.T, d obj) []byte {
	t.Helper()
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// problemPaths returns the sorted paths of the one *ValidationError in err.
func problemPaths(t *testing.T, err error) []string {
	t.Helper()
	var ve *ValidationError
	if !errors.As(err, &ve) || !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("want a *ValidationError wrapping ErrInvalidConfig, got %v", err)
	}
	var paths []string
	for _, p := range ve.Problems {
		paths = append(paths, p.Path)
	}
	slices.Sort(paths)
	return paths
}

func TestConfigSeedExamplesLoadUnchanged(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	on := true
	integration := &Config{
		MaxClientsPerSubscription: 15, WeeklyBudgetThreshold: 0.85, BlockAdmissionThreshold: 0.9, FallbackWhenExhausted: &on,
		Rebalancing: RebalancingConfig{Enabled: &on, IntervalSeconds: 300, CostGapThreshold: 5, MaxClientsToMovePerCycle: 3},
		Notifications: NotificationsConfig{
			Rules: []NotificationRule{
				{Type: "usage_threshold", Threshold: 0.8, Channels: []string{"webhook", "log"}, Enabled: true},
				{Type: "failover", Channels: []string{"webhook"}, Enabled: true},
			},
			WebhookURL: "https://your-webhook-endpoint.com/notify",
		},
		Pool: "default", IdleAfterSeconds: 300, StaleAfterSeconds: 3600, ConversationMaxBytes: 262144,
	}
	for _, id := range []string{"sub1", "sub2", "sub3"} {
		integration.Subscriptions = append(integration.Subscriptions, SubscriptionConfig{
			ID: id, Email: "user" + id[3:] + "@example.com", Type: "claude-pro",
			ConfigDir: filepath.Join(home, ".claude-"+id), WeeklyBudget: 456})
	}

	for _, file := range []string{"testdata/config/integration.json", "../../config/auth-pool.json"} {
		got, err := LoadConfig(file, Overrides{})
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if got.Version().Hash == "" || got.Version().LoadedAt.IsZero() {
			t.Errorf("%s: no version: %+v", file, got.Version())
		}
		got.version = Version{} // compared on its own
		if !reflect.DeepEqual(got, integration) {
			t.Errorf("%s:\n got %+v\nwant %+v", file, got, integration)
		}
	}

	prod, err := LoadConfig("testdata/config/production.json", Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	if err := prod.Validate(); err != nil {
		t.Errorf("a loaded config must validate again: %v", err)
	}
	if len(prod.Subscriptions) != 3 || prod.Subscriptions[1].ID != "prod-sub2" ||
		prod.Subscriptions[1].Email != "team+sub2@company.com" ||
		prod.Subscriptions[1].ConfigDir != filepath.Join(home, ".claude-prod-sub2") ||
		prod.MaxClients(prod.Subscriptions[1]) != 15 {
		t.Errorf("production subscriptions: %+v", prod.Subscriptions)
	}
	if got := prod.UsageThresholds(); !slices.Equal(got, []float64{0.8, 0.9}) {
		t.Errorf("production usage thresholds = %v, want [0.8 0.9]", got)
	}
	if len(prod.Notifications.Rules) != 4 || prod.Notifications.Rules[3].Enabled || !prod.RebalancingEnabled() {
		t.Errorf("production notifications: %+v", prod.Notifications)
	}

	// With no AUTH_POOL_CONFIG the binaries read DefaultConfigPath from
	// their working directory, the repository root.
	t.Chdir("../..")
	got, err := LoadConfig(DefaultConfigPath, Overrides{})
	if got != nil {
		got.version = Version{}
	}
	if err != nil || !reflect.DeepEqual(got, integration) {
		t.Errorf("LoadConfig(DefaultConfigPath) at the repository root = %+v, %v", got, err)
	}
}

func TestConfigDefaults(t *testing.T) {
	d := obj{"subscriptions": []any{sub("a")}, "rebalancing": obj{"enabled": nil}, "pool": nil}
	cfg, err := parseConfig(marshal(t, d), "test", Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		Subscriptions:             []SubscriptionConfig{{ID: "a", Email: "a@example.com", Type: "claude-max", ConfigDir: "/srv/claude-a", WeeklyBudget: 100}},
		MaxClientsPerSubscription: 15, WeeklyBudgetThreshold: 0.85, BlockAdmissionThreshold: 0.9,
		Rebalancing: RebalancingConfig{IntervalSeconds: 300, CostGapThreshold: 5, MaxClientsToMovePerCycle: 3},
		Pool:        "default", IdleAfterSeconds: 300, StaleAfterSeconds: 3600, ConversationMaxBytes: 262144,
	}
	if !reflect.DeepEqual(*cfg, want) {
		t.Errorf("got  %+v\nwant %+v", *cfg, want)
	}
	if !cfg.FallbackEnabled() || !cfg.RebalancingEnabled() || cfg.MaxClients(cfg.Subscriptions[0]) != 15 {
		t.Error("fallback and rebalancing default to on, the client cap to 15")
	}
}

func TestConfigProblemsAreAllReportedWithPaths(t *testing.T) {
	cases := badConfigs
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			data := []byte(tc.raw)
			if tc.raw == "" {
				d := validDoc()
				tc.edit(d)
				data = marshal(t, d)
			}
			cfg, err := parseConfig(data, "test.json", Overrides{})
			if cfg != nil {
				t.Fatalf("accepted %s", data)
			}
			t.Log(err)
			if got := problemPaths(t, err); !slices.Equal(got, tc.paths) {
				t.Errorf("paths = %q, want %q\n%v", got, tc.paths, err)
			}
		})
	}
}

// acceptedEdits turn validDoc into other valid configs.
var acceptedEdits = map[string]func(d obj){
	"conversation bound":                func(d obj) { d["conversationMaxBytes"] = 8192 },
	"$schema for editors":               func(d obj) { d["$schema"] = "./auth-pool.schema.json" },
	"https webhook with port and query": func(d obj) { notif(d)["webhookUrl"] = "https://hooks.example.com:8443/x?token=1" },
	"insecure to 127.0.0.1": func(d obj) {
		notif(d)["webhookUrl"], notif(d)["allowInsecureWebhooks"] = "http://127.0.0.1:9000/hook", true
	},
	"insecure to 127.8.9.10": func(d obj) {
		notif(d)["webhookUrl"], notif(d)["allowInsecureWebhooks"] = "http://127.8.9.10/hook", true
	},
	"insecure to ::1": func(d obj) {
		notif(d)["webhookUrl"], notif(d)["allowInsecureWebhooks"] = "http://[::1]:9000/hook", true
	},
	"insecure to localhost": func(d obj) {
		notif(d)["webhookUrl"], notif(d)["allowInsecureWebhooks"] = "http://LOCALHOST/hook", true
	},
	"disabled webhook rule needs no url": func(d obj) {
		delete(notif(d), "webhookUrl")
		r := notif(d)["rules"].([]any)[0].(obj)
		r["enabled"] = false
	},
	"no notifications at all": func(d obj) { delete(d, "notifications") },
	"api type, own cap, token name": func(d obj) {
		s := subAt(d, 0)
		s["type"], s["maxClientsPerSub"], s["oauthTokenEnv"] = "api", 2, "CLAUDE_TOKEN_SUB1"
	},
	"zero gap means the default":      func(d obj) { d["rebalancing"] = obj{"costGapThreshold": 0, "intervalSeconds": 10} },
	"threshold of exactly one":        func(d obj) { d["weeklyBudgetThreshold"] = 1 },
	"64-character id and pool name":   func(d obj) { subAt(d, 0)["id"], d["pool"] = strings.Repeat("A", 64), "team_pool-2" },
	"home dir as the config dir root": func(d obj) { subAt(d, 0)["configDir"] = "~/" },
}

func TestConfigAccepts(t *testing.T) {
	cases := acceptedEdits
	for name, edit := range cases {
		t.Run(name, func(t *testing.T) {
			d := validDoc()
			edit(d)
			if _, err := parseConfig(marshal(t, d), "test.json", Overrides{}); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestConfigUnknownKeysNamePath(t *testing.T) {
	d := validDoc()
	subAt(d, 1)["budget"] = 5
	subAt(d, 0)["WeeklyBudget"] = 5
	notif(d)["rules"].([]any)[1].(obj)["severity"] = obj{"deep": []any{[]any{obj{}}}}
	d["odd key"] = 1
	_, err := parseConfig(marshal(t, d), "auth-pool.json", Overrides{})
	for _, want := range []string{
		"pool: invalid config auth-pool.json (4 problems):",
		"\n  subscriptions[1].budget: unknown key",
		"\n  subscriptions[0].WeeklyBudget: unknown key (did you mean weeklyBudget?)",
		"\n  notifications.rules[1].severity: unknown key",
		"\n  [\"odd key\"]: unknown key",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v\nlacks %q", err, want)
		}
	}
}

func TestConfigEnvOverrides(t *testing.T) {
	cases := []struct {
		name          string
		ov            Overrides
		budget        float64 // of every subscription
		rebalancing   bool
		problemsPaths []string
	}{
		{name: "none", budget: 100, rebalancing: true},
		{name: "weekly budget", ov: Overrides{WeeklyBudget: "500"}, budget: 500, rebalancing: true},
		{name: "fractional budget", ov: Overrides{WeeklyBudget: " 123.5 "}, budget: 123.5, rebalancing: true},
		{name: "rebalancing off", ov: Overrides{RebalancingEnabled: "false"}, budget: 100},
		{name: "rebalancing 0", ov: Overrides{RebalancingEnabled: "0"}, budget: 100},
		{name: "rebalancing TRUE", ov: Overrides{RebalancingEnabled: "TRUE"}, budget: 100, rebalancing: true},
		{name: "budget not a number", ov: Overrides{WeeklyBudget: "lots"}, problemsPaths: []string{EnvWeeklyBudget}},
		{name: "budget zero", ov: Overrides{WeeklyBudget: "0"}, problemsPaths: []string{EnvWeeklyBudget}},
		{name: "budget negative", ov: Overrides{WeeklyBudget: "-5"}, problemsPaths: []string{EnvWeeklyBudget}},
		{name: "budget infinite", ov: Overrides{WeeklyBudget: "Inf"}, problemsPaths: []string{EnvWeeklyBudget}},
		{name: "budget NaN", ov: Overrides{WeeklyBudget: "NaN"}, problemsPaths: []string{EnvWeeklyBudget}},
		{name: "rebalancing yes", ov: Overrides{RebalancingEnabled: "yes"}, problemsPaths: []string{EnvRebalancingEnabled}},
		{name: "both bad", ov: Overrides{WeeklyBudget: "1e999", RebalancingEnabled: "off"},
			problemsPaths: []string{EnvRebalancingEnabled, EnvWeeklyBudget}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := validDoc()
			d["rebalancing"] = obj{"enabled": true}
			cfg, err := parseConfig(marshal(t, d), "test.json", tc.ov)
			if tc.problemsPaths != nil {
				if got := problemPaths(t, err); !slices.Equal(got, tc.problemsPaths) {
					t.Errorf("paths = %q, want %q", got, tc.problemsPaths)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range cfg.Subscriptions {
				if s.WeeklyBudget != tc.budget {
					t.Errorf("%s weeklyBudget = %v, want %v", s.ID, s.WeeklyBudget, tc.budget)
				}
			}
			if cfg.RebalancingEnabled() != tc.rebalancing {
				t.Errorf("rebalancing enabled = %v, want %v", cfg.RebalancingEnabled(), tc.rebalancing)
			}
		})
	}

	// An override repairs a budget the file got wrong; a bad override is
	// reported together with the file's own problems.
	d := validDoc()
	subAt(d, 0)["weeklyBudget"] = -1
	if _, err := parseConfig(marshal(t, d), "test.json", Overrides{WeeklyBudget: "456"}); err != nil {
		t.Errorf("WEEKLY_BUDGET overrides a bad budget: %v", err)
	}
	subAt(d, 1)["id"] = "a"
	_, err := parseConfig(marshal(t, d), "test.json", Overrides{WeeklyBudget: "x"})
	want := []string{EnvWeeklyBudget, "subscriptions[0].weeklyBudget", "subscriptions[1].id"}
	if got := problemPaths(t, err); !slices.Equal(got, want) {
		t.Errorf("paths = %q, want %q", got, want)
	}
}

func TestLoadConfigPathAndOverrides(t *testing.T) {
	t.Setenv("HOME", t.TempDir())
	cfg, err := LoadConfig("testdata/config/production.json", Overrides{WeeklyBudget: "500"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Subscriptions[0].ID != "prod-sub1" || cfg.Subscriptions[2].WeeklyBudget != 500 {
		t.Errorf("got %+v", cfg.Subscriptions)
	}
	_, err = LoadConfig("testdata/config/missing.json", Overrides{})
	if !errors.Is(err, ErrInvalidConfig) || !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "missing.json") {
		t.Errorf("missing file: %v", err)
	}
}

func TestConfigPoolEnabled(t *testing.T) {
	for v, want := range map[string]bool{"": true, "true": true, "1": true, "false": false, "0": false, " False ": false} {
		if got, err := PoolEnabled(v); err != nil || got != want {
			t.Errorf("AUTH_POOL_ENABLED=%q: %v, %v; want %v", v, got, err, want)
		}
	}
	_, err := PoolEnabled("disabled")
	if got := problemPaths(t, err); !slices.Equal(got, []string{EnvPoolEnabled}) {
		t.Errorf("AUTH_POOL_ENABLED=disabled: %v", err)
	}
}

func TestConfigDirExpansion(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	d := validDoc()
	subAt(d, 0)["configDir"] = "~/.claude-a"
	subAt(d, 1)["configDir"] = "/srv//claude-b/./"
	cfg, err := parseConfig(marshal(t, d), "test.json", Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cfg.Subscriptions[0].ConfigDir, filepath.Join(home, ".claude-a"); got != want {
		t.Errorf("~/ expanded to %q, want %q", got, want)
	}
	if got := cfg.Subscriptions[1].ConfigDir; got != "/srv/claude-b" {
		t.Errorf("absolute dir cleaned to %q, want /srv/claude-b", got)
	}

	t.Setenv("HOME", "relative/home")
	_, err = parseConfig(marshal(t, d), "test.json", Overrides{})
	if got := problemPaths(t, err); !slices.Equal(got, []string{"subscriptions[0].configDir"}) {
		t.Errorf("a relative HOME cannot expand ~/: %v", err)
	}
}

func TestConfigFileErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cases := map[string]struct{ content, want string }{
		"empty":      {" \n", "the file is empty"},
		"syntax":     {"{\n  \"subscriptions\": [\n    {\"id\": \"a\",}\n  ]\n}", "subscriptions[0]: invalid JSON at line 3, column 16"},
		"truncated":  {`{"subscriptions": [`, "subscriptions: invalid JSON at line 1, column 20: unexpected end of file"},
		"trailing":   {string(marshal(t, validDoc())) + "\n{}", "unexpected data after the JSON object at line 2, column 1"},
		"too large":  {strings.Repeat(" ", maxConfigBytes+1), "larger than"},
		"a comment":  {"// config\n{}", "line 1, column 1"},
		"deep value": {`{"extra":` + strings.Repeat("[", 100000) + strings.Repeat("]", 100000) + `}`, "extra: unknown key"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := LoadConfig(write(name, tc.content), Overrides{})
			if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v\nwant it to contain %q", err, tc.want)
			}
		})
	}
}

func TestConfigErrorsKeepSecrets(t *testing.T) {
	d := validDoc()
	notif(d)["webhookUrl"] = "http://user:hunter2@hooks.example.com/T0/B0/s3cr3t"
	_, err := parseConfig(marshal(t, d), "test.json", Overrides{})
	if err == nil || strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "s3cr3t") {
		t.Errorf("the webhook URL must be refused without being quoted: %v", err)
	}

	// The config holds the token variable's name, never the token: the
	// binary resolves it (the loader has no access to the environment).
	t.Setenv("CLAUDE_TOKEN_SUB1", "sk-ant-oat-token-value")
	d = validDoc()
	subAt(d, 0)["oauthTokenEnv"] = "CLAUDE_TOKEN_SUB1"
	cfg, err := parseConfig(marshal(t, d), "test.json", Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	if out, _ := json.Marshal(cfg); strings.Contains(string(out), "sk-ant-oat-token-value") ||
		cfg.Subscriptions[0].OAuthTokenEnv != "CLAUDE_TOKEN_SUB1" {
		t.Errorf("the loaded config carries the token: %s", out)
	}
}

func TestConfigValidationErrorLists(t *testing.T) {
	cfg := &Config{Subscriptions: []SubscriptionConfig{{ID: "a"}}}
	err := cfg.Validate()
	var ve *ValidationError
	if !errors.As(err, &ve) || !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("Validate() = %v", err)
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != 1+len(ve.Problems) || !strings.HasPrefix(lines[0], "pool: invalid config (") {
		t.Errorf("want a header and one line per problem, got:\n%v", err)
	}
	// A config that has not had its defaults applied is not valid.
	if !slices.Contains(problemPaths(t, err), "rebalancing.intervalSeconds") {
		t.Errorf("zero interval must be a problem before defaults: %v", err)
	}
}

func TestConfigManyProblemsStayBounded(t *testing.T) {
	data := `{"subscriptions":[` + strings.Repeat(`{},"x",`, 20000) + `{}]}`
	_, err := parseConfig([]byte(data), "big.json", Overrides{})
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("got %v", err)
	}
	if n := len(ve.Problems); n > 2*(maxProblems+1) {
		t.Errorf("%d problems kept, want at most %d per list", n, maxProblems+1)
	}
	if lines := strings.Count(err.Error(), "\n"); lines != maxListedProblems+1 {
		t.Errorf("Error() has %d lines after the header, want %d and a count of the rest", lines, maxListedProblems+1)
	}
}
