package gateway

import (
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/redis/go-redis/extra/redisotel/v9"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/authpool/authpool/internal/testutil"
	"github.com/authpool/authpool/pkg/telemetry"
)

// TestSpanTree: one chat request makes the tree HTTP server span →
// pool.allocate → the allocate script's Redis span, then backend.run and
// pool.settle under the HTTP span, in the trace an incoming traceparent
// names; probes make no spans.
func TestSpanTree(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(t.Context()) })
	h := newHarness(t, harnessOpts{opts: Options{TracerProvider: tp}})
	// Connections ready in the pool: a turn runs Redis calls side by side
	// (the allocation and the stored conversation's read), and a connection
	// go-redis dials for one is no part of the request's trace.
	var conns []*redis.Conn
	for range 4 {
		cn := h.tg.Client.Conn()
		if err := cn.Ping(t.Context()).Err(); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, cn)
	}
	for _, cn := range conns {
		_ = cn.Close()
	}
	if err := redisotel.InstrumentTracing(h.tg.Client, redisotel.WithTracerProvider(tp), redisotel.WithDBStatement(false)); err != nil {
		t.Fatal(err)
	}
	// The gateway continues the caller's trace through the global
	// propagator, which cmd/api installs with telemetry.SetupTracing.
	prev := otel.GetTextMapPropagator()
	t.Cleanup(func() { otel.SetTextMapPropagator(prev) })
	if _, err := telemetry.SetupTracing(t.Context(), telemetry.TraceConfig{}, ServiceName); err != nil {
		t.Fatal(err)
	}

	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	resp, _, ae := h.chat(map[string]any{"session_id": "traced", "messages": msgs(user("hi"))},
		"traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
	if resp.StatusCode != 200 {
		t.Fatalf("status = %d: %+v", resp.StatusCode, ae)
	}
	probe := h.do("GET", "/health", nil)
	_ = probe.Body.Close()
	// The session id in a path stays out of the span (url.path is the route).
	del := h.do("DELETE", "/v1/sessions/traced", nil, "traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
	_ = del.Body.Close()

	spans := exp.GetSpans()
	byID := map[trace.SpanID]tracetest.SpanStub{}
	for _, s := range spans {
		byID[s.SpanContext.SpanID()] = s
		if s.SpanContext.TraceID().String() != traceID {
			t.Errorf("span %q in trace %s, want the caller's %s", s.Name, s.SpanContext.TraceID(), traceID)
		}
	}
	find := func(name string) tracetest.SpanStub {
		t.Helper()
		for _, s := range spans {
			if s.Name == name {
				return s
			}
		}
		var names []string
		for _, s := range spans {
			names = append(names, s.Name)
		}
		t.Fatalf("no span %q among %v", name, names)
		return tracetest.SpanStub{}
	}
	root := find("POST /v1/chat/completions")
	if root.SpanKind != trace.SpanKindServer {
		t.Errorf("HTTP span kind = %v", root.SpanKind)
	}
	alloc := find("pool.allocate")
	run := find("backend.run")
	settle := find("pool.settle")
	for _, s := range []tracetest.SpanStub{alloc, run, settle} {
		if s.Parent.SpanID() != root.SpanContext.SpanID() {
			t.Errorf("%s parent = %s, want the HTTP span", s.Name, byID[s.Parent.SpanID()].Name)
		}
	}
	// The allocate script's own Redis span hangs under pool.allocate.
	var script bool
	for _, s := range spans {
		if s.Parent.SpanID() == alloc.SpanContext.SpanID() && strings.HasPrefix(s.Name, "eval") {
			script = true
		}
	}
	if !script {
		t.Errorf("no Redis EVALSHA span under pool.allocate")
	}
	attrs := map[string]string{}
	for _, kv := range run.Attributes {
		attrs[string(kv.Key)] = kv.Value.Emit()
	}
	if attrs["authpool.backend"] == "" || !strings.HasPrefix(attrs["authpool.subscription"], "sub") {
		t.Errorf("backend.run attributes = %v", attrs)
	}
	for _, s := range spans {
		if strings.Contains(s.Name, "/health") {
			t.Errorf("a probe made span %q", s.Name)
		}
		for _, kv := range s.Attributes {
			if strings.Contains(kv.Value.Emit(), "traced") && kv.Key != "http.route" {
				t.Errorf("span %q attribute %s carries the session id", s.Name, kv.Key)
			}
		}
	}
}

// TestMetricsEndpoint: after traffic, /metrics on the gateway shows the
// allocations, settlements, backend calls and HTTP requests it served, by
// route pattern, never by raw path.
func TestMetricsEndpoint(t *testing.T) {
	m, err := telemetry.NewMetrics(telemetry.MetricsOptions{})
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, harnessOpts{opts: Options{Metrics: m}})
	for i := range 3 {
		if r, _, ae := h.chat(map[string]any{"session_id": "m" + strconv.Itoa(i), "messages": msgs(user("hi"))},
			"X-Request-ID", "r"+strconv.Itoa(i)); r.StatusCode != 200 {
			t.Fatalf("status = %d: %+v", r.StatusCode, ae)
		}
	}
	// A repeated X-Request-ID is another turn, settled under its own id.
	if r, _, _ := h.chat(map[string]any{"session_id": "m0", "messages": msgs(user("hi"))}, "X-Request-ID", "r0"); r.StatusCode != 200 {
		t.Fatalf("second turn status = %d", r.StatusCode)
	}
	r := h.do("DELETE", "/v1/sessions/m1", nil)
	_ = r.Body.Close()
	// A refused X-Request-ID is a request too.
	r = h.do("POST", "/v1/chat/completions", map[string]any{"messages": msgs(user("hi"))}, "X-Request-ID", "bad id!")
	_ = r.Body.Close()
	if r.StatusCode != 400 {
		t.Fatalf("bad X-Request-ID status = %d", r.StatusCode)
	}

	resp := h.do("GET", "/metrics", nil)
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics status = %d", resp.StatusCode)
	}
	series, err := testutil.ParseMetrics(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{
		`authpool_allocations_total{priority="normal",result="bound"}`:          3,
		`authpool_allocations_total{priority="normal",result="resumed"}`:        1,
		`authpool_settlements_total{result="settled"}`:                          4,
		`authpool_settlements_total{result="duplicate"}`:                        0,
		`authpool_http_requests_total{code="200",route="/v1/chat/completions"}`: 4,
		`authpool_http_requests_total{code="400",route="/v1/chat/completions"}`: 1,
		`authpool_http_requests_total{code="200",route="/v1/sessions/:id"}`:     1,
	}
	for k, v := range want {
		if got, ok := series[k]; !ok || got != v {
			t.Errorf("%s = %v (present %v), want %v", k, got, ok, v)
		}
	}
	// Four backend calls, spread over the fake CLI backends.
	var calls float64
	for k, v := range series {
		if strings.HasPrefix(k, "authpool_backend_request_duration_seconds_count{") && strings.Contains(k, `kind="complete"`) {
			calls += v
		}
	}
	if calls != 4 {
		t.Errorf("backend calls in metrics = %v, want 4", calls)
	}
	for k := range series {
		if strings.Contains(k, "/v1/sessions/m1") {
			t.Errorf("raw path in a label: %s", k)
		}
	}
}

// TestNoTracingWithoutProvider (issue 14): without a TracerProvider (no
// exporter) the HTTP tracing middleware is not installed at all; with one,
// it is.
func TestNoTracingWithoutProvider(t *testing.T) {
	off := newHarness(t, harnessOpts{})
	tp := sdktrace.NewTracerProvider()
	t.Cleanup(func() { _ = tp.Shutdown(t.Context()) })
	on := newHarness(t, harnessOpts{opts: Options{TracerProvider: tp}})
	if off.srv.tracing || !on.srv.tracing {
		t.Fatalf("tracing: off %t, on %t", off.srv.tracing, on.srv.tracing)
	}
	if n, m := len(off.srv.Handler().Handlers), len(on.srv.Handler().Handlers); m != n+1 {
		t.Errorf("middleware: %d without a provider, %d with one: want one more", n, m)
	}
	r, _, ae := off.chat(map[string]any{"messages": msgs(user("hi"))},
		"traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	if r.StatusCode != 200 {
		t.Fatalf("untraced turn: %d %+v", r.StatusCode, ae)
	}
}
