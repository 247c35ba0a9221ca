// Package telemetry is what the binaries report about themselves (DESIGN §8):
// structured logs, Prometheus metrics, OpenTelemetry traces and Sentry
// errors. It owns the formats and the names; the binaries only wire it.
//
//   - Logs: NewLogger writes as the LogConfig that ParseLogConfig made of
//     LOG_LEVEL and LOG_FORMAT; json writes the seeds'
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
//     an OTLP endpoint, an OTLP exporter; InstrumentRedis traces
//     Redis calls without their statements; Tracer names a tracer.
//   - Errors: SetupSentry enables Sentry with a DSN; CaptureError and
//     CapturePanic report with request and subscription tags; WithRequest
//     attaches the failing request (credentials scrubbed).
//
// The package reads no environment variable itself: each binary reads its
// environment once into a Config and passes it down. The package does not
// log on its own: SetOTelErrorLogger routes the OTel
// SDK's internal errors to the process logger.
//
// Wiring in cmd/api (cmd/rebalancer is the same with its own service name
// and no gateway; it serves Metrics.Handler() on its own mux as GET
// /metrics). ExampleStart is this, compiled and run by go test:
//
//	log := telemetry.NewLogger(cfg.Telemetry.Log, os.Stderr, "api")
//	tel, err := telemetry.Start(ctx, cfg.Telemetry, gateway.ServiceName, version, log)
//	if err != nil {
//		return err
//	}
//	defer tel.Close()
//	if err := telemetry.InstrumentRedis(rdb); err != nil { // after Start, which set up tracing
//		return err
//	}
//	if p != nil { // samples: p.Status() turned into []telemetry.SubscriptionSample
//		if err := tel.Metrics.ObserveSubscriptions(pool.Statuses, samples); err != nil {
//			return err
//		}
//	}
//	// notify.Options{…, Metrics: tel.Metrics}; the gateway serves
//	// tel.Metrics.Handler() at GET /metrics and calls Allocation, Failover,
//	// Rotation, Settlement, Backend and HTTP on it; the rebalancer's
//	// Reporter calls SetLeader and RebalanceRun.
//
// ObserveSubscriptions is called at most once per Metrics. Each binary may
// call it on its own Metrics (gateways and rebalancers alike); a scrape then
// costs one read (cmd/api: one status script call) per
// MetricsOptions.PoolCacheTTL at most.
package telemetry
