// Command gatewaybench measures the gateway's own overhead: it starts a
// redis-server, two cmd/api replicas (and two more with the rate limit on)
// and the fake claude CLI, then drives the same paced load at each rate
// (default 10 and 50 requests/s, 20 s per path, at most -c in flight)
// straight at the fake CLI — one process per request, as the gateway runs
// it — and through the gateway, alternating replicas, the paths taking
// turns second by second. The replicas run with SERVER_TIMING=1 and
// PPROF=1: it reports the median of each phase of a request (from their
// "request phases" log lines) and, with -cpuprofile, fetches a CPU profile
// of one replica during the last rate's gateway load and lists its top.
// It prints a Markdown report; run it from the repository root:
//
//	go run ./tests/gatewaybench -out BENCHMARKS.md -cpuprofile gw.pprof
//	go run ./tests/gatewaybench -rates 100 -d 5s -sessions 0 -ratelimit=false
package main

import (
	"cmp"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/authpool/authpool/internal/benchdoc"
)

func main() {
	var o options
	var rates string
	flag.StringVar(&rates, "rates", "10,50", "comma-separated requests per second, across both replicas; each is measured")
	flag.DurationVar(&o.duration, "d", 20*time.Second, "duration of each path at each rate")
	flag.IntVar(&o.conc, "c", 64, "most requests in flight at once (same for every path)")
	flag.IntVar(&o.sessions, "sessions", 100, "client sessions the requests rotate over (0: a one-shot session each)")
	flag.IntVar(&o.subs, "subs", 4, "subscriptions in the pool")
	flag.BoolVar(&o.rateLimitCost, "ratelimit", true, "also measure two replicas with the rate limit on")
	flag.StringVar(&o.cpuprofile, "cpuprofile", "", "write a CPU profile of replica 0 under the last rate's load to this file")
	flag.StringVar(&o.out, "out", "", "also write the report into this Markdown file (replacing its gateway section)")
	flag.Parse()
	for _, r := range strings.Split(rates, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(r))
		if err != nil || n <= 0 {
			fmt.Fprintf(os.Stderr, "gatewaybench: -rates: bad rate %q\n", r)
			os.Exit(2)
		}
		o.rates = append(o.rates, n)
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "gatewaybench:", err)
		os.Exit(1)
	}
}

type options struct {
	rates                []int
	conc, sessions, subs int
	duration             time.Duration
	rateLimitCost        bool
	cpuprofile, out      string
}

// result is one rate's measurements.
type result struct {
	rate                int
	direct, gw, limited stats                // limited: through the replicas with the rate limit on
	phases, limPhases   map[string][]float64 // ms per phase, sorted
	cli                 map[string][]float64 // the direct path's CLI phases (spawn, first_byte, exit)
}

func run(o options) error {
	env, err := setup(o)
	if err != nil {
		return err
	}
	defer env.close()
	paths := []op{env.direct, env.gateway(0)}
	if o.rateLimitCost {
		paths = append(paths, env.gateway(2))
	}

	// Warm every path (process cache, connections, script cache).
	warm := o
	warm.duration = time.Second
	if _, err := compare(warm, 20, paths); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}

	var results []result
	var top string
	for i, rate := range o.rates {
		var prof chan error
		if o.cpuprofile != "" && i == len(o.rates)-1 {
			prof = make(chan error, 1)
			path, _ := filepath.Abs(o.cpuprofile)
			// The paths take turns: the profile spans all of them, and
			// replica 0 works only during the gateway's turns.
			go func() { prof <- env.profile(path, o.duration*time.Duration(len(paths))) }()
		}
		from := env.offsets()
		env.cliPhases() // drop the warm-up's
		st, err := compare(o, rate, paths)
		if err != nil {
			return fmt.Errorf("%d requests/s: %w", rate, err)
		}
		time.Sleep(time.Second) // the replicas' buffered logs flush
		r := result{rate: rate, direct: st[0], gw: st[1], phases: env.phases(from, 0, 1), cli: env.cliPhases()}
		if o.rateLimitCost {
			r.limited, r.limPhases = st[2], env.phases(from, 2, 3)
		}
		results = append(results, r)
		if prof != nil {
			if err := <-prof; err != nil {
				return fmt.Errorf("cpu profile: %w", err)
			}
			if top, err = env.profileTop(o.cpuprofile, 40); err != nil {
				return err
			}
		}
	}
	rep := report(o, results, top)
	fmt.Print(rep)
	if o.out != "" {
		return benchdoc.WriteSection(o.out, "gatewaybench", rep)
	}
	return nil
}

func report(o options, results []result, top string) string {
	var b strings.Builder
	sessions := fmt.Sprintf("%d rotating sessions", o.sessions)
	if o.sessions == 0 {
		sessions = "a one-shot session per request"
	}
	rates := make([]string, len(o.rates))
	for i, r := range o.rates {
		rates[i] = strconv.Itoa(r)
	}
	b.WriteString("## Gateway overhead\n\n")
	limited := ""
	if o.rateLimitCost {
		limited = " (rate limit off; two more with it on)"
	}
	fmt.Fprintf(&b, "Command: `%s` — at %s requests/s, "+
		"%s per path at each rate (the paths take turns second by second), at most %d in flight, %s, "+
		"%d subscriptions, two `cmd/api` replicas on one redis-server%s, "+
		"the fake CLI (`tests/fakeclaude`) as `CLAUDE_BIN`, `SERVER_TIMING=1`; %d CPUs, %s.\n\n",
		strings.Join(append([]string{"go run ./tests/gatewaybench"}, os.Args[1:]...), " "),
		strings.Join(rates, " and "), o.duration, o.conc, sessions, o.subs, limited, runtime.NumCPU(), runtime.Version())

	b.WriteString(targets(results))
	for _, r := range results {
		if p50, p99 := r.direct.p(50), r.direct.p(99); p99 > 3*p50 {
			fmt.Fprintf(&b, "- **Noisy at %d/s:** the direct path's own p99 (%s) is %.0f× its p50: the machine stalled "+
				"every path now and then (CPU taken from outside the run), so the p99 differences above measure "+
				"those stalls more than the gateway.\n", r.rate, ms(p99), float64(p99)/float64(p50))
		}
	}
	if top != "" {
		if i := strings.Index(top, "Total samples = "); i >= 0 {
			line, _, _ := strings.Cut(top[i:], "\n")
			fmt.Fprintf(&b, "- The CPU profile of a replica under the %d/s load (%s) shows little computation: what is "+
				"left before the answer is waiting — the allocate script's Redis round trip, the process start, the "+
				"HTTP hop and the wake-ups between them.\n", results[len(results)-1].rate, strings.TrimSpace(line))
		}
	}
	b.WriteString("\n")

	b.WriteString("| rate | path | requests | errors | throughput (req/s) | p50 | p90 | p99 | max |\n")
	b.WriteString("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, r := range results {
		row := func(name string, s stats) {
			fmt.Fprintf(&b, "| %d/s | %s | %d | %d | %.1f | %s | %s | %s | %s |\n", r.rate, name, s.n, s.errors,
				s.throughput(), ms(s.p(50)), ms(s.p(90)), ms(s.p(99)), ms(s.p(100)))
		}
		adds := func(name string, s, ref stats) {
			fmt.Fprintf(&b, "| %d/s | **%s** | | | ratio %.3f | **%s** | %s | **%s** | |\n", r.rate, name,
				s.throughput()/ref.throughput(), signedMS(s.p(50)-ref.p(50)), signedMS(s.p(90)-ref.p(90)),
				signedMS(s.p(99)-ref.p(99)))
		}
		row("fake CLI, run directly", r.direct)
		row("through the gateway", r.gw)
		adds("gateway adds", r.gw, r.direct)
		if o.rateLimitCost {
			row("through the gateway, rate limit on", r.limited)
			adds("rate limit adds", r.limited, r.gw)
		}
	}
	b.WriteString("\n")
	for _, r := range results {
		if r.direct.throughput() < 0.95*float64(r.rate) {
			fmt.Fprintf(&b, "**Saturated at %d/s:** this machine starts the fake CLI only %.0f times a second, "+
				"so every path queues for CPU and the difference above is queueing, not the gateway's own cost.\n\n",
				r.rate, r.direct.throughput())
		}
	}

	b.WriteString("### Where a request's time goes\n\n")
	b.WriteString("Median per phase (ms) from the replicas' `request phases` lines (`SERVER_TIMING=1`); each phase runs " +
		"from the milestone before it to its own. `settle` runs after the answer is out. \"Outside the replica\" is " +
		"the client's latency minus the replica's own time to the answer (Server-Timing `total`): the HTTP hop both " +
		"ways and the client. For comparison, the direct path's CLI: `spawn` is exec.Command to Start returning, " +
		"`first_byte` and `exit` as under the gateway.\n\n")
	b.WriteString("| phase | what |")
	sep := "| --- | --- |"
	for _, r := range results {
		fmt.Fprintf(&b, " %d/s |", r.rate)
		sep += " ---: |"
		if o.rateLimitCost {
			fmt.Fprintf(&b, " %d/s, rate limit on |", r.rate)
			sep += " ---: |"
		}
		fmt.Fprintf(&b, " %d/s, CLI run directly |", r.rate)
		sep += " ---: |"
	}
	b.WriteString("\n" + sep + "\n")
	for _, p := range phaseOrder {
		fmt.Fprintf(&b, "| %s | %s |", p, phaseHelp[p])
		for _, r := range results {
			fmt.Fprintf(&b, " %.3f |", median(r.phases[p]))
			if o.rateLimitCost {
				fmt.Fprintf(&b, " %.3f |", median(r.limPhases[p]))
			}
			if v, ok := r.cli[p]; ok {
				fmt.Fprintf(&b, " %.3f |", median(v))
			} else {
				b.WriteString(" |")
			}
		}
		b.WriteString("\n")
	}
	b.WriteString("| total | in to settled |")
	for _, r := range results {
		fmt.Fprintf(&b, " %.3f |", median(r.phases["total"]))
		if o.rateLimitCost {
			fmt.Fprintf(&b, " %.3f |", median(r.limPhases["total"]))
		}
		b.WriteString(" |")
	}
	b.WriteString("\n| outside the replica | HTTP hop both ways, client |")
	for _, r := range results {
		fmt.Fprintf(&b, " %.3f |", float64(pct(r.gw.outside, 50).Microseconds())/1000)
		if o.rateLimitCost {
			fmt.Fprintf(&b, " %.3f |", float64(pct(r.limited.outside, 50).Microseconds())/1000)
		}
		b.WriteString(" |")
	}
	b.WriteString("\n\n")
	// Where the tail comes from: each phase's own p99.
	for _, r := range results {
		var parts []string
		for _, p := range append(append([]string{}, phaseOrder...), "total") {
			parts = append(parts, fmt.Sprintf("%s %.2f", p, quantile(r.phases[p], 0.99)))
		}
		parts = append(parts, fmt.Sprintf("outside %.2f", float64(pct(r.gw.outside, 99).Microseconds())/1000))
		var cli []string
		for _, p := range []string{"spawn", "first_byte", "exit"} {
			cli = append(cli, fmt.Sprintf("%s %.2f", p, quantile(r.cli[p], 0.99)))
		}
		fmt.Fprintf(&b, "p99 of each phase through the gateway at %d/s (ms): %s; the CLI run directly: %s.\n\n",
			r.rate, strings.Join(parts, ", "), strings.Join(cli, ", "))
	}
	if top != "" {
		fmt.Fprintf(&b, "CPU profile of replica 0 during the %d/s load (all paths' turns; `go tool pprof -top -cum`):\n\n```\n%s\n```\n\n",
			results[len(results)-1].rate, top)
	}
	b.WriteString("The direct path starts the fake CLI with the gateway's arguments (the sandboxed stream-json run), " +
		"writes the prompt on stdin and reads the stream to its result line; the fake CLI sends its text at once " +
		"on every path. The gateway path adds HTTP, authentication, the allocation script, the conversation read, " +
		"the script that stores the turn and its CLI session, the OpenAI encoding and, after the answer, the " +
		"settlement script. Latencies are per " +
		"request, from send to the last byte.\n")
	return b.String()
}

// targets states issue 14's targets — the gateway adds at most 1 ms at p50
// at 10 requests/s and at most 2 ms at p99 at 50 requests/s — and what
// the phases say weighs most.
func targets(results []result) string {
	var b strings.Builder
	for _, t := range []struct {
		rate  int
		q     float64
		limit time.Duration
	}{{10, 50, time.Millisecond}, {50, 99, 2 * time.Millisecond}} {
		for _, r := range results {
			if r.rate != t.rate {
				continue
			}
			got := r.gw.p(t.q) - r.direct.p(t.q)
			verdict := "**met**"
			if got > t.limit {
				verdict = "**not met**"
			}
			fmt.Fprintf(&b, "- Target: the gateway adds at most %s at p%.0f at %d requests/s — %s (%s).\n",
				ms(t.limit), t.q, t.rate, verdict, signedMS(got))
		}
	}
	for _, r := range results {
		// The replica's own steps before the answer, heaviest first.
		type ph struct {
			name string
			ms   float64
		}
		var own []ph
		sum := 0.0
		for _, p := range phaseOrder {
			switch p {
			case "spawn", "first_byte", "exit", "settle":
				continue
			}
			m := median(r.phases[p])
			own = append(own, ph{p, m})
			sum += m
		}
		slices.SortFunc(own, func(a, b ph) int { return cmp.Compare(b.ms, a.ms) })
		var parts []string
		for _, p := range own[:min(3, len(own))] {
			parts = append(parts, fmt.Sprintf("%s %.2f", p.name, p.ms))
		}
		cli, direct := 0.0, 0.0
		for _, p := range []string{"spawn", "first_byte", "exit"} {
			cli += median(r.phases[p])
			direct += median(r.cli[p])
		}
		fmt.Fprintf(&b, "- At %d/s, before the answer: the replica's own steps take %.2f ms (medians; %s ms), "+
			"the CLI (spawn to exit) %+.2f ms against the CLI run directly, and the HTTP hop with the client %s; "+
			"the settle (%.2f ms) follows the answer.\n", r.rate, sum, strings.Join(parts, ", "), cli-direct,
			ms(pct(r.gw.outside, 50)), median(r.phases["settle"]))
	}
	return b.String()
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }

func signedMS(d time.Duration) string { return fmt.Sprintf("%+.2f ms", float64(d.Microseconds())/1000) }
