package main

import (
	"fmt"
	"runtime"
	"slices"
	"strings"
	"time"
)

// renderIn is what a run measured, for render.
type renderIn struct {
	cycles          []cycle
	refMean, refMax time.Duration
	fillAllocate    time.Duration
	allocated       int
	// allocMean and allocMax are SLOWLOG's figures of allocate's EVALSHAs.
	allocMean, allocMax time.Duration
	fillDirect          time.Duration
	fillAge             time.Duration
	stale, active       int
	perSession          float64
	redisV              string
}

func render(p params, in renderIn) string {
	var b strings.Builder
	ms := func(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }
	ratio := func(d time.Duration) string { return fmt.Sprintf("%.0f×", float64(d)/float64(in.refMean)) }
	b.WriteString("## The rebalancer's cycle at scale\n\n")
	fmt.Fprintf(&b, "Command: `go run ./tests/cyclebench -out BENCHMARKS.md` (flags: `-subs %d -sessions %d -cycles %d -stale %d -active %d`).\n",
		p.subs, p.sessions, p.cycles, p.stalePct, p.activePct)
	fmt.Fprintf(&b, "Redis %s on loopback, Go %s, %d CPUs (client and server share them). "+
		"The fill binds %d sessions over %d subscriptions: the first %d through the pool's own allocate script (`Pool.Allocate`, %d goroutines: %s, **%.0f new bindings/s at %d subscriptions**; %.2f ms of Redis time per allocate on average (INFO commandstats), %.2f ms the longest (SLOWLOG)), "+
		"the rest by a faithful direct write of the same keys (session hash with allocate's fields and TTL, client-set member; pipelined: %s); %.0f bytes of `used_memory` per session; "+
		"then the client-set scores alone are rewritten directly (`ZADD XX`, pipelined, %s) so that %d sessions are stale (past `staleAfterSeconds`), %d active and the rest idle. "+
		"One `settle` of 100 USD on `sub000` opens a weekly-usage gap, so every Rebalance has moves to make.\n\n",
		in.redisV, runtime.Version(), runtime.NumCPU(), p.sessions, p.subs, in.allocated, p.conc, in.fillAllocate.Round(time.Millisecond),
		float64(in.allocated)/in.fillAllocate.Seconds(), p.subs,
		float64(in.allocMean.Microseconds())/1000, float64(in.allocMax.Microseconds())/1000, in.fillDirect.Round(time.Millisecond), in.perSession, in.fillAge.Round(time.Millisecond), in.stale, in.active)
	fmt.Fprintf(&b, "A cycle is `Pool.Maintain(epoch)` then `Pool.Rebalance(epoch)`, as the leader runs them every `intervalSeconds`. "+
		"The reference is a trivial `EVALSHA` (`return 1`) through the same client, sequential: median %.1f µs, longest %.1f µs over 2000 calls. "+
		"\"script (client)\" is the longest single `EVALSHA` of the phase timed around the call (round trip included); "+
		"\"script (SLOWLOG)\" is Redis' own execution time of it, during which that shard serves nobody else "+
		"(SLOWLOG from 50 µs on, so that the commands inside a script are not logged, and timed, one by one).\n\n",
		float64(in.refMean.Nanoseconds())/1000, float64(in.refMax.Nanoseconds())/1000)

	first := in.cycles[0]
	rest := in.cycles[1:]
	if len(rest) == 0 {
		rest = in.cycles
	}
	pick := func(f func(cycle) time.Duration) (med, mx time.Duration) {
		var ds []time.Duration
		for _, c := range rest {
			ds = append(ds, f(c))
		}
		slices.Sort(ds)
		return ds[len(ds)/2], ds[len(ds)-1]
	}
	b.WriteString("| measure | first cycle (drops the stale sessions) | later cycles, median | later cycles, max | ratio to trivial EVALSHA (first / median) | target |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|\n")
	row := func(name string, f func(cycle) time.Duration, target string) {
		med, mx := pick(f)
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s / %s | %s |\n", name, ms(f(first)), ms(med), ms(mx), ratio(f(first)), ratio(med), target)
	}
	row("cycle wall time", cycle.wall, "< 50 ms")
	row("Maintain", func(c cycle) time.Duration { return c.maintain }, "")
	row("Rebalance", func(c cycle) time.Duration { return c.rebalance }, "")
	row("longest script, Maintain (client)", func(c cycle) time.Duration { return c.maintainScript }, "< 5 ms")
	row("longest script, Maintain (SLOWLOG)", func(c cycle) time.Duration { return c.maintainSlow }, "< 5 ms")
	row("longest script, Rebalance (client)", func(c cycle) time.Duration { return c.rebalanceScript }, "< 5 ms")
	row("longest script, Rebalance (SLOWLOG)", func(c cycle) time.Duration { return c.rebalanceSlow }, "< 5 ms")
	moved := 0
	for _, c := range in.cycles {
		moved += c.moved
	}
	fmt.Fprintf(&b, "\nThe first Maintain dropped %d stale sessions; the %d cycles moved %d idle sessions in all.\n\n", first.dropped, len(in.cycles), moved)

	var over []string
	worstCycle, worstScript := time.Duration(0), time.Duration(0)
	for _, c := range in.cycles {
		worstCycle = max(worstCycle, c.wall())
		worstScript = max(worstScript, c.maintainScript, c.rebalanceScript, c.maintainSlow, c.rebalanceSlow)
	}
	if worstCycle >= targetCycle {
		over = append(over, fmt.Sprintf("a cycle took %s (target < %s)", ms(worstCycle), ms(targetCycle)))
	}
	if worstScript >= targetScript {
		over = append(over, fmt.Sprintf("a single script call took %s (target < %s)", ms(worstScript), ms(targetScript)))
	}
	if len(over) == 0 {
		fmt.Fprintf(&b, "**Targets met:** every cycle under %s and every script call under %s in this run.\n", ms(targetCycle), ms(targetScript))
	} else {
		fmt.Fprintf(&b, "**Targets missed:** %s. ", strings.Join(over, "; "))
		b.WriteString("Where the time goes: each `maintain.lua` call reads and restores every subscription's state; the " +
			"stale drops are chunked (at most 500 a call, the client-set entries lowest first by one `ZREMRANGEBYRANK`), and the " +
			"last call of a cycle also scores every subscription for the allocation ranking; " +
			"the first binding after a config sync scores every subscription once.\n")
	}
	fmt.Fprintf(&b, "\nNot part of the cycle but on the same shard: allocate's new-bind path, "+
		"%.2f ms of Redis time per new session at %d subscriptions, %.2f ms the longest under 64 callers",
		float64(in.allocMean.Microseconds())/1000, p.subs, float64(in.allocMax.Microseconds())/1000)
	if in.allocMax >= targetScript {
		b.WriteString(" — also over 5 ms at its longest")
	}
	b.WriteString(". It examines the subscriptions in the order of the allocation ranking (`authpool:{P}:rank`) and stops " +
		"once none left can beat the best eligible one; the first binding after a sync scores every subscription once " +
		"(the longest call). A resumed session's turn reads only its own subscription's state.\n")
	return b.String()
}
