package deploy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

const (
	dashboardFile = "grafana/authpool.json"
	alertsFile    = "prometheus/alerts.yaml"
	metricsFile   = "metrics.txt"
	promtoolTests = "testdata/alerts.promtool.yaml"
)

var (
	metricNamePattern = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)
	// Names of our metrics inside PromQL; `{__name__=~"authpool_.+"}` has none.
	usedMetricPattern = regexp.MustCompile(`\b(?:authpool|process|go)_[a-zA-Z0-9_:]+`)
)

type dashboard struct {
	SchemaVersion int `json:"schemaVersion"`
	UID           string
	Title         string
	Panels        []struct {
		ID         int
		Type       string
		Title      string
		Datasource *struct{ Type, UID string }
		GridPos    struct{ H, W, X, Y int }
		Targets    []struct {
			Expr       string
			RefID      string `json:"refId"`
			Datasource *struct{ Type, UID string }
		}
	}
	Templating struct {
		List []struct{ Name, Type string }
	}
}

type rulesFile struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []struct {
			Alert       string            `json:"alert"`
			Expr        string            `json:"expr"`
			For         string            `json:"for,omitempty"`
			Labels      map[string]string `json:"labels"`
			Annotations map[string]string `json:"annotations"`
		} `json:"rules"`
	} `json:"groups"`
}

func readDashboard(t *testing.T) dashboard {
	t.Helper()
	data, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("%s is not valid JSON: %v", dashboardFile, err)
	}
	return d
}

func readRules(t *testing.T) rulesFile {
	t.Helper()
	data, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	var r rulesFile
	if err := yaml.UnmarshalStrict(data, &r); err != nil {
		t.Fatalf("%s: %v", alertsFile, err)
	}
	return r
}

func readMetrics(t *testing.T) []string {
	t.Helper()
	f, err := os.Open(metricsFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var names []string
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		name := sc.Text()
		if !metricNamePattern.MatchString(name) {
			t.Errorf("%s:%d: %q is not a Prometheus metric name", metricsFile, n, name)
		}
		if slices.Contains(names, name) {
			t.Errorf("%s:%d: %s listed twice", metricsFile, n, name)
		}
		names = append(names, name)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return names
}

// exported reports whether a name used in PromQL is one of the listed
// metrics, a histogram's series (_bucket, _sum, _count) included.
func exported(listed []string, used string) bool {
	if slices.Contains(listed, used) {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		stem, ok := strings.CutSuffix(used, suffix)
		if ok && slices.Contains(listed, stem) && !strings.HasSuffix(stem, "_total") {
			return true
		}
	}
	return false
}

func TestDashboard(t *testing.T) {
	d := readDashboard(t)
	if d.SchemaVersion < 36 || d.UID == "" || d.Title == "" {
		t.Errorf("schemaVersion %d uid %q title %q: want schemaVersion >= 36 and a uid and title", d.SchemaVersion, d.UID, d.Title)
	}
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v.Type
	}
	if vars["DS_PROMETHEUS"] != "datasource" || vars["subscription"] != "query" {
		t.Errorf("template variables %v: want DS_PROMETHEUS (datasource) and subscription (query)", vars)
	}
	ids := map[int]bool{}
	titles := map[string]bool{}
	queries := 0
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		titles[p.Title] = true
		if p.GridPos.W < 1 || p.GridPos.X+p.GridPos.W > 24 || p.GridPos.H < 1 {
			t.Errorf("panel %q: gridPos %+v outside the 24-column grid", p.Title, p.GridPos)
		}
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${DS_PROMETHEUS}" || len(p.Targets) == 0 {
			t.Errorf("panel %q: want the ${DS_PROMETHEUS} datasource and at least one query", p.Title)
		}
		for _, tg := range p.Targets {
			queries++
			if strings.TrimSpace(tg.Expr) == "" || tg.Datasource == nil || tg.Datasource.UID != "${DS_PROMETHEUS}" {
				t.Errorf("panel %q query %s: empty or not on ${DS_PROMETHEUS}", p.Title, tg.RefID)
			}
		}
	}
	// The production guide's panels.
	for _, want := range []string{
		"Allocation success rate", "Subscription distribution (live clients)", "Fallback usage",
		"Health score per subscription", "Average pool health", "Status distribution",
		"Weekly usage per subscription", "Projected end-of-week cost", "Cost distribution",
		"Response time percentiles (/v1)", "Allocation latency", "Rebalancing duration", "Rebalance runs", "Clients moved",
		"Memory", "CPU", "Error rate", "Notification deliveries", "Leaders",
	} {
		if !titles[want] {
			t.Errorf("no panel %q", want)
		}
	}
	if queries < 30 {
		t.Errorf("only %d queries", queries)
	}
}

// TestMetricNames: every metric a panel or an alert uses is in metrics.txt
// (which the binaries' test checks they export), and every listed metric is
// on the dashboard.
func TestMetricNames(t *testing.T) {
	listed := readMetrics(t)
	if len(listed) == 0 {
		t.Fatal("metrics.txt is empty")
	}
	onDashboard := map[string]bool{}
	for _, p := range readDashboard(t).Panels {
		for _, tg := range p.Targets {
			for _, used := range usedMetricPattern.FindAllString(tg.Expr, -1) {
				if !exported(listed, used) {
					t.Errorf("panel %q uses %s, not in %s", p.Title, used, metricsFile)
				}
				onDashboard[used] = true
			}
		}
	}
	for _, g := range readRules(t).Groups {
		for _, r := range g.Rules {
			for _, used := range usedMetricPattern.FindAllString(r.Expr, -1) {
				if !exported(listed, used) {
					t.Errorf("alert %s uses %s, not in %s", r.Alert, used, metricsFile)
				}
			}
		}
	}
	for _, name := range listed {
		if !onDashboard[name] && !onDashboard[name+"_bucket"] && !onDashboard[name+"_sum"] {
			t.Errorf("%s is exported but on no dashboard panel", name)
		}
	}
}

func TestAlertRules(t *testing.T) {
	r := readRules(t)
	names := map[string]string{}
	for _, g := range r.Groups {
		for _, rule := range g.Rules {
			if rule.Alert == "" || strings.TrimSpace(rule.Expr) == "" || rule.Annotations["summary"] == "" {
				t.Errorf("group %s: rule %q needs alert, expr and annotations.summary", g.Name, rule.Alert)
			}
			if s := rule.Labels["severity"]; !slices.Contains([]string{"critical", "warning", "info"}, s) {
				t.Errorf("%s: severity %q, want critical, warning or info", rule.Alert, s)
			}
			if _, dup := names[rule.Alert]; dup {
				t.Errorf("alert %s defined twice", rule.Alert)
			}
			names[rule.Alert] = rule.Labels["severity"]
		}
	}
	// The production guide's alerts, at its severities.
	for alert, severity := range map[string]string{
		"AuthPoolAllSubscriptionsExhausted": "critical", "AuthPoolHighErrorRate": "critical",
		"AuthPoolMemoryLeak": "critical", "AuthPoolNotInitialised": "critical", "AuthPoolTargetDown": "critical",
		"AuthPoolLowAllocationSuccess": "warning", "AuthPoolLowAverageHealth": "warning",
		"AuthPoolWebhookDeliveryFailures": "warning", "AuthPoolRebalancingNotOccurring": "warning",
		"AuthPoolNoLeader": "warning", "AuthPoolWeeklyBudgetThreshold": "info",
	} {
		if names[alert] != severity {
			t.Errorf("alert %s: severity %q, want %s", alert, names[alert], severity)
		}
	}
}

func promtool(t *testing.T) string { return tool(t, "promtool", "PROMTOOL_REQUIRED") }

// TestPromQLIsValid runs promtool over the alert rules and over every
// dashboard query (Grafana's variables replaced by values Prometheus accepts).
func TestPromQLIsValid(t *testing.T) {
	bin := promtool(t)
	if out, err := run(bin, "check", "rules", alertsFile); err != nil {
		t.Errorf("promtool check rules %s: %v\n%s", alertsFile, err, out)
	}
	vars := strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$job", ".*", "$subscription", ".*")
	var rules []map[string]string
	for _, p := range readDashboard(t).Panels {
		for _, tg := range p.Targets {
			rules = append(rules, map[string]string{
				"record": fmt.Sprintf("dashboard:panel_%d:%s", p.ID, tg.RefID), "expr": vars.Replace(tg.Expr)})
		}
	}
	data, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": rules}}})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "dashboard-rules.yaml")
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := run(bin, "check", "rules", file); err != nil {
		t.Errorf("dashboard queries are not valid PromQL: %v\n%s", err, out)
	}
}

// TestAlertRulesFire evaluates the alerts on synthetic series with promtool:
// each fires on its situation and stays quiet when things are healthy.
// promtool compares annotations exactly, so the rules run without them.
func TestAlertRulesFire(t *testing.T) {
	bin := promtool(t)
	var generic map[string]any
	data, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &generic); err != nil {
		t.Fatal(err)
	}
	for _, g := range generic["groups"].([]any) {
		for _, r := range g.(map[string]any)["rules"].([]any) {
			delete(r.(map[string]any), "annotations")
		}
	}
	stripped, err := yaml.Marshal(generic)
	if err != nil {
		t.Fatal(err)
	}
	spec, err := os.ReadFile(promtoolTests)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for name, content := range map[string][]byte{"alerts.yaml": stripped, "tests.yaml": spec} {
		if err := os.WriteFile(filepath.Join(dir, name), content, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := run(bin, "test", "rules", filepath.Join(dir, "tests.yaml")); err != nil {
		t.Errorf("promtool test rules: %v\n%s", err, out)
	}
}
