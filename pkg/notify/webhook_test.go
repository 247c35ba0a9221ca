package notify

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestSignVerify(t *testing.T) {
	body := []byte(`{"id":"1-0","type":"failover"}`)
	sig := Sign(testSecret, body)
	if !strings.HasPrefix(sig, "sha256=") || len(sig) != len("sha256=")+64 {
		t.Fatalf("Sign = %q, want sha256=<64 hex>", sig)
	}
	tests := []struct {
		name   string
		secret []byte
		body   []byte
		header string
		want   bool
	}{
		{"same secret and body", testSecret, body, sig, true},
		{"another secret", []byte("other"), body, sig, false},
		{"body changed by one byte", testSecret, []byte(`{"id":"1-0","type":"failovex"}`), sig, false},
		{"no sha256= prefix", testSecret, body, strings.TrimPrefix(sig, "sha256="), false},
		{"empty header", testSecret, body, "", false},
		{"empty secret verifies nothing", nil, body, Sign(nil, body), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Verify(tt.secret, tt.body, tt.header); got != tt.want {
				t.Fatalf("Verify = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestCheckWebhookURL(t *testing.T) {
	tests := []struct {
		url      string
		insecure bool
		ok       bool
	}{
		{"https://hooks.example.com/notify", false, true},
		{"HTTPS://hooks.example.com/notify", false, true},
		{"http://hooks.example.com/notify", false, false},
		{"http://hooks.example.com/notify", true, false}, // insecure only to loopback
		{"http://127.0.0.1:8080/hook", false, false},
		{"http://127.0.0.1:8080/hook", true, true},
		{"http://[::1]:8080/hook", true, true},
		{"http://localhost:8080/hook", true, true},
		{"ftp://hooks.example.com/", true, false},
		{"/relative/path", true, false},
		{"", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			_, err := checkWebhookURL(tt.url, tt.insecure)
			if (err == nil) != tt.ok {
				t.Fatalf("checkWebhookURL(%q, %v) = %v, want ok=%v", tt.url, tt.insecure, err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrInsecureWebhook) {
				t.Fatalf("err = %v, want ErrInsecureWebhook", err)
			}
		})
	}
}

func TestCheckWebhookURLHidesThePath(t *testing.T) {
	_, err := checkWebhookURL("http://hooks.example.com/services/T000/B000/XXXXtoken", false)
	if err == nil || strings.Contains(err.Error(), "XXXXtoken") {
		t.Fatalf("err = %v, want an error without the URL path", err)
	}
}

func TestParseEvent(t *testing.T) {
	entry := func(kv ...string) redis.XMessage {
		m := redis.XMessage{ID: "1700000000123-0", Values: map[string]any{}}
		for i := 0; i < len(kv); i += 2 {
			m.Values[kv[i]] = kv[i+1]
		}
		return m
	}
	good := []string{"type", "failover", "severity", "warning", "subscriptionId", "sub1",
		"message", "m", "data", `{"sessionId":"s","from":"sub1","reason":"limited"}`, "ts", "1700000000999"}
	tests := []struct {
		name     string
		m        redis.XMessage
		wantErr  bool
		wantData string
		wantTime int64
	}{
		{"contract entry", entry(good...), false, `{"sessionId":"s","from":"sub1","reason":"limited"}`, 1700000000999},
		{"no ts: from the id", entry(good[:10]...), false, `{"sessionId":"s","from":"sub1","reason":"limited"}`, 1700000000123},
		{"empty Lua table as data", entry("type", "recovered", "severity", "info", "data", "[]"), false, `{}`, 1700000000123},
		{"unknown type", entry("type", "boom", "severity", "info"), true, "", 0},
		{"unknown severity", entry("type", "recovered", "severity", "loud"), true, "", 0},
		{"data not an object", entry("type", "recovered", "severity", "info", "data", `[1,2]`), true, "", 0},
		{"data not JSON", entry("type", "recovered", "severity", "info", "data", `{bad`), true, "", 0},
		{"ts not a number", entry("type", "recovered", "severity", "info", "ts", "yesterday"), true, "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := parseEvent(tt.m)
			if tt.wantErr {
				if !errors.Is(err, ErrMalformedEvent) {
					t.Fatalf("err = %v, want ErrMalformedEvent", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseEvent: %v", err)
			}
			if string(e.Data) != tt.wantData || e.Time.UnixMilli() != tt.wantTime {
				t.Fatalf("data %s time %d, want %s %d", e.Data, e.Time.UnixMilli(), tt.wantData, tt.wantTime)
			}
		})
	}
}

func TestPayloadShape(t *testing.T) {
	e := Event{ID: "1700000000123-0", Type: TypeUsageThreshold, Severity: SeverityWarning,
		SubscriptionID: "sub1", Message: "Subscription sub1 at 85% weekly budget",
		Data: json.RawMessage(usageData), Time: time.UnixMilli(1700000000123)}
	b, err := json.Marshal(e.Payload())
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"id": "1700000000123-0", "type": "usage_threshold", "severity": "warning",
		"subscriptionId": "sub1", "message": "Subscription sub1 at 85% weekly budget",
		"timestamp": "2023-11-14T22:13:20.123Z"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	data, _ := got["data"].(map[string]any)
	if data["weeklyPercent"] != "85.0" || data["weeklyBudget"] != 456.0 {
		t.Errorf("data = %v, want the seeds' fields passed through", data)
	}
}
