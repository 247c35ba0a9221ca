package tests

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/authpool/authpool/internal/testutil"
)

// cutProxy is a TCP proxy between the gateway and redis-server that the
// test can cut: every open connection is closed and new ones are closed
// as soon as they are accepted, until the cut ends.
type cutProxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	until time.Time
}

func startCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	t.Cleanup(func() {
		_ = ln.Close()
		p.closeAll()
	})
	go p.serve()
	return p
}

func (p *cutProxy) addr() string { return p.ln.Addr().String() }

func (p *cutProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		cut := time.Now().Before(p.until)
		p.mu.Unlock()
		if cut {
			_ = c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		p.mu.Lock()
		p.conns[c], p.conns[up] = struct{}{}, struct{}{}
		p.mu.Unlock()
		go p.pipe(c, up)
		go p.pipe(up, c)
	}
}

func (p *cutProxy) pipe(dst, src net.Conn) {
	_, _ = io.Copy(dst, src)
	_ = dst.Close()
	_ = src.Close()
	p.mu.Lock()
	delete(p.conns, dst)
	delete(p.conns, src)
	p.mu.Unlock()
}

// cut severs every connection and refuses new ones for d.
func (p *cutProxy) cut(d time.Duration) {
	p.mu.Lock()
	p.until = time.Now().Add(d)
	p.mu.Unlock()
	p.closeAll()
}

func (p *cutProxy) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		_ = c.Close()
	}
}

// TestSettleSurvivesRedisCut (issue 8, finding 5): the connection to Redis
// is cut for 3 s while a turn runs, so its settle fails as the turn
// finishes. The answer still reaches the client, and the usage lands once
// the connection is back: exactly once (one request, its cost once).
func TestSettleSurvivesRedisCut(t *testing.T) {
	needRedis(t)
	proxy := startCutProxy(t, redisAddr)
	c := startCluster(t, clusterOpts{replicas: 1, subs: 1, redisAddr: proxy.addr(),
		modes: map[string]string{"sub1": "slow 1500"}})
	direct := redis.NewClient(&redis.Options{Addr: redisAddr})
	t.Cleanup(func() { _ = direct.Close() })

	type answer struct {
		status int
		body   string
	}
	done := make(chan answer, 1)
	go func() {
		resp, data := c.post(0, `{"model":"sonnet","messages":[{"role":"user","content":"hi"}]}`,
			"Authorization", "Bearer "+clientKey, "X-Session-Id", "cut-session")
		done <- answer{resp.StatusCode, string(data)}
	}()
	// The CLI runs for 1.5 s; the cut starts while it runs and ends 3 s later.
	testutil.Eventually(t, 10*time.Second, "a run of the CLI", func() bool { return len(c.calls("sub1")) > 0 })
	time.Sleep(300 * time.Millisecond)
	proxy.cut(3 * time.Second)
	cutEnds := time.Now().Add(3 * time.Second)

	a := <-done
	if a.status != 200 {
		t.Fatalf("turn: %d %s", a.status, a.body)
	}
	if time.Now().After(cutEnds) {
		t.Fatal("the turn ended after the cut: the test did not cut the settle")
	}
	ctx := context.Background()
	if n, _ := direct.HGet(ctx, c.keys.Sub("sub1"), "requests").Int(); n != 0 {
		t.Fatalf("settled during the cut (%d requests): the test did not cut the settle", n)
	}

	// Once the connection is back, the usage lands: once.
	landed := time.Now().Add(20 * time.Second)
	for {
		if n, _ := direct.HGet(ctx, c.keys.Sub("sub1"), "requests").Int(); n > 0 {
			break
		}
		if time.Now().After(landed) {
			t.Fatal("the usage of the turn never landed after the cut")
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(1500 * time.Millisecond) // any duplicate attempt would land by now
	st := c.debugStatus(0)["sub1"]
	if got := st["requests"].(float64); got != 1 {
		t.Errorf("/debug/auth-pool requests = %v, want 1", got)
	}
	if got := st["weeklyUsed"].(float64); got < 0.0123-1e-9 || got > 0.0123+1e-9 {
		t.Errorf("/debug/auth-pool weeklyUsed = %v, want 0.0123 (once)", got)
	}
	if n, _ := direct.XLen(ctx, c.keys.Usage()).Result(); n != 1 {
		t.Errorf("usage stream holds %d entries, want 1", n)
	}
}
