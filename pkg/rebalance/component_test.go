package rebalance

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/authpool/authpool/internal/redistest"
	"github.com/authpool/authpool/internal/testutil"
	"github.com/authpool/authpool/pkg/notify"
	"github.com/authpool/authpool/pkg/pool"
)

// The embedded default of cmd/api: one process, no election, the same loops.
func TestInProcessComponentRunsTheLoops(t *testing.T) {
	tg := shared(t)
	cfg := testConfig(2, 1000, 20)
	s := seed(t, tg, cfg, 3, 20)
	idle()
	var rec recorder
	c, err := New(Params{Pool: s.p, InProcess: true, Interval: 100 * time.Millisecond, Reporter: &rec})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(context.Background()); !errors.Is(err, ErrAlreadyRunning) {
		t.Fatalf("second start: %v", err)
	}
	testutil.Eventually(t, 3*time.Second, "moves", func() bool { return rec.moved() == 3 })
	if !c.IsLeader() || c.Epoch() < 1 || c.Leadership().Holder != DefaultInProcessHolder {
		t.Fatalf("leadership = %+v", c.Leadership())
	}
	if err := c.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if l := c.Leadership(); l.Leader || !errors.Is(l.Cause, ErrResigned) {
		t.Fatalf("after shutdown: %+v", l)
	}
}

// Start then Shutdown leaves no goroutine behind, election and deliverer
// included.
func TestComponentShutdownLeavesNoGoroutines(t *testing.T) {
	for _, inProcess := range []bool{false, true} {
		name := "elected"
		if inProcess {
			name = "in process"
		}
		t.Run(name, func(t *testing.T) {
			tg := redistest.Real(t)
			p := newPool(t, tg.Client, testConfig(2, 100, 10))
			d, err := notify.New(notify.Options{Events: p.Events(), Consumer: "rb-test",
				Logger: notify.SlogLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))})
			if err != nil {
				t.Fatal(err)
			}
			c, err := New(Params{Pool: p, Client: tg.Client, InProcess: inProcess, Holder: "rb-test", LockTTL: testTTL,
				Interval: 50 * time.Millisecond, Deliverer: d})
			if err != nil {
				t.Fatal(err)
			}
			before := runtime.NumGoroutine()
			if err := c.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			testutil.Eventually(t, 3*time.Second, "leadership", c.IsLeader)
			time.Sleep(testTTL / 2) // a few cycles and an extend
			if err := c.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
			if !testutil.Within(2*time.Second, func() bool { return runtime.NumGoroutine() <= before }) {
				after := runtime.NumGoroutine()
				buf := make([]byte, 1<<16)
				t.Fatalf("%d goroutines before Start, %d after Shutdown:\n%s", before, after,
					buf[:runtime.Stack(buf, true)])
			}
		})
	}
}

// Two elected Components: the leader's Shutdown hands over at once.
func TestComponentShutdownHandsOver(t *testing.T) {
	tg := shared(t)
	cfg := testConfig(2, 100, 10)
	cfg.Pool = tg.Pool
	var comps []*Component
	for _, h := range []string{"rb-a", "rb-b"} {
		c2, _ := newClient(t, tg.Addr)
		p := pool.New(c2, cfg, pool.Options{})
		c, err := New(Params{Pool: p, Client: c2, Holder: h, Interval: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Shutdown(context.Background()) })
		comps = append(comps, c)
	}
	testutil.Eventually(t, 3*time.Second, "a leader", func() bool { return comps[0].IsLeader() != comps[1].IsLeader() })
	leader, standby := comps[0], comps[1]
	if !leader.IsLeader() {
		leader, standby = standby, leader
	}
	old := leader.Epoch()
	if err := leader.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	took := testutil.Eventually(t, 2*time.Second, "the standby to lead", standby.IsLeader)
	if standby.Epoch() <= old {
		t.Fatalf("epoch %d not above %d", standby.Epoch(), old)
	}
	t.Logf("handed over in %s (lock TTL %s)", took, DefaultLockTTL)
}

func TestNewRejectsBadParams(t *testing.T) {
	tg := redistest.Mini(t)
	p := pool.New(tg.Client, testConfig(1, 100, 10), pool.Options{})
	for _, tc := range []struct {
		name string
		p    Params
	}{
		{"no pool", Params{Holder: "a"}},
		{"elected without holder", Params{Pool: p, Client: tg.Client}},
		{"elected without a lock client", Params{Pool: p, Holder: "a"}},
		{"bad holder in process", Params{Pool: p, InProcess: true, Holder: "a/b"}},
		{"negative interval", Params{Pool: p, Client: tg.Client, Holder: "a", Interval: -time.Second}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.p); !errors.Is(err, ErrInvalidParams) {
				t.Fatalf("err = %v, want ErrInvalidParams", err)
			}
		})
	}
	c, err := New(Params{Pool: p, Client: tg.Client, Holder: "a"})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Shutdown(context.Background()); err != nil {
		t.Fatalf("shutdown before start: %v", err)
	}
}

// The operator's log lines: the seeds' "Rebalancing needed: cost gap
// $10.00" and "Moved 2 clients from sub1 to sub2", structured.
func TestSlogReporterWritesTheSeedsLines(t *testing.T) {
	var buf bytes.Buffer
	r := SlogReporter(slog.New(slog.NewJSONHandler(&buf, nil)))
	ctx := context.Background()
	r.Cycle(ctx, CycleResult{Epoch: 3, RebalancingEnabled: true,
		Rebalance: pool.RebalanceResult{From: "sub1", To: "sub2", Gap: 10, Needed: true, Moved: 2}})
	r.Cycle(ctx, CycleResult{Epoch: 3, RebalancingEnabled: true}) // nothing to say at INFO
	r.Cycle(ctx, CycleResult{Epoch: 3, Err: fmt.Errorf("rebalance: maintain: %w", pool.ErrNotLeader)})
	r.Cycle(ctx, CycleResult{Epoch: 3, Err: errors.New("rebalance: maintain: connection refused")})
	r.Leadership(ctx, Leadership{Leader: true, Epoch: 3, Holder: "rb-a"})
	r.Leadership(ctx, Leadership{Epoch: 3, Holder: "rb-a", Cause: ErrLockLost})

	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("not JSON: %q", l)
		}
		lines = append(lines, m)
	}
	want := []map[string]any{
		{"msg": "Rebalancing needed", "level": "INFO", "costGap": "$10.00", "from": "sub1", "to": "sub2"},
		{"msg": "Moved clients", "level": "INFO", "moved": 2.0, "from": "sub1", "to": "sub2"},
		{"msg": "Rebalancer cycle failed; retrying", "level": "WARN", "error": "rebalance: maintain: connection refused"},
		{"msg": "Gained leadership", "level": "INFO", "holder": "rb-a", "epoch": 3.0},
		{"msg": "Lost leadership", "level": "WARN", "holder": "rb-a", "cause": ErrLockLost.Error()},
	}
	if len(lines) != len(want) {
		t.Fatalf("got %d lines, want %d:\n%s", len(lines), len(want), buf.String())
	}
	for i, w := range want {
		for k, v := range w {
			if lines[i][k] != v {
				t.Fatalf("line %d: %s = %v, want %v\n%s", i, k, lines[i][k], v, buf.String())
			}
		}
	}
}

// meter keeps what a Meter was told, as /metrics would show it.
type meter struct {
	leader bool
	runs   map[string]int
	moves  int
}

func (m *meter) SetLeader(l bool) { m.leader = l }

func (m *meter) RebalanceRun(_ context.Context, result string, moves int, _ time.Duration) {
	m.runs[result]++
	m.moves += moves
}

func TestMetricsReporterCountsCyclesByResult(t *testing.T) {
	m := &meter{runs: map[string]int{}}
	r := Reporters(NopReporter{}, MetricsReporter(m))
	ctx := context.Background()
	r.Leadership(ctx, Leadership{Leader: true, Epoch: 1})
	r.Cycle(ctx, CycleResult{Rebalance: pool.RebalanceResult{Moved: 2}})
	r.Cycle(ctx, CycleResult{})
	r.Cycle(ctx, CycleResult{Err: errors.New("connection refused")})
	r.Cycle(ctx, CycleResult{Err: fmt.Errorf("x: %w", pool.ErrNotLeader)})
	if !m.leader || m.moves != 2 || m.runs[ResultOK] != 2 || m.runs[ResultError] != 1 || m.runs[ResultFenced] != 1 {
		t.Fatalf("meter = %+v", m)
	}
	r.Leadership(ctx, Leadership{Epoch: 1, Cause: ErrResigned})
	if m.leader {
		t.Fatal("still leader after resigning")
	}
}
