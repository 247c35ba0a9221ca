package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"

	"github.com/redis/go-redis/extra/redisotel/v9"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// ErrTraceConfig reports a bad OTEL_EXPORTER_OTLP_* setting.
var ErrTraceConfig = errors.New("telemetry: bad trace configuration")

// OTLP protocols of OTEL_EXPORTER_OTLP_PROTOCOL.
const (
	ProtocolHTTP = "http/protobuf"
	ProtocolGRPC = "grpc"
)

// TraceConfig says where spans go, as the binary read it from the
// OTEL_EXPORTER_OTLP_* variables named on each field. The zero value
// exports nothing.
type TraceConfig struct {
	// Endpoint (OTEL_EXPORTER_OTLP_ENDPOINT) is the collector's base URL;
	// http/protobuf appends /v1/traces. It may carry credentials.
	Endpoint string
	// TracesEndpoint (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is the full URL of
	// the traces endpoint; it wins over Endpoint.
	TracesEndpoint string
	// Protocol (OTEL_EXPORTER_OTLP_PROTOCOL) is ProtocolHTTP (default) or
	// ProtocolGRPC.
	Protocol string
	// TracesProtocol (OTEL_EXPORTER_OTLP_TRACES_PROTOCOL) wins over Protocol.
	TracesProtocol string
}

// Exporting reports whether c names an endpoint, that is whether
// SetupTracing will export spans.
func (c TraceConfig) Exporting() bool {
	return strings.TrimSpace(c.TracesEndpoint) != "" || strings.TrimSpace(c.Endpoint) != ""
}

// SetupTracing installs the W3C trace-context and baggage propagator
// globally, so incoming traceparent headers continue in our spans and
// outgoing requests carry them. With c.Endpoint (or c.TracesEndpoint, used
// as the full URL) set, it also installs a global tracer provider whose
// batch exporter sends spans over OTLP: http/protobuf (default; /v1/traces
// is appended to the endpoint) or grpc, per c.Protocol (or
// c.TracesProtocol). Without an endpoint nothing is exported and the global
// tracer provider is left as it is (OTel's default is a no-op), so a test
// may install its own.
//
// The exporter itself also honours the process's other
// OTEL_EXPORTER_OTLP_* variables (headers, timeout, certificates) and
// OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES: the OTel SDK reads those.
// shutdown flushes pending spans; call it before the process exits.
func SetupTracing(ctx context.Context, c TraceConfig, serviceName string) (shutdown func(context.Context) error, err error) {
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	noop := func(context.Context) error { return nil }

	name, full := "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", true
	endpoint := strings.TrimSpace(c.TracesEndpoint)
	if endpoint == "" {
		name, full = "OTEL_EXPORTER_OTLP_ENDPOINT", false
		endpoint = strings.TrimSpace(c.Endpoint)
	}
	if endpoint == "" {
		return noop, nil
	}
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		// The URL may carry credentials: name the variable, not its value.
		return nil, fmt.Errorf("%w: %s must be an http:// or https:// URL with a host", ErrTraceConfig, name)
	}
	protocol := strings.TrimSpace(c.TracesProtocol)
	if protocol == "" {
		protocol = strings.TrimSpace(c.Protocol)
	}
	var exp *otlptrace.Exporter
	switch protocol {
	case "", ProtocolHTTP:
		if !full {
			u.Path = strings.TrimSuffix(u.Path, "/") + "/v1/traces"
		}
		exp, err = otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(u.String()))
	case ProtocolGRPC:
		exp, err = otlptracegrpc.New(ctx, otlptracegrpc.WithEndpointURL(u.String()))
	default:
		return nil, fmt.Errorf("%w: OTEL_EXPORTER_OTLP_PROTOCOL %q: want %s or %s", ErrTraceConfig, protocol, ProtocolHTTP, ProtocolGRPC)
	}
	if err != nil {
		return nil, fmt.Errorf("telemetry: otlp exporter: %w", err)
	}
	// OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES come after serviceName
	// so that they win, as the OTel specification asks.
	res, err := resource.New(ctx, resource.WithTelemetrySDK(),
		resource.WithAttributes(semconv.ServiceName(serviceName)), resource.WithFromEnv())
	if err != nil {
		_ = exp.Shutdown(ctx)
		return nil, fmt.Errorf("telemetry: trace resource: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	otel.SetTracerProvider(tp)
	return func(ctx context.Context) error {
		if err := tp.Shutdown(ctx); err != nil {
			return fmt.Errorf("telemetry: trace shutdown: %w", err)
		}
		return nil
	}, nil
}

// Tracer returns the named tracer of the global tracer provider (the one
// SetupTracing installed, or a no-op).
func Tracer(name string) trace.Tracer { return otel.Tracer(name) }

// InstrumentRedis adds a span for each Redis command, pipeline and script
// call of rdb, under the global tracer provider, without the statement:
// scripts, keys and session ids stay out of spans. Call it after
// SetupTracing.
func InstrumentRedis(rdb redis.UniversalClient) error {
	if err := redisotel.InstrumentTracing(rdb, redisotel.WithDBStatement(false)); err != nil {
		return fmt.Errorf("telemetry: instrument redis: %w", err)
	}
	return nil
}

// SetOTelErrorLogger sends OpenTelemetry's internal errors (a failed export,
// a pool snapshot that could not be read during a scrape) to l at WARN,
// instead of the standard logger.
func SetOTelErrorLogger(l *slog.Logger) {
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		l.Warn("opentelemetry error", "err", err)
	}))
}
