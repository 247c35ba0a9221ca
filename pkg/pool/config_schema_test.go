package pool

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"testing"

	"github.com/authpool/authpool/config"
)

// schemaPaths validates data with the schema alone and returns the sorted,
// distinct paths of its problems (duplicate keys included, which the
// reader finds before the schema).
func schemaPaths(t *testing.T, data []byte) []string {
	t.Helper()
	tree, ps, ok := readTree(data)
	if !ok {
		t.Fatalf("not JSON: %v", ps)
	}
	var paths []string
	for _, p := range ps {
		paths = append(paths, p.Path)
	}
	for _, f := range schemaProblems(tree) {
		paths = append(paths, f.Path)
	}
	slices.Sort(paths)
	return slices.Compact(paths)
}

// seedConfigs extracts the config files of the seed documents: the ```json
// blocks that have a "subscriptions" member. The seeds live in the shared
// folder beside the repository; testdata/config holds copies of them
// (integration.json from the integration guide, production.json from the
// production deployment guide), which this test keeps equal.
func seedConfigs(t *testing.T) map[string][]byte {
	t.Helper()
	files, _ := filepath.Glob("../../../shared/seeds/*.txt")
	if len(files) == 0 {
		t.Log("no seed documents beside the repository: checking the testdata copies only")
		return nil
	}
	block := regexp.MustCompile("(?s)```json\n(.*?)\n```")
	out := map[string][]byte{}
	for _, f := range files {
		doc, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, m := range block.FindAllSubmatch(doc, -1) {
			if bytes.Contains(m[1], []byte(`"subscriptions"`)) {
				out[filepath.Base(f)+"#"+string(rune('1'+i))] = m[1]
			}
		}
	}
	if len(out) < 2 {
		t.Fatalf("found %d config examples in the seeds, want the integration and the production one", len(out))
	}
	return out
}

func jsonEqual(a, b []byte) bool {
	var x, y any
	return json.Unmarshal(a, &x) == nil && json.Unmarshal(b, &y) == nil && reflect.DeepEqual(x, y)
}

// TestSchemaAcceptsShippedAndSeedConfigs: config/auth-pool.schema.json
// accepts the shipped config, the seeds' examples (as they stand in the
// seeds and as copied into testdata) and every config the loader accepts.
func TestSchemaAcceptsShippedAndSeedConfigs(t *testing.T) {
	configs := map[string][]byte{}
	files, _ := filepath.Glob("testdata/config/*.json")
	files = append(files, "../../config/auth-pool.json")
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		configs[f] = data
	}
	for name, data := range seedConfigs(t) {
		configs[name] = data
		copied := false
		for _, f := range files {
			copied = copied || jsonEqual(data, configs[f])
		}
		if !copied {
			t.Errorf("the seed config %s has no copy in testdata/config", name)
		}
	}
	for name, data := range configs {
		if paths := schemaPaths(t, data); len(paths) > 0 {
			t.Errorf("%s: the schema refuses %q", name, paths)
		}
	}
	for name, edit := range acceptedEdits {
		d := validDoc()
		edit(d)
		if paths := schemaPaths(t, marshal(t, d)); len(paths) > 0 {
			t.Errorf("%s: the schema refuses %q, the loader accepts it", name, paths)
		}
	}
}

// TestSchemaListsEveryProblemWithPath feeds the bad configs to the schema
// alone: it names every problem at the loader's path, except the rules
// across fields that only the code checks, where it names no other path.
func TestSchemaListsEveryProblemWithPath(t *testing.T) {
	for _, tc := range badConfigs {
		t.Run(tc.name, func(t *testing.T) {
			data := []byte(tc.raw)
			if tc.raw == "" {
				d := validDoc()
				tc.edit(d)
				data = marshal(t, d)
			}
			got := schemaPaths(t, data)
			switch {
			case !tc.code && !slices.Equal(got, tc.paths):
				t.Errorf("schema paths = %q, want %q", got, tc.paths)
			case tc.code:
				for _, p := range got {
					if !slices.Contains(tc.paths, p) {
						t.Errorf("schema path %q is not one of %q", p, tc.paths)
					}
				}
			}
		})
	}
}

// TestSchemaIsTheShippedFile: the embedded schema is config/auth-pool.schema.json,
// a draft 2020-12 schema that says the same bounds as the code.
func TestSchemaIsTheShippedFile(t *testing.T) {
	file, err := os.ReadFile("../../config/" + config.PoolSchemaName)
	if err != nil || !bytes.Equal(file, config.PoolSchema) {
		t.Fatalf("embedded schema differs from the file (%v)", err)
	}
	var doc struct {
		Schema string `json:"$schema"`
		Defs   struct {
			Subscription struct {
				Properties struct {
					WeeklyBudget struct {
						Maximum float64 `json:"maximum"`
					} `json:"weeklyBudget"`
				} `json:"properties"`
			} `json:"subscription"`
			Rule struct {
				Properties struct {
					Type struct {
						Enum []string `json:"enum"`
					} `json:"type"`
				} `json:"properties"`
			} `json:"rule"`
		} `json:"$defs"`
	}
	if err := json.Unmarshal(file, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Schema != "https://json-schema.org/draft/2020-12/schema" {
		t.Errorf("$schema = %q, want draft 2020-12", doc.Schema)
	}
	if doc.Defs.Subscription.Properties.WeeklyBudget.Maximum != MaxWeeklyBudget {
		t.Errorf("weeklyBudget maximum %v, want MaxWeeklyBudget %v", doc.Defs.Subscription.Properties.WeeklyBudget.Maximum, MaxWeeklyBudget)
	}
	if !slices.Equal(doc.Defs.Rule.Properties.Type.Enum, ruleTypes) {
		t.Errorf("rule types %q, want %q", doc.Defs.Rule.Properties.Type.Enum, ruleTypes)
	}
}
