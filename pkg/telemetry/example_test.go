package telemetry_test

import (
	"context"
	"fmt"
	"io"
	"net/http"

	"github.com/redis/go-redis/v9"

	"github.com/authpool/authpool/pkg/telemetry"
)

// ExampleStart is the wiring the package documentation shows, kept
// compiling: a binary's logger, then Start, then Redis instrumented under
// the tracing Start set up, and the metrics served at /metrics.
func ExampleStart() {
	ctx := context.Background()
	var cfg telemetry.Config // no OTLP endpoint, no SENTRY_DSN
	log := telemetry.NewLogger(cfg.Log, io.Discard, "api")
	tel, err := telemetry.Start(ctx, cfg, "authpool-api", "dev", log)
	if err != nil {
		panic(err)
	}
	defer tel.Close()
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}) // not dialled here
	defer func() { _ = rdb.Close() }()
	if err := telemetry.InstrumentRedis(rdb); err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", tel.Metrics.Handler())
	fmt.Println("sentry:", tel.Sentry)
	// Output: sentry: false
}
