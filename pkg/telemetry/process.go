package telemetry

import (
	"context"
	"log/slog"
	"time"
)

// sentryFlushTimeout bounds the wait for queued Sentry events at exit.
const sentryFlushTimeout = 2 * time.Second

// Config is the telemetry part of a binary's environment, read once by the
// binary (internal/runenv) and passed down.
type Config struct {
	// Log is LOG_LEVEL and LOG_FORMAT, for NewLogger.
	Log LogConfig
	// Trace is OTEL_EXPORTER_OTLP_*, for SetupTracing.
	Trace TraceConfig
	// Sentry is SENTRY_DSN and the environment, for SetupSentry.
	Sentry SentryConfig
}

// Process is a binary's telemetry, set up from its Config by Start:
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
func Start(ctx context.Context, c Config, service, release string, log *slog.Logger) (*Process, error) {
	SetOTelErrorLogger(log)
	stop, err := SetupTracing(ctx, c.Trace, service)
	if err != nil {
		return nil, err
	}
	flush, on, err := SetupSentry(c.Sentry, release)
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
	log.Info("telemetry", "sentry", on, "tracing", c.Trace.Exporting())
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
