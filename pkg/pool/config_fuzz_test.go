package pool

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoadConfig feeds arbitrary bytes to the config loader: it never panics,
// every refusal is one *ValidationError with at least one problem, and every
// config it accepts validates again and survives a round trip through
// encoding/json unchanged.
func FuzzLoadConfig(f *testing.F) {
	files, _ := filepath.Glob("testdata/config/*.json")
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(`{"subscriptions":[{"id":"a","email":"a@example.com","type":"api","configDir":"/a/./b","weeklyBudget":1e-9,"maxClientsPerSub":0}],` +
		`"notifications":{"rules":[{"type":"failover","channels":["webhook"],"enabled":true}],"webhookUrl":"http://[::1]:1/x","allowInsecureWebhooks":true},` +
		`"rebalancing":{"enabled":null,"costGapThreshold":0},"pool":"p","idleAfterSeconds":1,"staleAfterSeconds":2}`))
	f.Add([]byte(`{"subscriptions":[{"id":"a","id":"b","ID":"c"}],"x":[[[{"y":[]}]]],"pool":"\u0000"}`))
	f.Add([]byte(`{"subscriptions":[1,"a",null,{}],"maxClientsPerSubscription":1e99} {}`))
	f.Add([]byte(`[`))
	f.Add([]byte(``))
	f.Add([]byte(`null`))

	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := parseConfig(data, "fuzz.json", Overrides{})
		if err != nil {
			var ve *ValidationError
			if !errors.As(err, &ve) || len(ve.Problems) == 0 || !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("refusal is not a ValidationError with problems: %#v", err)
			}
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("accepted a config that does not validate: %v\n%s", err, data)
		}
		out, err := json.Marshal(cfg)
		if err != nil {
			t.Fatal(err)
		}
		again, err := parseConfig(out, "round-trip.json", Overrides{})
		if err != nil {
			t.Fatalf("encoding/json's rendering of an accepted config is refused: %v\n%s", err, out)
		}
		if out2, _ := json.Marshal(again); !bytes.Equal(out, out2) {
			t.Fatalf("round trip changed the config:\n%s\n%s", out, out2)
		}
	})
}
