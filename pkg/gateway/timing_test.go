package gateway

import (
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/authpool/authpool/internal/testutil"
)

// TestServerTiming (issue 14): with ServerTiming on, an answer carries a
// Server-Timing header with the phases known when it went out, and the
// request's whole breakdown, settle included, is logged once it settled;
// off (the default), neither.
func TestServerTiming(t *testing.T) {
	for _, on := range []bool{true, false} {
		logs := &testutil.Buffer{}
		h := newHarness(t, harnessOpts{subs: 1, opts: Options{ServerTiming: on,
			Logger: slog.New(slog.NewTextHandler(logs, nil))}})
		for _, stream := range []bool{false, true} {
			resp := h.do("POST", "/v1/chat/completions", map[string]any{"session_id": "timed", "stream": stream,
				"messages": msgs(user("hi"))})
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			st := resp.Header.Get(HeaderServerTiming)
			if !on {
				if st != "" {
					t.Errorf("off: Server-Timing %q", st)
				}
				continue
			}
			want := []string{"in;dur=", "auth;dur=", "decode;dur=", "alloc;dur=", "convo;dur=", "total;dur="}
			if !stream {
				want = append(want, "parse;dur=")
			}
			for _, w := range want {
				if !strings.Contains(st, w) {
					t.Errorf("stream %t: Server-Timing %q lacks %s", stream, st, w)
				}
			}
		}
		h.settled()
		n := strings.Count(logs.String(), "request phases")
		if on && (n != 2 || !strings.Contains(logs.String(), "settle_ms=")) {
			t.Errorf("on: %d phase lines, want 2 with settle_ms:\n%s", n, logs)
		}
		if !on && n != 0 {
			t.Errorf("off: %d phase lines", n)
		}
	}
}
