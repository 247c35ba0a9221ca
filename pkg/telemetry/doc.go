// Package telemetry is what the binaries report about themselves (DESIGN §8):
// structured logs, Prometheus metrics, OpenTelemetry traces and Sentry
// errors. It owns the formats and the names; the binaries only wire it.
//
//   - Logs: NewLogger reads LOG_LEVEL and LOG_FORMAT; json writes the seeds'
//     lines (timestamp, level, module, message, context) and both formats
//     redact secrets. Module names the writer.
//   - Metrics: NewMetrics builds an OTel meter provider exported by the
//     Prometheus exporter on a registry of its own (plus the Go and process
//     collectors); Handler serves /metrics. The typed methods record the
//     authpool_* metrics of deploy/metrics.txt; ObserveSubscriptions exports
//     the per-subscription gauges from samples the binary reads (the
//     package imports nothing of the project: it knows no pool). *Metrics is also the
//     notify.Metrics of the Deliverer. A nil *Metrics records nothing.
//   - Traces: SetupTracing installs the W3C propagator and, with
//     OTEL_EXPORTER_OTLP_ENDPOINT, an OTLP exporter; InstrumentRedis traces
//     Redis calls without their statements; Tracer names a tracer.
//   - Errors: SetupSentry enables Sentry with SENTRY_DSN; CaptureError and
//     CapturePanic report with request and subscription tags; WithRequest
//     attaches the failing request (credentials scrubbed).
//
// The package does not log on its own: SetOTelErrorLogger routes the OTel
// SDK's internal errors to the process logger.
//
// Wiring in cmd/api (cmd/rebalancer is the same with "rebalancer" and no
// gateway; it serves m.Handler() on its own mux as GET /metrics):
//
//	log, err := telemetry.NewLogger(getenv, os.Stderr, "api")
//	if err != nil {
//		return err
//	}
//	telemetry.SetOTelErrorLogger(log)
//	stopTracing, err := telemetry.SetupTracing(ctx, getenv, "authpool-api")
//	if err != nil {
//		return err
//	}
//	defer func() { _ = stopTracing(context.Background()) }()
//	flush, sentryOn, err := telemetry.SetupSentry(getenv, version)
//	if err != nil {
//		return err
//	}
//	defer flush(2 * time.Second)
//	log.Info("telemetry", "sentry", sentryOn)
//
//	m, err := telemetry.NewMetrics(telemetry.MetricsOptions{})
//	if err != nil {
//		return err
//	}
//	defer func() { _ = m.Shutdown(context.Background()) }()
//	if err := telemetry.InstrumentRedis(rdb); err != nil { // after SetupTracing
//		return err
//	}
//	if p != nil { // samples: p.Status() turned into []telemetry.SubscriptionSample
//		if err := m.ObserveSubscriptions(pool.Statuses, samples); err != nil {
//			return err
//		}
//	}
//	// notify.Options{…, Metrics: m}; the gateway serves m.Handler() at
//	// GET /metrics and calls m.Allocation, m.Failover, m.Rotation,
//	// m.Settlement, m.Backend, m.HTTP; the rebalancer's Reporter calls
//	// m.SetLeader(l.Leader) and m.RebalanceRun(ctx, result, moved, c.Duration).
//
// ObserveSubscriptions is called at most once per Metrics. Each binary may
// call it on its own Metrics (gateways and rebalancers alike); a scrape then
// costs one read (cmd/api: one status script call) per
// MetricsOptions.PoolCacheTTL at most.
package telemetry
