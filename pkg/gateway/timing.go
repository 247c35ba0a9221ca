package gateway

import (
	"context"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/authpool/authpool/pkg/backend"
)

// HeaderServerTiming is the standard Server-Timing response header, sent
// with ServerTiming on.
const HeaderServerTiming = "Server-Timing"

// A milestone of a request: each phase of the breakdown ends at one. The
// backend's own (process started, first output, exited) come from
// backend.RunTimes.
type milestone int

const (
	msIn     milestone = iota // the API's middleware reached: HTTP read, routing, request id
	msAuth                    // authentication and the rate limit done
	msDecode                  // body decoded and validated, session known
	msAlloc                   // allocated
	msConvo                   // stored conversation read; the backend is called
	msSpawn                   // the CLI process started
	msFirst                   // its first line of output
	msExit                    // it exited
	msParse                   // its result parsed, the backend returned
	msStore                   // the turn stored and its CLI session recorded (before the answer)
	msEncode                  // the answer written and flushed
	msSettle                  // usage settled (after the answer)
	numMilestones
)

var milestoneNames = [numMilestones]string{"in", "auth", "decode", "alloc", "convo", "spawn", "first_byte",
	"exit", "parse", "store", "encode", "settle"}

// timings are one request's milestones, as monotonic times; recorded only
// with Options.ServerTiming. Marks come from the request's goroutine, then
// (the settle) from the goroutine that runs after the answer, which starts
// after every other mark.
type timings struct {
	start    time.Time
	at       [numMilestones]time.Time
	run      backend.RunTimes
	deferred bool // the settle runs after the answer: it logs the phases
}

type timingsKey struct{}

// timingsOf is the request's timings, or nil when they are not recorded.
func timingsOf(ctx context.Context) *timings {
	t, _ := ctx.Value(timingsKey{}).(*timings)
	return t
}

func (t *timings) mark(m milestone) {
	if t != nil {
		t.at[m] = time.Now()
	}
}

// phase is one step of the breakdown: the time from the milestone before it
// (in time) to its own.
type phase struct {
	name string
	dur  time.Duration
}

// phases are the milestones reached so far, in the order reached, each with
// its duration, and the total since the request came in.
func (t *timings) phases() ([]phase, time.Duration) {
	at := t.at
	at[msSpawn], at[msFirst], at[msExit] = t.run.Started, t.run.FirstByte, t.run.Exited
	idx := make([]int, 0, numMilestones)
	for i := range at {
		if !at[i].IsZero() {
			idx = append(idx, i)
		}
	}
	slices.SortStableFunc(idx, func(a, b int) int { return at[a].Compare(at[b]) })
	out := make([]phase, 0, len(idx))
	prev := t.start
	for _, i := range idx {
		out = append(out, phase{name: milestoneNames[i], dur: at[i].Sub(prev)})
		prev = at[i]
	}
	return out, prev.Sub(t.start)
}

// header is the Server-Timing value of what is known now.
func (t *timings) header() string {
	ps, _ := t.phases()
	b := make([]byte, 0, 256)
	for _, p := range ps {
		b = appendTiming(b, p.name, p.dur)
	}
	return string(appendTiming(b, "total", time.Since(t.start)))
}

func appendTiming(b []byte, name string, d time.Duration) []byte {
	if len(b) > 0 {
		b = append(b, ", "...)
	}
	b = append(b, name...)
	b = append(b, ";dur="...)
	return strconv.AppendFloat(b, float64(d.Nanoseconds())/1e6, 'f', 3, 64)
}

// log writes the request's whole breakdown in one line (ms per phase).
func (t *timings) log(ctx context.Context, l *slog.Logger, reqID string) {
	ps, total := t.phases()
	attrs := make([]slog.Attr, 0, len(ps)+2)
	attrs = append(attrs, slog.String("request_id", reqID))
	for _, p := range ps {
		attrs = append(attrs, slog.Float64(p.name+"_ms", ms(p.dur)))
	}
	attrs = append(attrs, slog.Float64("total_ms", ms(total)))
	l.LogAttrs(ctx, slog.LevelInfo, "request phases", attrs...)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// startTimings is the first middleware with ServerTiming on: it starts the
// request's timings and, when nothing runs after the answer, logs them
// once the request is done.
func (s *Server) startTimings(c *gin.Context) {
	t := &timings{start: time.Now()}
	ctx := context.WithValue(c.Request.Context(), timingsKey{}, t)
	c.Request = c.Request.WithContext(backend.WithRunTimes(ctx, &t.run))
	c.Next()
	if !t.deferred && c.FullPath() != "" && traced(c.Request) {
		t.log(c.Request.Context(), s.log, c.GetString(ctxRequestID))
	}
}

// markTiming marks a milestone of the request in c, if recorded.
func markTiming(c *gin.Context, m milestone) { timingsOf(c.Request.Context()).mark(m) }

// setServerTiming adds the Server-Timing header for what is known when the
// headers go out.
func setServerTiming(ctx context.Context, h http.Header) {
	if t := timingsOf(ctx); t != nil {
		h.Set(HeaderServerTiming, t.header())
	}
}
