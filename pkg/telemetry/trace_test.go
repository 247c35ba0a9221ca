package telemetry

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/authpool/authpool/internal/redistest"
	"github.com/authpool/authpool/pkg/pool"
)

func TestRedisScriptCallIsAChildSpanWithoutStatement(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	otel.SetTracerProvider(tp)

	tg := redistest.Mini(t)
	if err := InstrumentRedis(tg.Client); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cfg := &pool.Config{Subscriptions: []pool.SubscriptionConfig{
		{ID: "sub1", Email: "team+sub1@example.com", Type: "claude-pro", ConfigDir: "/tmp/claude-sub1", WeeklyBudget: 100},
	}}
	p := pool.New(tg.Client, cfg, pool.Options{})
	if err := p.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	exp.Reset()

	ctx, parent := Tracer("test").Start(ctx, "POST /v1/chat/completions")
	if _, err := p.Allocate(ctx, "secret-session-id", pool.PriorityNormal); err != nil {
		t.Fatal(err)
	}
	parent.End()

	var script *tracetest.SpanStub
	spans := exp.GetSpans()
	for i, s := range spans {
		if s.Parent.SpanID() == parent.SpanContext().SpanID() && strings.HasPrefix(strings.ToLower(s.Name), "eval") {
			script = &spans[i]
		}
		for _, a := range s.Attributes {
			if a.Key == "db.statement" || a.Key == "db.query.text" {
				t.Errorf("span %q carries %s", s.Name, a.Key)
			}
			if strings.Contains(a.Value.Emit(), "secret-session-id") || strings.Contains(a.Value.Emit(), "redis.call") {
				t.Errorf("span %q attribute %s leaks a key or the script: %s", s.Name, a.Key, a.Value.Emit())
			}
		}
	}
	if script == nil {
		var names []string
		for _, s := range spans {
			names = append(names, s.Name)
		}
		t.Fatalf("no script span under the request span; spans: %v", names)
	}
	if script.SpanContext.TraceID() != parent.SpanContext().TraceID() {
		t.Error("script span is in another trace")
	}
}

func TestSetupTracingWithoutEndpointOnlyPropagates(t *testing.T) {
	before := otel.GetTracerProvider()
	shutdown, err := SetupTracing(context.Background(), TraceConfig{}, "authpool-api")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = shutdown(context.Background()) }()
	if otel.GetTracerProvider() != before {
		t.Error("the tracer provider was replaced although no endpoint is set")
	}

	// An incoming traceparent continues into outgoing requests.
	in := http.Header{"Traceparent": {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}}
	ctx := otel.GetTextMapPropagator().Extract(context.Background(), propagation.HeaderCarrier(in))
	out := http.Header{}
	otel.GetTextMapPropagator().Inject(ctx, propagation.HeaderCarrier(out))
	if got := out.Get("Traceparent"); !strings.HasPrefix(got, "00-4bf92f3577b34da6a3ce929d0e0e4736-") {
		t.Errorf("outgoing traceparent %q does not continue the incoming trace", got)
	}
}

func TestSetupTracingExportsOverOTLPHTTP(t *testing.T) {
	var mu sync.Mutex
	var got []*coltracepb.ExportTraceServiceRequest
	var paths []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		req := &coltracepb.ExportTraceServiceRequest{}
		if err := proto.Unmarshal(body, req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		got, paths = append(got, req), append(paths, r.URL.Path)
		mu.Unlock()
		b, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(b)
	}))
	defer srv.Close()

	shutdown, err := SetupTracing(context.Background(), TraceConfig{Endpoint: srv.URL}, "authpool-api")
	if err != nil {
		t.Fatal(err)
	}
	_, span := Tracer("test").Start(context.Background(), "allocate")
	span.End()
	if err := shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(paths) == 0 || paths[0] != "/v1/traces" {
		t.Fatalf("export paths %v, want /v1/traces", paths)
	}
	name, service := exported(got)
	if name != "allocate" || service != "authpool-api" {
		t.Errorf("exported span %q of service %q, want allocate of authpool-api", name, service)
	}
}

type traceSink struct {
	coltracepb.UnimplementedTraceServiceServer
	mu   sync.Mutex
	reqs []*coltracepb.ExportTraceServiceRequest
}

func (s *traceSink) Export(_ context.Context, r *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reqs = append(s.reqs, r)
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

func TestSetupTracingExportsOverOTLPGRPC(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sink := &traceSink{}
	gs := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(gs, sink)
	go func() { _ = gs.Serve(lis) }()
	defer gs.Stop()

	shutdown, err := SetupTracing(context.Background(), TraceConfig{
		Endpoint: "http://" + lis.Addr().String(), Protocol: "grpc"}, "authpool-rebalancer")
	if err != nil {
		t.Fatal(err)
	}
	_, span := Tracer("test").Start(context.Background(), "rebalance")
	span.End()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	name, service := exported(sink.reqs)
	if name != "rebalance" || service != "authpool-rebalancer" {
		t.Errorf("exported span %q of service %q, want rebalance of authpool-rebalancer", name, service)
	}
}

// exported returns the first span name and the service.name of the requests.
func exported(reqs []*coltracepb.ExportTraceServiceRequest) (name, service string) {
	for _, r := range reqs {
		for _, rs := range r.GetResourceSpans() {
			for _, a := range rs.GetResource().GetAttributes() {
				if a.GetKey() == "service.name" {
					service = a.GetValue().GetStringValue()
				}
			}
			for _, ss := range rs.GetScopeSpans() {
				for _, s := range ss.GetSpans() {
					if name == "" {
						name = s.GetName()
					}
				}
			}
		}
	}
	return name, service
}

func TestSetupTracingRejectsBadSettings(t *testing.T) {
	tests := []struct {
		name string
		cfg  TraceConfig
	}{
		{"not a URL", TraceConfig{Endpoint: "collector:4318"}},
		{"ftp", TraceConfig{Endpoint: "ftp://user:hunter2secret@collector"}},
		{"traces URL", TraceConfig{Endpoint: "http://collector:4318", TracesEndpoint: "ftp://user:hunter2secret@collector"}},
		{"http/json", TraceConfig{Endpoint: "http://collector:4318", Protocol: "http/json"}},
		{"traces protocol wins", TraceConfig{Endpoint: "http://collector:4318", Protocol: "grpc", TracesProtocol: "http/json"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := SetupTracing(context.Background(), tt.cfg, "authpool-api")
			if !errors.Is(err, ErrTraceConfig) {
				t.Fatalf("err %v, want ErrTraceConfig", err)
			}
			if strings.Contains(err.Error(), "hunter2secret") {
				t.Errorf("error leaks the endpoint's password: %v", err)
			}
		})
	}
}
