package backoff

import (
	"context"
	"testing"
	"time"
)

func TestExpDoublesToTheCap(t *testing.T) {
	base, limit := 100*time.Millisecond, time.Second
	for i, want := range []time.Duration{100, 100, 200, 400, 800, 1000, 1000} {
		if got := Exp(i, base, limit); got != want*time.Millisecond {
			t.Errorf("Exp(%d) = %v, want %v", i, got, want*time.Millisecond)
		}
	}
	if got := Exp(1000, base, limit); got != limit {
		t.Errorf("Exp(1000) = %v, want the cap", got)
	}
	if got := Exp(3, base, 0); got != base {
		t.Errorf("a cap under base: %v, want base", got)
	}
}

func TestNextIsEqualJitter(t *testing.T) {
	base, limit := 100*time.Millisecond, 5*time.Second
	for attempt := 1; attempt <= 8; attempt++ {
		d := Exp(attempt, base, limit)
		seen := map[time.Duration]bool{}
		for range 200 {
			w := Next(attempt, base, limit)
			if w < d/2 || w > d {
				t.Fatalf("Next(%d) = %v, want within [%v, %v]", attempt, w, d/2, d)
			}
			seen[w] = true
		}
		if len(seen) < 2 {
			t.Errorf("Next(%d) never varied: %v", attempt, seen)
		}
	}
	if Jitter(0) != 0 || Jitter(1) != 1 {
		t.Error("tiny waits are not jittered")
	}
}

func TestSleep(t *testing.T) {
	wake := make(chan struct{}, 1)
	wake <- struct{}{}
	start := time.Now()
	if !Sleep(context.Background(), time.Hour, wake) || time.Since(start) > time.Second {
		t.Fatal("a wake did not end the wait")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if Sleep(ctx, time.Hour, nil) {
		t.Fatal("an ended context reported true")
	}
	if Sleep(ctx, 0, nil) || !Sleep(context.Background(), 0, nil) {
		t.Fatal("no wait: the context's state is the answer")
	}
	if !Sleep(context.Background(), time.Millisecond, nil) {
		t.Fatal("a plain wait reported false")
	}
}
