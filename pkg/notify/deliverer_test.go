package notify

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/authpool/authpool/internal/redistest"
	"github.com/authpool/authpool/internal/testutil"
	"github.com/authpool/authpool/pkg/lua"
	"github.com/authpool/authpool/pkg/pool"
)

func TestReceiverRecoversAfterFailures(t *testing.T) {
	redistest.EachParallel(t, func(t *testing.T, tg *redistest.Target) {
		rc := newReceiver(t, func(n int, _ *http.Request) int {
			if n <= 3 {
				return http.StatusServiceUnavailable
			}
			return http.StatusOK
		})
		start(t, testOptions(tg.Client, tg.Pool, "c1", webhookConfig(rc.srv.URL), &recLogger{}))
		id := addEvent(t, tg.Client, tg.Pool, TypeUsageThreshold, usageData)

		testutil.Eventually(t, 5*time.Second, "delivery", func() bool { _, _, d := rc.stats(); return d[id] == 1 })
		testutil.Eventually(t, 2*time.Second, "acknowledgement", func() bool { return acked(t, tg.Client, tg.Pool, id) })
		time.Sleep(100 * time.Millisecond) // a second delivery would show up here
		requests, badSig, delivered := rc.stats()
		if requests != 4 || delivered[id] != 1 || badSig != 0 {
			t.Fatalf("requests %d, delivered %v, bad signatures %d; want 4 requests, one delivery of %s", requests, delivered, badSig, id)
		}
		if dead := deadEntries(t, tg.Client, tg.Pool); len(dead) != 0 {
			t.Fatalf("dead stream has %d entries, want none", len(dead))
		}
		rc.mu.Lock()
		p, h := rc.payloads[id], rc.headers
		rc.mu.Unlock()
		if p.Type != TypeUsageThreshold || p.SubscriptionID != "sub1" || !strings.Contains(string(p.Data), `"weeklyPercent":"85.0"`) {
			t.Fatalf("payload = %+v", p)
		}
		if h.Get("Content-Type") != "application/json" || h.Get("User-Agent") != "authpool" {
			t.Fatalf("headers = %v", h)
		}
	})
}

func TestUndeliverableEventsGoToTheDeadStream(t *testing.T) {
	tests := []struct {
		name         string
		status       int
		wantRequests int
		wantError    string
	}{
		{"5xx retried until MaxAttempts", http.StatusBadGateway, 4, "HTTP 502"},
		{"429 retried", http.StatusTooManyRequests, 4, "HTTP 429"},
		{"408 retried", http.StatusRequestTimeout, 4, "HTTP 408"},
		{"400 dead at once", http.StatusBadRequest, 1, "HTTP 400"},
		{"410 dead at once", http.StatusGone, 1, "HTTP 410"},
	}
	redistest.EachParallel(t, func(t *testing.T, tg *redistest.Target) {
		for i, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				poolName := fmt.Sprintf("%s-dead%d", tg.Pool, i)
				rc := newReceiver(t, func(int, *http.Request) int { return tt.status })
				log := &recLogger{}
				start(t, testOptions(tg.Client, poolName, "c1", webhookConfig(rc.srv.URL), log))
				id := addEvent(t, tg.Client, poolName, TypeFailover, `{"sessionId":"s1","from":"sub1","reason":"exhausted"}`)

				testutil.Eventually(t, 5*time.Second, "dead entry", func() bool { return len(deadEntries(t, tg.Client, poolName)) == 1 })
				dead := deadEntries(t, tg.Client, poolName)[0].Values
				if dead["eventId"] != id || dead["type"] != TypeFailover || dead["subscriptionId"] != "sub1" ||
					dead["data"] != `{"sessionId":"s1","from":"sub1","reason":"exhausted"}` {
					t.Fatalf("dead entry lost the original fields: %v", dead)
				}
				if e, _ := dead["error"].(string); !strings.Contains(e, tt.wantError) {
					t.Fatalf("dead error = %q, want it to mention %q", e, tt.wantError)
				}
				if dead["attempts"] != fmt.Sprint(tt.wantRequests) || dead["failedAt"] == "" {
					t.Fatalf("attempts = %v failedAt = %v, want %d and a time", dead["attempts"], dead["failedAt"], tt.wantRequests)
				}
				if n := pendingCount(t, tg.Client, poolName); n != 0 {
					t.Fatalf("pending = %d, want the dead event acknowledged", n)
				}
				if requests, _, _ := rc.stats(); requests != tt.wantRequests {
					t.Fatalf("receiver saw %d requests, want %d", requests, tt.wantRequests)
				}
				testutil.Eventually(t, time.Second, "a warning about the dead event", func() bool {
					w := log.warnings()
					return len(w) == 1 && strings.Contains(w[0], "dead stream") && strings.Contains(w[0], id)
				})
			})
		}
	})
}

func TestRoutingDecidesWhereEventsGo(t *testing.T) {
	redistest.EachParallel(t, func(t *testing.T, tg *redistest.Target) {
		rc := newReceiver(t, nil)
		tests := []struct {
			name        string
			rules       []pool.NotificationRule
			wantLog     bool
			wantWebhook bool
		}{
			{"no rules: the log", nil, true, false},
			{"matching rule: webhook and log", []pool.NotificationRule{
				{Type: TypeRotation, Channels: []string{"webhook", "log"}, Enabled: true}}, true, true},
			{"no matching rule: nowhere, acknowledged", []pool.NotificationRule{
				{Type: TypeFailover, Channels: []string{"webhook"}, Enabled: true}}, false, false},
		}
		for i, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				poolName := fmt.Sprintf("%s-route%d", tg.Pool, i)
				log := &recLogger{}
				cfg := pool.NotificationsConfig{Rules: tt.rules, WebhookURL: rc.srv.URL, AllowInsecureWebhooks: true}
				start(t, testOptions(tg.Client, poolName, "c1", cfg, log))
				id := addEvent(t, tg.Client, poolName, TypeRotation, `{"sessionId":"s","from":"a","to":"b","reason":"idle"}`)

				testutil.Eventually(t, 3*time.Second, "acknowledgement", func() bool { return acked(t, tg.Client, poolName, id) })
				logged := log.logged()
				if gotLog := len(logged) == 1 && logged[0].ID == id; gotLog != tt.wantLog {
					t.Fatalf("log channel got %v, want it: %v", logged, tt.wantLog)
				}
				if _, _, d := rc.stats(); (d[id] == 1) != tt.wantWebhook {
					t.Fatalf("webhook deliveries of %s = %d, want delivered: %v", id, d[id], tt.wantWebhook)
				}
				if dead := deadEntries(t, tg.Client, poolName); len(dead) != 0 {
					t.Fatalf("dead entries: %v", dead)
				}
			})
		}
	})
}

func TestMalformedEventGoesToTheDeadStream(t *testing.T) {
	redistest.EachParallel(t, func(t *testing.T, tg *redistest.Target) {
		log := &recLogger{}
		start(t, testOptions(tg.Client, tg.Pool, "c1", pool.NotificationsConfig{}, log))
		id := addEvent(t, tg.Client, tg.Pool, "bogus_type", `{}`)
		testutil.Eventually(t, 3*time.Second, "dead entry", func() bool { return len(deadEntries(t, tg.Client, tg.Pool)) == 1 })
		dead := deadEntries(t, tg.Client, tg.Pool)[0].Values
		if dead["eventId"] != id || !strings.Contains(dead["error"].(string), "malformed") {
			t.Fatalf("dead entry = %v", dead)
		}
		if len(log.logged()) != 0 || !acked(t, tg.Client, tg.Pool, id) {
			t.Fatalf("malformed event was logged or left pending")
		}
	})
}

func TestTwoDeliverersDeliverEachEventOnce(t *testing.T) {
	redistest.EachParallel(t, func(t *testing.T, tg *redistest.Target) {
		rc := newReceiver(t, nil)
		cfg := webhookConfig(rc.srv.URL)
		start(t, testOptions(tg.Client, tg.Pool, "replica-a", cfg, &recLogger{}))
		start(t, testOptions(tg.Client, tg.Pool, "replica-b", cfg, &recLogger{}))
		const n = 40
		ids := make([]string, n)
		for i := range ids {
			ids[i] = addEvent(t, tg.Client, tg.Pool, TypeRecovered, `{"previousStatus":"limited"}`)
		}
		testutil.Eventually(t, 10*time.Second, "all deliveries", func() bool { _, _, d := rc.stats(); return len(d) == n })
		testutil.Eventually(t, 2*time.Second, "acknowledgements", func() bool { return acked(t, tg.Client, tg.Pool, ids[n-1]) })
		time.Sleep(100 * time.Millisecond)
		requests, _, d := rc.stats()
		for _, id := range ids {
			if d[id] != 1 {
				t.Errorf("event %s delivered %d times, want once", id, d[id])
			}
		}
		if requests != n {
			t.Fatalf("receiver saw %d requests for %d events", requests, n)
		}
	})
}

func TestStoppedDelivererLeavesTheEventToAnother(t *testing.T) {
	redistest.EachParallel(t, func(t *testing.T, tg *redistest.Target) {
		arrived := make(chan struct{}, 1)
		rc := newReceiver(t, func(n int, r *http.Request) int {
			if n == 1 { // the first replica's attempt hangs until it gives up
				arrived <- struct{}{}
				<-r.Context().Done()
			}
			return http.StatusOK
		})
		cfg := webhookConfig(rc.srv.URL)
		first, err := New(testOptions(tg.Client, tg.Pool, "replica-a", cfg, &recLogger{}))
		if err != nil {
			t.Fatal(err)
		}
		if err := first.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		id := addEvent(t, tg.Client, tg.Pool, TypeLimitReached, `{"until":"1700000000000","reason":"usage_limit"}`)
		select {
		case <-arrived:
		case <-time.After(5 * time.Second):
			t.Fatal("the event never reached the receiver")
		}
		if err := first.Shutdown(context.Background()); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		if n := pendingCount(t, tg.Client, tg.Pool); n != 1 {
			t.Fatalf("pending = %d after the interrupted delivery, want 1", n)
		}
		if dead := deadEntries(t, tg.Client, tg.Pool); len(dead) != 0 {
			t.Fatalf("interrupted delivery went to the dead stream: %v", dead)
		}

		start(t, testOptions(tg.Client, tg.Pool, "replica-b", cfg, &recLogger{}))
		testutil.Eventually(t, 5*time.Second, "takeover delivery", func() bool { _, _, d := rc.stats(); return d[id] == 1 })
		testutil.Eventually(t, 2*time.Second, "acknowledgement", func() bool { return acked(t, tg.Client, tg.Pool, id) })
		if _, _, d := rc.stats(); d[id] != 1 {
			t.Fatalf("delivered %d times, want once", d[id])
		}
	})
}

func TestSlowDeliveryIsNotTakenOver(t *testing.T) {
	redistest.EachParallel(t, func(t *testing.T, tg *redistest.Target) {
		rc := newReceiver(t, func(int, *http.Request) int {
			time.Sleep(time.Second) // over three times ClaimIdle
			return http.StatusOK
		})
		cfg := webhookConfig(rc.srv.URL)
		start(t, testOptions(tg.Client, tg.Pool, "replica-a", cfg, &recLogger{}))
		start(t, testOptions(tg.Client, tg.Pool, "replica-b", cfg, &recLogger{}))
		id := addEvent(t, tg.Client, tg.Pool, TypeFailover, `{"sessionId":"s","from":"sub1","reason":"x"}`)
		testutil.Eventually(t, 5*time.Second, "delivery", func() bool { _, _, d := rc.stats(); return d[id] == 1 })
		testutil.Eventually(t, 2*time.Second, "acknowledgement", func() bool { return acked(t, tg.Client, tg.Pool, id) })
		if requests, _, _ := rc.stats(); requests != 1 {
			t.Fatalf("receiver saw %d requests, want 1 (no takeover of a live delivery)", requests)
		}
	})
}

func TestPoisonedEventEndsInTheDeadStream(t *testing.T) {
	redistest.EachParallel(t, func(t *testing.T, tg *redistest.Target) {
		ctx := context.Background()
		rc := newReceiver(t, nil)
		key := lua.NewKeys(tg.Pool).Events()
		id := addEvent(t, tg.Client, tg.Pool, TypeFailover, `{"sessionId":"s","from":"sub1","reason":"x"}`)
		// Replicas that crashed on this event, one after another: each took
		// it and never acknowledged it.
		if err := tg.Client.XGroupCreateMkStream(ctx, key, DefaultGroup, "0").Err(); err != nil {
			t.Fatal(err)
		}
		if err := tg.Client.XReadGroup(ctx, &redis.XReadGroupArgs{
			Group: DefaultGroup, Consumer: "crashed-0", Streams: []string{key, ">"}, Block: -1}).Err(); err != nil {
			t.Fatal(err)
		}
		for i := 1; i < 4; i++ {
			if err := tg.Client.XClaim(ctx, &redis.XClaimArgs{
				Stream: key, Group: DefaultGroup, Consumer: fmt.Sprintf("crashed-%d", i), Messages: []string{id}}).Err(); err != nil {
				t.Fatal(err)
			}
		}
		start(t, testOptions(tg.Client, tg.Pool, "survivor", webhookConfig(rc.srv.URL), &recLogger{}))
		testutil.Eventually(t, 5*time.Second, "dead entry", func() bool { return len(deadEntries(t, tg.Client, tg.Pool)) == 1 })
		dead := deadEntries(t, tg.Client, tg.Pool)[0].Values
		if dead["eventId"] != id || dead["attempts"] != "4" || !strings.Contains(dead["error"].(string), "exhausted") {
			t.Fatalf("dead entry = %v", dead)
		}
		if requests, _, _ := rc.stats(); requests != 0 {
			t.Fatalf("a poisoned event was sent again (%d requests)", requests)
		}
	})
}

func TestNewRejectsUnsafeOptions(t *testing.T) {
	tg := redistest.Mini(t)
	base := testOptions(tg.Client, "p1", "c1", pool.NotificationsConfig{}, &recLogger{})
	tests := []struct {
		name   string
		change func(o *Options)
		want   error
	}{
		{"plain http to a remote host", func(o *Options) {
			o.Config = webhookConfig("http://hooks.example.com/notify")
		}, ErrInsecureWebhook},
		{"http loopback without allowInsecureWebhooks", func(o *Options) {
			o.Config = webhookConfig("http://127.0.0.1:9/notify")
			o.Config.AllowInsecureWebhooks = false
		}, ErrInsecureWebhook},
		{"webhook rule without URL", func(o *Options) { o.Config = webhookConfig("") }, ErrInsecureWebhook},
		{"unknown channel", func(o *Options) {
			o.Config.Rules = []pool.NotificationRule{{Type: TypeFailover, Channels: []string{"pager"}, Enabled: true}}
		}, ErrInvalidRule},
		{"no logger", func(o *Options) { o.Logger = nil }, ErrInvalidOptions},
		{"no consumer name", func(o *Options) { o.Consumer = "" }, ErrInvalidOptions},
		{"no events stream", func(o *Options) { o.Events = nil }, ErrInvalidOptions},
		// A bad pool name is refused by pool.NewEvents (pkg/pool's TestNameOnlyHandlesRefuseBadNames).
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := base
			tt.change(&o)
			if _, err := New(o); !errors.Is(err, tt.want) {
				t.Fatalf("New: %v, want %v", err, tt.want)
			}
		})
	}
}

func TestRedirectsStayOnTheWebhookHost(t *testing.T) {
	redistest.EachParallel(t, func(t *testing.T, tg *redistest.Target) {
		elsewhere := newReceiver(t, nil) // another host:port
		var mu sync.Mutex
		hits := map[string]int{}
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			mu.Lock()
			hits[r.URL.Path]++
			mu.Unlock()
			switch r.URL.Path {
			case "/moved":
				if !Verify(testSecret, body, r.Header.Get(SignatureHeader)) {
					w.WriteHeader(http.StatusUnauthorized)
				}
			case "/same":
				http.Redirect(w, r, "/moved", http.StatusTemporaryRedirect)
			default:
				http.Redirect(w, r, elsewhere.srv.URL+"/stolen", http.StatusTemporaryRedirect)
			}
		}))
		t.Cleanup(srv.Close)

		start(t, testOptions(tg.Client, "same", "c1", webhookConfig(srv.URL+"/same"), &recLogger{}))
		id := addEvent(t, tg.Client, "same", TypeFailover, `{"sessionId":"s","from":"sub1","reason":"x"}`)
		testutil.Eventually(t, 5*time.Second, "delivery through the same-host redirect", func() bool {
			return acked(t, tg.Client, "same", id)
		})
		mu.Lock()
		moved := hits["/moved"]
		mu.Unlock()
		if moved != 1 || len(deadEntries(t, tg.Client, "same")) != 0 {
			t.Fatalf("same-host redirect: /moved hit %d times, dead %v", moved, deadEntries(t, tg.Client, "same"))
		}

		start(t, testOptions(tg.Client, "other", "c1", webhookConfig(srv.URL+"/away"), &recLogger{}))
		addEvent(t, tg.Client, "other", TypeFailover, `{"sessionId":"s","from":"sub1","reason":"x"}`)
		testutil.Eventually(t, 5*time.Second, "dead entry", func() bool { return len(deadEntries(t, tg.Client, "other")) == 1 })
		if requests, _, _ := elsewhere.stats(); requests != 0 {
			t.Fatalf("the event was sent to another host (%d requests)", requests)
		}
		if e := deadEntries(t, tg.Client, "other")[0].Values["error"].(string); !strings.Contains(e, "HTTP 307") {
			t.Fatalf("dead error = %q", e)
		}
	})
}

func TestPublishHintWakesTheDeliverer(t *testing.T) {
	redistest.EachParallel(t, func(t *testing.T, tg *redistest.Target) {
		log := &recLogger{}
		opts := testOptions(tg.Client, tg.Pool, "c1", pool.NotificationsConfig{}, log)
		opts.PollInterval, opts.ClaimIdle = time.Hour, time.Hour // only the hint can wake it
		start(t, opts)
		time.Sleep(200 * time.Millisecond) // let the loop go idle and the subscription settle
		id := addEvent(t, tg.Client, tg.Pool, TypeRecovered, `{"previousStatus":"cooldown"}`)
		testutil.Eventually(t, 3*time.Second, "the log channel", func() bool {
			l := log.logged()
			return len(l) == 1 && l[0].ID == id
		})
	})
}

// A reloaded config's rules are in force for the next event: a webhook rule
// added later delivers, and an invalid config leaves the rules as they were.
func TestSetConfigChangesRoutingForTheNextEvent(t *testing.T) {
	redistest.EachParallel(t, func(t *testing.T, tg *redistest.Target) {
		rc := newReceiver(t, nil)
		poolName := tg.Pool + "-setconfig"
		log := &recLogger{}
		only := pool.NotificationsConfig{Rules: []pool.NotificationRule{
			{Type: TypeFailover, Channels: []string{"log"}, Enabled: true}}}
		d := start(t, testOptions(tg.Client, poolName, "c1", only, log))

		first := addEvent(t, tg.Client, poolName, TypeRotation, `{"sessionId":"s","from":"a","to":"b","reason":"idle"}`)
		testutil.Eventually(t, 3*time.Second, "acknowledgement", func() bool { return acked(t, tg.Client, poolName, first) })
		if _, _, got := rc.stats(); got[first] != 0 || len(log.logged()) != 0 {
			t.Fatalf("a rotation went out before any rule routed it: webhook %v, log %v", got, log.logged())
		}

		bad := pool.NotificationsConfig{Rules: []pool.NotificationRule{
			{Type: TypeRotation, Channels: []string{"pager"}, Enabled: true}}}
		if err := d.SetConfig(bad); err == nil {
			t.Fatal("SetConfig took a rule with an unknown channel")
		}
		routed := pool.NotificationsConfig{WebhookURL: rc.srv.URL, AllowInsecureWebhooks: true,
			Rules: []pool.NotificationRule{{Type: TypeRotation, Channels: []string{"webhook"}, Enabled: true}}}
		if err := d.SetConfig(routed); err != nil {
			t.Fatal(err)
		}
		second := addEvent(t, tg.Client, poolName, TypeRotation, `{"sessionId":"s","from":"a","to":"b","reason":"idle"}`)
		testutil.Eventually(t, 3*time.Second, "webhook delivery after SetConfig", func() bool {
			_, _, got := rc.stats()
			return got[second] == 1
		})
		if _, _, got := rc.stats(); got[first] != 0 {
			t.Fatalf("the event acknowledged before SetConfig was delivered too: %v", got)
		}
	})
}
