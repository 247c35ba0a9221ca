package pool_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/authpool/authpool/internal/pooltest"
	"github.com/authpool/authpool/internal/redistest"

	. "github.com/authpool/authpool/pkg/pool"
)

// Two replicas report a subscription's crashes: the cooldown trips at the
// threshold counted across both (one replica alone saw fewer), and a success
// on either, in between, starts the count again.
func TestFailuresCountAcrossReplicas(t *testing.T) {
	redistest.EachParallel(t, func(t *testing.T, tg *redistest.Target) {
		ctx := context.Background()
		cfg := pooltest.Config(2, 100, 5)
		cfg.Pool = tg.Pool // the replicas share it; other tests keep out
		a := New(tg.Client, cfg, Options{FailureThreshold: 3, Cooldown: 10 * time.Minute})
		if err := a.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		b := New(tg.Client, cfg, Options{FailureThreshold: 3, Cooldown: 10 * time.Minute})
		fail := func(p *Pool, want int, tripped bool) FailureResult {
			t.Helper()
			r, err := p.Failed(ctx, "sub00")
			if err != nil {
				t.Fatal(err)
			}
			if r.Failures != want || r.Tripped != tripped {
				t.Fatalf("failed: %+v, want failures %d, tripped %v", r, want, tripped)
			}
			return r
		}
		fail(a, 1, false)
		fail(b, 2, false)
		if err := a.Succeeded(ctx, "sub00"); err != nil {
			t.Fatal(err)
		}
		fail(b, 1, false)
		fail(a, 2, false)
		if st := subStatus(t, a, "sub00"); st.Status != StatusAvailable {
			t.Fatalf("after 2 failures in a row: %s, want available", st.Status)
		}
		before := time.Now()
		r := fail(b, 0, true)
		if r.Status != StatusCooldown || r.Until.Before(before.Add(9*time.Minute)) {
			t.Fatalf("tripped: %+v, want cooldown for the pool's 10 minutes", r)
		}
		st := subStatus(t, a, "sub00")
		if st.Status != StatusCooldown || st.StatusReason != "failures" {
			t.Fatalf("sub00 = %s (%s), want cooldown (failures)", st.Status, st.StatusReason)
		}
		if st := subStatus(t, a, "sub01"); st.Status != StatusAvailable {
			t.Errorf("sub01 = %s: another subscription's failures counted", st.Status)
		}
		// A trip starts a new run; more failures while it cools down do not
		// write a second event.
		fail(a, 1, false)
		fail(b, 2, false)
		fail(a, 0, false)
		if n := len(events(t, tg, a, "limit_reached")); n != 1 {
			t.Errorf("%d limit_reached events, want 1", n)
		}
	})
}

// The cooldown a run of failures trips writes the event Mark writes for
// reason "failures", so notification rules and receivers see one shape.
func TestFailuresTripWritesMarksEvent(t *testing.T) {
	tg := redistest.Mini(t)
	ctx := context.Background()
	newClock(tg, time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)) // both scripts read one instant
	p := New(tg.Client, pooltest.Config(2, 100, 5), Options{FailureThreshold: 1})
	if err := p.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Failed(ctx, "sub00"); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Mark(ctx, "sub01", StatusCooldown, "failures", time.Time{}); err != nil {
		t.Fatal(err)
	}
	ev := events(t, tg, p, "limit_reached")
	if len(ev) != 2 {
		t.Fatalf("%d events, want 2", len(ev))
	}
	failed, marked := ev[0], ev[1]
	if failed["severity"] != marked["severity"] || failed["subscriptionId"] != "sub00" {
		t.Errorf("events differ: %v and %v", failed, marked)
	}
	if got, want := failed["message"], strings.ReplaceAll(marked["message"].(string), "sub01", "sub00"); got != want {
		t.Errorf("message %q, Mark's %q", got, want)
	}
	var fd, md map[string]any
	if err := json.Unmarshal([]byte(failed["data"].(string)), &fd); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(marked["data"].(string)), &md); err != nil {
		t.Fatal(err)
	}
	if len(fd) != len(md) || fd["status"] != "cooldown" || fd["reason"] != "failures" ||
		fd["previousStatus"] != md["previousStatus"] || fd["until"] != md["until"] {
		t.Errorf("data %v, Mark's %v", fd, md)
	}
}

func TestFailuresOfUnknownSubscription(t *testing.T) {
	tg := redistest.Mini(t)
	p := newPool(t, tg, pooltest.Config(1, 100, 5))
	if _, err := p.Failed(context.Background(), "nope"); err == nil {
		t.Fatal("failure of an unknown subscription counted")
	}
}
