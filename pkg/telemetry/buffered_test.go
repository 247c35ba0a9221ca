package telemetry

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/authpool/authpool/internal/testutil"
)

// TestBufferedWriter (issue 14): lines are held back until the periodic
// flush, a warning leaves at once, and Close writes out every line left:
// none is lost on a clean shutdown.
func TestBufferedWriter(t *testing.T) {
	out := &testutil.Buffer{}
	bw := NewBufferedWriter(out, time.Hour) // no periodic flush during the test
	log := NewLogger(LogConfig{JSON: true}, bw, "test")
	for i := 0; i < 100; i++ {
		log.Info("request", "n", i)
	}
	if out.String() != "" {
		t.Fatalf("info lines written before a flush:\n%s", out)
	}
	log.Warn("something odd")
	if got := strings.Count(out.String(), "\n"); got != 101 {
		t.Fatalf("a warning flushed %d lines, want 101", got)
	}
	log.Info("last")
	if err := bw.Close(); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	if strings.Count(s, "\n") != 102 || !strings.Contains(s, `"message":"last"`) {
		t.Fatalf("after Close: %d lines, want 102 ending with last", strings.Count(s, "\n"))
	}
	log.Info("after close")
	if !strings.Contains(out.String(), "after close") {
		t.Error("a line after Close was held back")
	}
}

// TestBufferedWriterFlushesPeriodically: a quiet log still leaves within
// the interval.
func TestBufferedWriterFlushesPeriodically(t *testing.T) {
	out := &testutil.Buffer{}
	bw := NewBufferedWriter(out, 20*time.Millisecond)
	defer bw.Close()
	fmt.Fprintln(bw, "one line")
	testutil.Eventually(t, 2*time.Second, "the periodic flush", func() bool { return out.String() == "one line\n" })
}
