package tests

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/authpool/authpool/internal/redistest"
	"github.com/authpool/authpool/internal/testutil"
)

// TestGatewaySurvivesRedisRestart (issue 4, "must show" 5, the gateway's
// half): Redis goes away under a running gateway and comes back empty (no
// persistence). Meanwhile requests and /ready answer 503; afterwards the
// very next request is served by a subscription again, without a restart of
// the gateway.
func TestGatewaySurvivesRedisRestart(t *testing.T) {
	needRedis(t)
	srv := rbRedis(t)
	c := startCluster(t, clusterOpts{replicas: 1, redisAddr: srv.Addr})
	r := c.replicas[0]
	client := r.client(clientKey)
	if _, _, err := ask(t, client, "before-restart", "one"); err != nil {
		t.Fatal(err)
	}
	c.settled() // Redis goes away between turns, not under the turn's settle

	srv.Stop()
	_, hr, err := ask(t, client, "while-down", "two")
	if err == nil || hr == nil || hr.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("request while Redis is down: %v (status %v), want 503", err, status(hr))
	}
	if resp, err := http.Get(r.url + "/ready"); err != nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("/ready while Redis is down: %v %v, want 503", err, status(resp))
	} else {
		resp.Body.Close()
	}

	srv2, err := redistest.StartServerOnPort(srv.Port)
	if err != nil {
		t.Fatalf("restart redis-server: %v", err)
	}
	t.Cleanup(srv2.Stop)
	testutil.Eventually(t, 10*time.Second, "the restarted redis-server",
		func() bool { return c.rdb.Ping(context.Background()).Err() == nil })
	// No /ready first: the request path itself must notice the empty Redis.
	cc, hr, err := ask(t, client, "after-restart", "three")
	if err != nil {
		t.Fatalf("first request after the restart: %v", err)
	}
	if got := hr.Header.Get("X-AuthPool-Allocation"); got != "subscription" || cc.Choices[0].Message.Content != "echo: three" {
		t.Errorf("served via %q: %q", got, cc.Choices[0].Message.Content)
	}
	if got := c.session("after-restart")["sub"]; got == "" {
		t.Errorf("the new session is not bound in the restarted Redis")
	}
	select {
	case err := <-r.done:
		r.done <- err
		t.Fatalf("the gateway exited while Redis was away: %v", err)
	default:
	}
}

func status(r *http.Response) any {
	if r == nil {
		return "no response"
	}
	return r.StatusCode
}
