// Package sentrytest is a local Sentry endpoint for tests: point a
// SENTRY_DSN at Sink.DSN and read back what the SDK sent.
package sentrytest

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// Sink is a local Sentry: it keeps every envelope the SDK posts, raw, and
// the event items in them.
type Sink struct {
	srv    *httptest.Server
	mu     sync.Mutex
	raw    []string
	events []map[string]any
}

// New starts a Sink that stops when the test ends.
func New(t testing.TB) *Sink {
	s := &Sink{}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body io.Reader = r.Body
		if r.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			body = zr
		}
		b, _ := io.ReadAll(body)
		s.mu.Lock()
		defer s.mu.Unlock()
		s.raw = append(s.raw, string(b))
		// An envelope is newline-separated JSON: a header, then item
		// header / payload pairs.
		lines := bytes.Split(b, []byte("\n"))
		for i := 1; i+1 < len(lines); i += 2 {
			var ih struct {
				Type string `json:"type"`
			}
			_ = json.Unmarshal(lines[i], &ih)
			if ih.Type != "event" {
				continue
			}
			var ev map[string]any
			if err := json.Unmarshal(lines[i+1], &ev); err == nil {
				s.events = append(s.events, ev)
			}
		}
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte(`{}`))
	}))
	t.Cleanup(s.srv.Close)
	return s
}

// DSN is a SENTRY_DSN that sends to the sink.
func (s *Sink) DSN() string {
	return "http://public@" + strings.TrimPrefix(s.srv.URL, "http://") + "/1"
}

// Snapshot returns the envelopes so far, joined, and their events.
func (s *Sink) Snapshot() (raw string, events []map[string]any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.raw, "\n"), append([]map[string]any(nil), s.events...)
}
