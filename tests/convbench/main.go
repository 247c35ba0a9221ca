// Command convbench measures what a session's stored conversation costs in
// Redis (issue 10): it starts a redis-server of its own, appends turns to
// sessions through the pool exactly as the gateway does, and reads
// MEMORY USAGE of each session's :turns list (and of the per-turn append
// markers), reported as bytes per KiB of conversation text.
//
//	go run ./tests/convbench            # prints the Markdown section
//	go run ./tests/convbench -out BENCHMARKS.md
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"strings"

	"github.com/authpool/authpool/internal/benchdoc"
	"github.com/authpool/authpool/internal/redistest"
	"github.com/authpool/authpool/pkg/lua"
	"github.com/authpool/authpool/pkg/pool"
	"github.com/redis/go-redis/v9"
)

func main() {
	var (
		sessions = flag.Int("sessions", 100, "sessions per turn size")
		turns    = flag.Int("turns", 20, "turns per session")
		out      = flag.String("out", "", "write the report into this Markdown file (replacing its convbench section)")
	)
	flag.Parse()
	if err := run(*sessions, *turns, *out); err != nil {
		fmt.Fprintln(os.Stderr, "convbench:", err)
		os.Exit(1)
	}
}

// sizes are the text bytes of one turn (user + answer, 1:3), from a chat
// line to a long answer.
var sizes = []int{256, 1024, 4096}

type row struct {
	size                    int
	listBytes, textBytes    int64
	perTurn, perKiB, marker float64
}

func run(sessions, turns int, out string) error {
	ctx := context.Background()
	srv, err := redistest.StartServer()
	if err != nil {
		return err
	}
	defer srv.Stop()
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer rdb.Close()
	version, err := benchdoc.RedisVersion(ctx, rdb)
	if err != nil {
		return err
	}
	cfg := &pool.Config{Pool: "convbench", Subscriptions: []pool.SubscriptionConfig{{ID: "sub1",
		Email: "u@example.com", Type: "claude-max", ConfigDir: "/srv/claude/sub1", WeeklyBudget: 1000}}}
	p := pool.New(rdb, cfg, pool.Options{})
	// The keys are read here only to measure them: no pool method needs to
	// say how much memory a key takes.
	keys := lua.NewKeys(p.Config().Pool)
	if err := p.Sync(ctx); err != nil {
		return err
	}
	r := rand.New(rand.NewPCG(1, 2))
	text := func(n int) string {
		const letters = "abcdefghijklmnopqrstuvwxyz      "
		b := make([]byte, n)
		for i := range b {
			b[i] = letters[r.IntN(len(letters))]
		}
		return string(b)
	}
	var rows []row
	for _, size := range sizes {
		rw := row{size: size}
		var markers int64
		for s := 0; s < sessions; s++ {
			sid := fmt.Sprintf("bench-%d-%d", size, s)
			if _, err := p.Allocate(ctx, sid, pool.PriorityNormal); err != nil {
				return err
			}
			for i := 0; i < turns; i++ {
				u, a := text(size/4), text(size-size/4)
				// The gateway's settlement ids are UUIDs: the same length here.
				turnID := fmt.Sprintf("%08x-%04x-4000-8000-%012x", size, s, i)
				ap, err := p.AppendTurn(ctx, pool.TurnRecord{SessionID: sid, TurnID: turnID, User: u, Assistant: a})
				if err != nil {
					return err
				}
				if ap.Dropped > 0 || ap.Clipped {
					return fmt.Errorf("%s: the bound dropped turns; lower -turns", sid)
				}
				rw.textBytes += int64(len(u) + len(a))
				if s == 0 {
					m, err := rdb.MemoryUsage(ctx, keys.TurnMarker(turnID), 0).Result()
					if err != nil {
						return err
					}
					markers += m
				}
			}
			n, err := rdb.MemoryUsage(ctx, keys.Turns(sid), 0).Result()
			if err != nil {
				return err
			}
			rw.listBytes += n
		}
		all := float64(sessions * turns)
		rw.perTurn = float64(rw.listBytes) / all
		rw.perKiB = float64(rw.listBytes) / (float64(rw.textBytes) / 1024)
		rw.marker = float64(markers) / float64(turns)
		rows = append(rows, rw)
	}

	var b strings.Builder
	fmt.Fprintf(&b, "## Stored conversations in Redis\n\n")
	fmt.Fprintf(&b, "Command: `go run ./tests/convbench -out BENCHMARKS.md` (flags: `-sessions %d -turns %d`).\n", sessions, turns)
	fmt.Fprintf(&b, "Redis %s, Go %s, %d CPUs. Each session gets %d turns through `Pool.AppendTurn` (the gateway's path: `conversation_append.lua`); "+
		"the text is plain ASCII (quotes, backslashes and control characters would add JSON escapes). "+
		"The reference is the text itself: a ratio of 1024 bytes per KiB would be free storage.\n\n",
		version, runtime.Version(), runtime.NumCPU(), turns)
	b.WriteString("| text per turn (user + answer) | `MEMORY USAGE` of the :turns list per turn | per KiB of conversation text | append marker per turn (24 h) |\n")
	b.WriteString("|---:|---:|---:|---:|\n")
	for _, rw := range rows {
		fmt.Fprintf(&b, "| %d B | %.0f B | **%.0f B** | %.0f B |\n", rw.size, rw.perTurn, rw.perKiB, rw.marker)
	}
	fmt.Fprintf(&b, "\nThe list holds each turn as one JSON string `{\"id\",\"u\",\"a\"}`: the overhead over the text is the "+
		"settlement id (36 bytes), the JSON around it and Redis' list encoding. A session at the default bound "+
		"(`conversationMaxBytes` 262144 bytes of stored JSON) costs at most about %.0f KiB; the append markers expire after 24 h.\n",
		262144*rows[len(rows)-1].perKiB/1024/1024)
	report := b.String()
	fmt.Print(report)
	if out != "" {
		return benchdoc.WriteSection(out, "convbench", report)
	}
	return nil
}
