package backend

import (
	"bytes"
	"testing"
	"time"
)

// TestRateLimitEventShapes decodes every shape of the fixture: missing
// fields, an integer utilization, unifiedWindows with and without a
// top-level utilization, and a bare event.
func TestRateLimitEventShapes(t *testing.T) {
	d := NewStreamDecoder(nil)
	for _, line := range bytes.Split(fixture(t, "rate-limit-events.jsonl"), []byte("\n")) {
		if err := d.Line(line); err != nil {
			t.Fatal(err)
		}
	}
	rls := d.RateLimits()
	if len(rls) != 5 { // the bare event says nothing and is passed over
		t.Fatalf("decoded %d events, want 5: %+v", len(rls), rls)
	}
	at := func(s int64) time.Time { return time.Unix(s, 0).UTC() }
	if r := rls[0]; r.Status != RateLimitAllowed || r.Window != WindowFiveHour || !r.ResetsAt.Equal(at(1796050800)) ||
		r.Utilization != nil || r.Windows != nil {
		t.Errorf("allowed five_hour without utilization = %+v", r)
	}
	if r := rls[1]; r.Status != RateLimitWarning || r.Window != WindowSevenDay || r.Utilization == nil || *r.Utilization != 0.86 {
		t.Errorf("allowed_warning seven_day 0.86 = %+v", r)
	}
	if w := rls[2].Windows; len(w) != 2 || *w[WindowFiveHour].Utilization != 0.42 || !w[WindowSevenDay].ResetsAt.Equal(at(1796400000)) {
		t.Errorf("unifiedWindows without a top-level utilization = %+v", w)
	}
	if r := rls[3]; r.Status != RateLimitRejected || *r.Windows[WindowFiveHour].Utilization != 1 {
		t.Errorf("rejected with the integer utilization 1 = %+v", r)
	}
	if r, ok := rejection(rls); !ok || r.Window != WindowSevenDay {
		t.Errorf("rejection = %+v, %v; want the last rejected (seven_day)", r, ok)
	}
}

func TestRateLimitValuesAreBounded(t *testing.T) {
	d := NewStreamDecoder(nil)
	_ = d.Line([]byte(`{"type":"rate_limit_event","rate_limit_info":{"status":"allowed","resetsAt":1e300,"utilization":7}}`))
	_ = d.Line([]byte(`{"type":"rate_limit_event","rate_limit_info":{"resetsAt":-5,"utilization":-1}}`))
	_ = d.Line([]byte(`{"type":"rate_limit_event","rate_limit_info":{}}`))
	_ = d.Line([]byte(`{"type":"rate_limit_event","rate_limit_info":{"status":"allowed\u001b[2J<script>"}}`))
	rls := d.RateLimits()
	if len(rls) != 4 || rls[2].Status != "" || rls[2].Utilization != nil || !rls[2].ResetsAt.IsZero() {
		t.Fatalf("readings = %+v; want four, the third empty", rls)
	}
	if rls[3].Status != "" {
		t.Errorf("an unknown status kept as %q", rls[3].Status)
	}
	if !rls[0].ResetsAt.IsZero() || *rls[0].Utilization != 1 || !rls[1].ResetsAt.IsZero() || *rls[1].Utilization != 0 {
		t.Errorf("out-of-range readings kept as %+v", rls)
	}
}
