package notify

import (
	"context"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/authpool/authpool/internal/redistest"
	"github.com/authpool/authpool/internal/testutil"
	"github.com/authpool/authpool/pkg/lua"
)

func TestSurvivesRedisRestart(t *testing.T) {
	srv, err := redistest.StartServer()
	if err != nil {
		if os.Getenv("REDIS_REQUIRED") == "1" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	t.Cleanup(srv.Stop)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr, DialTimeout: 200 * time.Millisecond, MaxRetries: 1})
	t.Cleanup(func() { _ = c.Close() })
	rc := newReceiver(t, nil)
	log := &recLogger{}
	start(t, testOptions(c, "p1", "c1", webhookConfig(rc.srv.URL), log))

	before := addEvent(t, c, "p1", TypeFailover, `{"sessionId":"s","from":"sub1","reason":"x"}`)
	testutil.Eventually(t, 5*time.Second, "delivery before the restart", func() bool { _, _, d := rc.stats(); return d[before] == 1 })

	srv.Stop()
	testutil.Eventually(t, 5*time.Second, "the outage to be reported", func() bool { return len(log.warnings()) > 0 })
	srv2, err := redistest.StartServerOnPort(srv.Port)
	if err != nil {
		t.Fatalf("restart redis-server on port %d: %v", srv.Port, err)
	}
	t.Cleanup(srv2.Stop)

	// The restarted server has no stream and no group (no persistence): the
	// Deliverer must re-create the group and deliver new events.
	var after string
	testutil.Eventually(t, 5*time.Second, "XADD after the restart", func() bool {
		err := c.XAdd(context.Background(), &redis.XAddArgs{Stream: lua.NewKeys("p1").Events(), ID: "*", Values: []any{"probe", "1"}}).Err()
		if err != nil {
			return false
		}
		after = addEvent(t, c, "p1", TypeRecovered, `{"previousStatus":"limited"}`)
		return true
	})
	defer func() {
		if t.Failed() {
			for _, w := range log.warnings() {
				t.Log(w)
			}
		}
	}()
	testutil.Eventually(t, 10*time.Second, "delivery after the restart", func() bool { _, _, d := rc.stats(); return d[after] == 1 })
	testutil.Eventually(t, 2*time.Second, "acknowledgement", func() bool { return acked(t, c, "p1", after) })
}

func TestShutdownLeavesNoGoroutines(t *testing.T) {
	tg := redistest.Real(t)
	rc := newReceiver(t, nil)
	if err := tg.Client.Ping(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	baseline := runtime.NumGoroutine()

	d, err := New(testOptions(tg.Client, "p1", "c1", webhookConfig(rc.srv.URL), &recLogger{}))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	var last string
	for range 3 {
		last = addEvent(t, tg.Client, "p1", TypeRotation, `{"sessionId":"s","from":"a","to":"b","reason":"idle"}`)
	}
	testutil.Eventually(t, 5*time.Second, "deliveries", func() bool { return acked(t, tg.Client, "p1", last) })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := d.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	testutil.Eventually(t, 3*time.Second, "goroutines back to the baseline", func() bool { return runtime.NumGoroutine() <= baseline })
}
