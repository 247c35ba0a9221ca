package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/gin-gonic/gin"

	"github.com/authpool/authpool/pkg/backend"
)

// sseWriter writes server-sent events. The status line and headers go out
// with the first event, so a request that fails before any text was produced
// (a limit answer retried elsewhere, an exhausted pool) still gets a plain
// JSON error with the right status.
type sseWriter struct {
	mu      sync.Mutex
	w       http.ResponseWriter
	rc      *http.ResponseController
	header  func(http.Header) // adds headers known only when the stream starts
	started bool
	failed  error // the first write error: the client is gone
}

func newSSEWriter(w http.ResponseWriter, header func(http.Header)) *sseWriter {
	return &sseWriter{w: w, rc: http.NewResponseController(w), header: header}
}

// Started reports whether anything was sent.
func (s *sseWriter) Started() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.started
}

func (s *sseWriter) start() {
	if s.started {
		return
	}
	s.started = true
	h := s.w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	h.Set("Connection", "keep-alive")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	if s.header != nil {
		s.header(h)
	}
	s.w.WriteHeader(http.StatusOK)
}

// Event sends v as one `data:` event and flushes it.
func (s *sseWriter) Event(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return s.raw("", b)
}

// Named sends v as one event of the given type (`event:` then `data:`), the
// framing of Anthropic's stream.
func (s *sseWriter) Named(event string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return s.raw(event, b)
}

// NamedRaw sends data, already JSON, as one event of the given type.
func (s *sseWriter) NamedRaw(event string, data []byte) error { return s.raw(event, data) }

// Done sends the terminating `data: [DONE]`.
func (s *sseWriter) Done() error { return s.raw("", []byte("[DONE]")) }

func (s *sseWriter) raw(event string, data []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failed != nil {
		return s.failed
	}
	s.start()
	buf := make([]byte, 0, len(event)+len(data)+16)
	if event != "" {
		buf = append(buf, "event: "...)
		buf = append(buf, event...)
		buf = append(buf, '\n')
	}
	buf = append(buf, "data: "...)
	buf = append(buf, data...)
	buf = append(buf, "\n\n"...)
	if _, err := s.w.Write(buf); err != nil {
		s.failed = err
		return err
	}
	if err := s.rc.Flush(); err != nil {
		s.failed = err
		return err
	}
	return nil
}

// streamFrame is what a dialect writes around the text of a streamed turn.
type streamFrame struct {
	open  func()                  // before the first text: the role chunk, message_start, …
	delta func(text string) error // one text delta; an error means the client is gone
	fail  func(err error)         // a failure after the stream started
}

// streamTurn runs a streaming turn for either dialect. Nothing is sent
// before the first delta, so a failure before it is a plain JSON error (and
// a limit answer can still be retried elsewhere); the headers leave with
// the first delta, reporting the stored conversation's truncation before
// this turn. A backend that could not stream still gives the whole answer
// as one delta. It returns the result, with the frame opened and every
// delta written, for the dialect to close; nil when the error is written.
func (s *Server) streamTurn(c *gin.Context, t *turn, sid string,
	frame func(*sseWriter) streamFrame) (*backend.Result, placement, *sseWriter) {
	ctx, cancel := context.WithCancel(c.Request.Context())
	defer cancel()
	var pl placement
	w := newSSEWriter(c.Writer, func(h http.Header) {
		h.Set(HeaderAllocation, pl.kind)
		if pl.truncated {
			h.Set(HeaderConversationTruncated, "true")
		}
		setServerTiming(ctx, h)
	})
	f := frame(w)
	var texted atomic.Bool
	onDelta := func(text string) {
		if text == "" {
			return
		}
		if !w.Started() {
			f.open()
		}
		texted.Store(true)
		if err := f.delta(text); err != nil {
			cancel() // the client is gone: stop the backend
		}
	}
	res, after, err := s.serve(ctx, t, sid, c.GetString(ctxRequestID), &pl, onDelta, w.Started)
	setAfter(c, after)
	c.Set(ctxAlloc, pl.kind)
	c.Set(ctxSub, pl.sub)
	if err != nil {
		if !w.Started() {
			writeError(c, err)
		} else {
			c.Set(ctxError, err)
			f.fail(err)
		}
		return nil, pl, w
	}
	if !w.Started() {
		f.open()
	}
	if !texted.Load() && res.Text != "" {
		_ = f.delta(res.Text)
	}
	return res, pl, w
}
