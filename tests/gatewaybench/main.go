// Command gatewaybench measures the gateway's own overhead: it starts a
// redis-server, two cmd/api replicas and the fake claude CLI, then drives the
// same paced load (default 50 requests/s for 10 s, at most -c in flight)
// first straight at the fake CLI — one process per request, as the gateway
// runs it — and then through the gateway, alternating replicas. It prints a
// Markdown table with p50/p99 of both, the latency the gateway adds and the
// throughput ratio. Run it from the repository root:
//
//	go run ./tests/gatewaybench -out BENCHMARKS.md
//	go run ./tests/gatewaybench -rate 100 -d 5s -sessions 0
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/authpool/authpool/internal/benchdoc"
)

func main() {
	var o options
	flag.IntVar(&o.rate, "rate", 50, "requests per second, across both replicas")
	flag.DurationVar(&o.duration, "d", 10*time.Second, "duration of each measured phase")
	flag.IntVar(&o.conc, "c", 64, "most requests in flight at once (same for both phases)")
	flag.IntVar(&o.sessions, "sessions", 100, "client sessions the requests rotate over (0: a one-shot session each)")
	flag.IntVar(&o.subs, "subs", 4, "subscriptions in the pool")
	flag.StringVar(&o.out, "out", "", "also write the report into this Markdown file (replacing its gateway section)")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "gatewaybench:", err)
		os.Exit(1)
	}
}

type options struct {
	rate, conc, sessions, subs int
	duration                   time.Duration
	out                        string
}

func run(o options) error {
	env, err := setup(o)
	if err != nil {
		return err
	}
	defer env.close()

	// Warm both paths (process cache, connections, script cache).
	warm := o
	warm.duration = time.Second
	warm.rate = min(o.rate, 50)
	if _, err := drive(warm, env.direct); err != nil {
		return fmt.Errorf("warm-up (direct): %w", err)
	}
	if _, err := drive(warm, env.gateway); err != nil {
		return fmt.Errorf("warm-up (gateway): %w", err)
	}

	direct, err := drive(o, env.direct)
	if err != nil {
		return fmt.Errorf("direct: %w", err)
	}
	gw, err := drive(o, env.gateway)
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	r := report(o, direct, gw)
	fmt.Print(r)
	if o.out != "" {
		return benchdoc.WriteSection(o.out, "gatewaybench", r)
	}
	return nil
}

func report(o options, direct, gw stats) string {
	var b strings.Builder
	sessions := fmt.Sprintf("%d rotating sessions", o.sessions)
	if o.sessions == 0 {
		sessions = "a one-shot session per request"
	}
	b.WriteString("## Gateway overhead\n\n")
	fmt.Fprintf(&b, "Command: `go run ./tests/gatewaybench -out BENCHMARKS.md` — %d requests/s for %s per phase, at most %d in flight, %s, "+
		"%d subscriptions, two `cmd/api` replicas on one redis-server, the fake CLI (`tests/fakeclaude`) as `CLAUDE_BIN`; "+
		"%d CPUs, %s.\n\n", o.rate, o.duration, o.conc, sessions, o.subs, runtime.NumCPU(), runtime.Version())
	b.WriteString("| path | requests | errors | throughput (req/s) | p50 | p90 | p99 | max |\n")
	b.WriteString("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	row := func(name string, s stats) {
		fmt.Fprintf(&b, "| %s | %d | %d | %.1f | %s | %s | %s | %s |\n", name, s.n, s.errors, s.throughput(),
			ms(s.p(50)), ms(s.p(90)), ms(s.p(99)), ms(s.p(100)))
	}
	row("fake CLI, run directly", direct)
	row("through the gateway", gw)
	fmt.Fprintf(&b, "| **gateway adds** | | | ratio %.3f | **%s** | %s | **%s** | |\n\n",
		gw.throughput()/direct.throughput(), signedMS(gw.p(50)-direct.p(50)), signedMS(gw.p(90)-direct.p(90)),
		signedMS(gw.p(99)-direct.p(99)))
	if direct.throughput() < 0.95*float64(o.rate) {
		fmt.Fprintf(&b, "**Saturated:** this machine starts the fake CLI only %.0f times a second, below the %d asked for, "+
			"so both paths queue for CPU and the difference above is queueing, not the gateway's own cost. "+
			"Rerun with `-rate` under %.0f to measure the overhead.\n\n", direct.throughput(), o.rate, 0.8*direct.throughput())
	}
	b.WriteString("The direct path starts the fake CLI with the gateway's arguments (the sandboxed stream-json run), " +
		"writes the prompt on stdin and reads the stream to its result line; the fake CLI sends its text at once " +
		"on both paths. The gateway path adds HTTP, authentication, the rate-limit, allocation and observation " +
		"scripts, the settlement and conversation scripts, and the OpenAI encoding. Latencies are per request, " +
		"from send to the last byte.\n")
	return b.String()
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }

func signedMS(d time.Duration) string { return fmt.Sprintf("%+.2f ms", float64(d.Microseconds())/1000) }
