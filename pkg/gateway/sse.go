package gateway

import (
	"encoding/json"
	"net/http"
	"sync"
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
