package testutil

import (
	"strings"
	"sync"
	"testing"
	"time"
)

func TestParseMetrics(t *testing.T) {
	in := `# HELP authpool_allocations_total Allocations.
# TYPE authpool_allocations_total counter
authpool_allocations_total{priority="normal",result="bound"} 3
authpool_allocations_total{priority="low",result="bound"} 2

go_goroutines 12
authpool_latency_bucket{le="+Inf"} 1.5e+00
`
	got, err := ParseMetrics(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 || got[`authpool_allocations_total{priority="normal",result="bound"}`] != 3 ||
		got[`authpool_latency_bucket{le="+Inf"}`] != 1.5 {
		t.Errorf("parsed %v", got)
	}
	if Sum(got, "authpool_allocations_total") != 5 || Sum(got, `authpool_allocations_total{priority="low",result="bound"}`) != 2 {
		t.Errorf("sums of %v", got)
	}
	if _, err := ParseMetrics(strings.NewReader("novalue\n")); err == nil {
		t.Error("a line without a value parsed")
	}
}

func TestBufferAcrossGoroutines(t *testing.T) {
	var b Buffer
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				_, _ = b.Write([]byte("x"))
			}
		}()
	}
	wg.Wait()
	if n := len(b.String()); n != 800 {
		t.Fatalf("%d bytes, want 800", n)
	}
}

func TestWithin(t *testing.T) {
	start := time.Now()
	if !Within(time.Second, func() bool { return time.Since(start) > 30*time.Millisecond }) {
		t.Fatal("a condition that came true was missed")
	}
	if Within(30*time.Millisecond, func() bool { return false }) {
		t.Fatal("a false condition held")
	}
	if d := Eventually(t, time.Second, "now", func() bool { return true }); d > 100*time.Millisecond {
		t.Errorf("a true condition took %v", d)
	}
}
