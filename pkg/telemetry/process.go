package telemetry

import (
	"context"
	"log/slog"
	"time"
)

// sentryFlushTimeout bounds the wait for queued Sentry events at exit.
const sentryFlushTimeout = 2 * time.Second

// Process is a binary's telemetry, set up from its environment by Start:
// OTel errors to the log, tracing (SetupTracing), Sentry (SetupSentry) and
// the metrics to serve at /metrics.
type Process struct {
	// Metrics is the process's metrics.
	Metrics *Metrics
	// Sentry is whether SENTRY_DSN enabled error reporting.
	Sentry bool

	stopTracing func(context.Context) error
	flush       func(time.Duration) bool
}

// Start sets up the process's telemetry for service (its trace service
// name) at release (its Sentry release). Close it before the process exits.
func Start(ctx context.Context, getenv func(string) string, service, release string, log *slog.Logger) (*Process, error) {
	SetOTelErrorLogger(log)
	stop, err := SetupTracing(ctx, getenv, service)
	if err != nil {
		return nil, err
	}
	flush, on, err := SetupSentry(getenv, release)
	if err != nil {
		_ = stop(ctx)
		return nil, err
	}
	m, err := NewMetrics(MetricsOptions{})
	if err != nil {
		flush(0)
		_ = stop(ctx)
		return nil, err
	}
	log.Info("telemetry", "sentry", on, "tracing", getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" ||
		getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "")
	return &Process{Metrics: m, Sentry: on, stopTracing: stop, flush: flush}, nil
}

// Close flushes pending Sentry events and spans and stops the metrics.
func (p *Process) Close() {
	p.flush(sentryFlushTimeout)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = p.stopTracing(ctx)
	_ = p.Metrics.Shutdown(ctx)
}
