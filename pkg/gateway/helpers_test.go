package gateway

import (
	"bufio"
	"bytes"
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

	"github.com/authpool/authpool/internal/redistest"
	"github.com/authpool/authpool/pkg/backend"
	"github.com/authpool/authpool/pkg/pool"
)

// call is what a fake backend saw.
type call struct {
	backend string
	target  backend.Target
	req     backend.Request
}

// fakeBackend is an in-process backend.Backend. By default it answers
// "echo: <prompt>" with a CLI session id of its own; answer overrides that,
// per call.
type fakeBackend struct {
	name   string
	mu     *sync.Mutex
	calls  *[]call
	answer func(n int, tgt backend.Target, req backend.Request) (*backend.Result, error)
	seen   int
}

var _ backend.Backend = (*fakeBackend)(nil)

func (f *fakeBackend) Name() string { return f.name }

func (f *fakeBackend) Run(ctx context.Context, tgt backend.Target, req backend.Request, onDelta func(string)) (*backend.Result, error) {
	f.mu.Lock()
	*f.calls = append(*f.calls, call{backend: f.name, target: tgt, req: req})
	n := f.seen
	f.seen++
	answer := f.answer
	f.mu.Unlock()
	if answer != nil {
		res, err := answer(n, tgt, req)
		if err != nil || res == nil {
			return res, err
		}
		return f.relay(res, req, onDelta), nil
	}
	text := "echo: " + req.Prompt
	res := &backend.Result{Text: text, CLISessionID: fmt.Sprintf("%s-cli-%d", f.name, n), StopReason: "end_turn",
		Model: "claude-sonnet-4-5", CostUSD: 0.01, DurationMS: 5, NumTurns: 1,
		Usage:      backend.Usage{InputTokens: 10, OutputTokens: 5, CacheCreationInputTokens: 3, CacheReadInputTokens: 2},
		ModelUsage: map[string]backend.ModelUsage{"claude-sonnet-4-5": {InputTokens: 10, OutputTokens: 5, CostUSD: 0.01}}}
	return f.relay(res, req, onDelta), nil
}

func (f *fakeBackend) relay(res *backend.Result, req backend.Request, onDelta func(string)) *backend.Result {
	if req.Stream && onDelta != nil {
		for _, w := range strings.SplitAfter(res.Text, " ") {
			onDelta(w)
		}
	}
	return res
}

// harness is a gateway over miniredis with fake backends.
type harness struct {
	t        *testing.T
	tg       *redistest.Target
	pool     *pool.Pool
	srv      *Server
	http     *httptest.Server
	subs     map[string]*fakeBackend
	fallback *fakeBackend
	mu       sync.Mutex
	calls    []call
	cfg      *pool.Config // for another replica (replica)
	opts     Options
	poolOpts pool.Options
}

type harnessOpts struct {
	subs        int
	fallbackOff bool // fallbackWhenExhausted: false
	noFallback  bool // no fallback backend
	opts        Options
	poolOpts    pool.Options
	idleAfter   int // idleAfterSeconds (0: the default)
}

func newHarness(t *testing.T, ho harnessOpts) *harness {
	t.Helper()
	if ho.subs == 0 {
		ho.subs = 2
	}
	h := &harness{t: t, tg: redistest.Mini(t), subs: map[string]*fakeBackend{}}
	cfg := &pool.Config{MaxClientsPerSubscription: 5, WeeklyBudgetThreshold: 0.85, IdleAfterSeconds: ho.idleAfter}
	if ho.fallbackOff {
		off := false
		cfg.FallbackWhenExhausted = &off
	}
	for i := 0; i < ho.subs; i++ {
		id := fmt.Sprintf("sub%d", i+1)
		cfg.Subscriptions = append(cfg.Subscriptions, pool.SubscriptionConfig{ID: id, Email: id + "@example.com",
			Type: "claude-pro", ConfigDir: t.TempDir(), WeeklyBudget: 100})
		h.subs[id] = &fakeBackend{name: "cli-" + id, mu: &h.mu, calls: &h.calls}
	}
	h.pool = pool.New(h.tg.Client, cfg, ho.poolOpts)
	if err := h.pool.Sync(context.Background()); err != nil {
		t.Fatalf("sync: %v", err)
	}
	opts := ho.opts
	opts.Pool = h.pool
	opts.Backends.Subscriptions = map[string]backend.Backend{}
	for id, b := range h.subs {
		opts.Backends.Subscriptions[id] = b
	}
	if !ho.noFallback {
		h.fallback = &fakeBackend{name: "api", mu: &h.mu, calls: &h.calls}
		opts.Backends.Fallback = h.fallback
	}
	h.cfg, h.opts, h.poolOpts = cfg, opts, ho.poolOpts
	srv, err := New(opts)
	if err != nil {
		t.Fatalf("new: %v", err)
	}
	h.srv = srv
	h.http = httptest.NewServer(srv.Handler())
	t.Cleanup(h.http.Close)
	return h
}

// replica starts another gateway replica on the same Redis, config and
// backends, with a pool of its own (so its own session hints), and returns
// its base URL.
func (h *harness) replica() string {
	h.t.Helper()
	opts := h.opts
	opts.Pool = pool.New(h.tg.Client, h.cfg, h.poolOpts)
	srv, err := New(opts)
	if err != nil {
		h.t.Fatalf("new replica: %v", err)
	}
	hs := httptest.NewServer(srv.Handler())
	h.t.Cleanup(hs.Close)
	return hs.URL
}

// callsSoFar returns a copy of the backend calls.
func (h *harness) callsSoFar() []call {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]call(nil), h.calls...)
}

// settled waits until the turns answered so far are settled: their settle
// runs after the answer (afterAnswer), so a test that reads what a settle
// wrote waits for it first.
func (h *harness) settled() {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.srv.pending.idle(ctx); err != nil {
		h.t.Fatalf("answered turns still settling: %v", err)
	}
}

// do sends a request with a JSON (or raw string) body and optional headers,
// once the turns answered before it are settled (see settled).
func (h *harness) do(method, path string, body any, headers ...string) *http.Response {
	h.t.Helper()
	h.settled()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	case []byte:
		r = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			h.t.Fatal(err)
		}
		r = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, h.http.URL+path, r)
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := h.http.Client().Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp
}

// chat posts a chat request and decodes the answer (or the error body).
func (h *harness) chat(body any, headers ...string) (*http.Response, ChatCompletion, apiError) {
	h.t.Helper()
	resp := h.do("POST", "/v1/chat/completions", body, headers...)
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	h.settled()
	var cc ChatCompletion
	var ae apiError
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(data, &cc); err != nil {
			h.t.Fatalf("decode answer %s: %v", data, err)
		}
	} else if err := json.Unmarshal(data, &ae); err != nil {
		h.t.Fatalf("decode error body %s: %v", data, err)
	}
	return resp, cc, ae
}

// sse reads a stream's data lines, [DONE] included.
func sse(t *testing.T, r io.Reader) []string {
	t.Helper()
	var out []string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			out = append(out, d)
		}
	}
	return out
}

// snapshot reads the pool's state as the tests compare it.
func (h *harness) snapshot() map[string]pool.SubscriptionStatus {
	h.t.Helper()
	h.settled()
	snap, err := h.pool.Status(context.Background())
	if err != nil {
		h.t.Fatalf("status: %v", err)
	}
	out := map[string]pool.SubscriptionStatus{}
	for _, s := range snap.Subscriptions {
		out[s.ID] = s
	}
	return out
}

// sessionKeys counts the session hashes in Redis.
func (h *harness) sessionKeys() int {
	h.t.Helper()
	h.settled()
	keys, err := h.tg.Client.Keys(context.Background(), h.keys().Base()+":session:*").Result()
	if err != nil {
		h.t.Fatal(err)
	}
	return len(keys)
}

func user(s string) map[string]any      { return map[string]any{"role": "user", "content": s} }
func assistant(s string) map[string]any { return map[string]any{"role": "assistant", "content": s} }
func system(s string) map[string]any    { return map[string]any{"role": "system", "content": s} }

func msgs(m ...map[string]any) []map[string]any { return m }

// setAnswer changes how the backend answers from now on.
func (f *fakeBackend) setAnswer(fn func(n int, tgt backend.Target, req backend.Request) (*backend.Result, error)) {
	f.mu.Lock()
	f.answer = fn
	f.mu.Unlock()
}
