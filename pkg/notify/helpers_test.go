package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/authpool/authpool/pkg/lua"
	"github.com/authpool/authpool/pkg/pool"
)

var testSecret = []byte("s3cret-for-tests")

// receiver is a loopback webhook endpoint. respond decides the status of the
// n-th request (1-based) and may block; nil answers 200.
type receiver struct {
	srv     *httptest.Server
	respond func(n int, r *http.Request) int

	mu        sync.Mutex
	requests  int
	badSig    int
	delivered map[string]int // event id → 2xx answers
	payloads  map[string]Payload
	headers   http.Header
}

func newReceiver(t *testing.T, respond func(n int, r *http.Request) int) *receiver {
	t.Helper()
	rc := &receiver{respond: respond, delivered: map[string]int{}, payloads: map[string]Payload{}}
	rc.srv = httptest.NewServer(http.HandlerFunc(rc.serve))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	rc.requests++
	n := rc.requests
	rc.headers = r.Header.Clone()
	if !Verify(testSecret, body, r.Header.Get(SignatureHeader)) {
		rc.badSig++
		rc.mu.Unlock()
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	rc.mu.Unlock()
	var p Payload
	if err := json.Unmarshal(body, &p); err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	status := http.StatusOK
	if rc.respond != nil {
		status = rc.respond(n, r)
	}
	if r.Context().Err() != nil {
		return // the sender gave up: this answer reaches nobody
	}
	if status/100 == 2 {
		rc.mu.Lock()
		rc.delivered[p.ID]++
		rc.payloads[p.ID] = p
		rc.mu.Unlock()
	}
	w.WriteHeader(status)
}

func (rc *receiver) stats() (requests, badSig int, delivered map[string]int) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	d := make(map[string]int, len(rc.delivered))
	for k, v := range rc.delivered {
		d[k] = v
	}
	return rc.requests, rc.badSig, d
}

// recLogger records what the log channel and the warnings would print.
type recLogger struct {
	mu     sync.Mutex
	events []Event
	warns  []string
}

func (l *recLogger) Notify(_ context.Context, e Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, e)
}

func (l *recLogger) Warn(_ context.Context, msg string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.warns = append(l.warns, fmt.Sprint(append([]any{msg}, args...)...))
}

func (l *recLogger) logged() []Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Event(nil), l.events...)
}

// webhookConfig routes every event type to the webhook at url.
func webhookConfig(url string) pool.NotificationsConfig {
	var rules []pool.NotificationRule
	for _, typ := range []string{TypeUsageThreshold, TypeFailover, TypeRotation, TypeLimitReached, TypeRecovered} {
		rules = append(rules, pool.NotificationRule{Type: typ, Channels: []string{ChannelWebhook}, Enabled: true})
	}
	return pool.NotificationsConfig{Rules: rules, WebhookURL: url, AllowInsecureWebhooks: true}
}

// testOptions are fast settings; callers fill in Client, Pool, Config.
func testOptions(c redis.UniversalClient, poolName, consumer string, cfg pool.NotificationsConfig, log Logger) Options {
	ev, err := pool.NewEvents(c, poolName)
	if err != nil {
		panic(err) // the tests' pool names are valid
	}
	return Options{
		Events: ev, Consumer: consumer, Config: cfg, WebhookSecret: testSecret,
		Logger: log, PollInterval: 20 * time.Millisecond, ClaimIdle: 300 * time.Millisecond,
		MaxAttempts: 4, BackoffBase: 5 * time.Millisecond, BackoffMax: 20 * time.Millisecond,
		AttemptTimeout: 5 * time.Second,
	}
}

// start builds and starts a Deliverer, shut down at the end of the test.
func start(t *testing.T, opts Options) *Deliverer {
	t.Helper()
	d, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := d.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := d.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return d
}

// addEvent writes an event the way the pool's scripts do (XADD + PUBLISH).
func addEvent(t *testing.T, c redis.UniversalClient, poolName, typ, data string) string {
	t.Helper()
	ctx := context.Background()
	key := lua.NewKeys(poolName).Events()
	id, err := c.XAdd(ctx, &redis.XAddArgs{Stream: key, Values: []any{
		"type", typ, "severity", SeverityWarning, "subscriptionId", "sub1",
		"message", "Subscription sub1: " + typ, "data", data,
		"ts", fmt.Sprint(time.Now().UnixMilli()),
	}}).Result()
	if err != nil {
		t.Fatalf("XADD: %v", err)
	}
	if err := c.Publish(ctx, key, typ).Err(); err != nil {
		t.Fatalf("PUBLISH: %v", err)
	}
	return id
}

const usageData = `{"weeklyUsed":388.0,"weeklyBudget":456,"weeklyPercent":"85.0","burnRate":5.2,"estimatedTimeUntilExhaustion":"12 hours","threshold":0.8}`

// pendingCount is the number of entries of the group not yet acknowledged.
func pendingCount(t *testing.T, c redis.UniversalClient, poolName string) int64 {
	t.Helper()
	p, err := c.XPending(context.Background(), lua.NewKeys(poolName).Events(), DefaultGroup).Result()
	if err != nil {
		if strings.HasPrefix(err.Error(), "NOGROUP") {
			return 0
		}
		t.Fatalf("XPENDING: %v", err)
	}
	return p.Count
}

// acked reports whether the group has read every entry up to id and has
// none pending: everything up to id was delivered, dead-lettered or dropped.
func acked(t *testing.T, c redis.UniversalClient, poolName, id string) bool {
	t.Helper()
	groups, err := c.XInfoGroups(context.Background(), lua.NewKeys(poolName).Events()).Result()
	if err != nil {
		return false
	}
	for _, g := range groups {
		if g.Name == DefaultGroup {
			return !idLess(g.LastDeliveredID, id) && pendingCount(t, c, poolName) == 0
		}
	}
	return false
}

func idLess(a, b string) bool {
	var am, as, bm, bs uint64
	fmt.Sscanf(a, "%d-%d", &am, &as)
	fmt.Sscanf(b, "%d-%d", &bm, &bs)
	return am < bm || (am == bm && as < bs)
}

func (l *recLogger) warnings() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.warns...)
}

func deadEntries(t *testing.T, c redis.UniversalClient, poolName string) []redis.XMessage {
	t.Helper()
	msgs, err := c.XRange(context.Background(), lua.NewKeys(poolName).EventsDead(), "-", "+").Result()
	if err != nil {
		t.Fatalf("XRANGE dead: %v", err)
	}
	return msgs
}
