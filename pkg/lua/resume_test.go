package lua

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/authpool/authpool/internal/redistest"
)

// TestResumeMatchesAllocate (issue 14): the lean resume script decides as
// allocate.lua's resume mode does, over statuses, weekly fractions (the
// estimate and observed seven_day windows, current and reset), the
// session's activity (active, idle, stale, no entry), a full or free
// subscription, owners and bindings. Each case is set up twice, in two
// pools, and each script runs on its own copy. resume.lua may leave to the
// full script (CodeResumeMiss) only where that must recompute: a due status
// restore, or no valid precomputed fraction.
func TestResumeMatchesAllocate(t *testing.T) {
	redistest.Each(t, func(t *testing.T, tg *redistest.Target) {
		ctx := context.Background()
		c := tg.Client
		const staleMS, idleMS, resumeLimit = 600_000, 60_000, 0.98
		statuses := []string{"available", "approaching", "draining", "limited-future", "limited-past",
			"cooldown-past", "disabled", "removed"}
		weeklies := []string{"10.000000", "99.000000"}
		windows := []string{"none", "current-low", "current-high", "reset"}
		activity := []string{"active", "idle", "stale", "none"}
		type binding struct{ owner, sub string }
		bindings := []binding{{"-", "s1"}, {"other", "s1"}, {"-", "s2"}}
		cases, lean, misses := 0, 0, 0
		for _, st := range statuses {
			for _, wk := range weeklies {
				for _, win := range windows {
					for _, act := range activity {
						for _, full := range []bool{false, true} {
							for bi, b := range bindings {
								if bi > 0 && (act != "active" || full || win != "none") {
									continue
								}
								for _, dropElig := range []bool{false, true} {
									if dropElig && (bi > 0 || full) {
										continue
									}
									cases++
									name := fmt.Sprintf("%s/%s/%s/%s/full=%v/%s:%s/noelig=%v", st, wk, win, act, full, b.owner, b.sub, dropElig)
									ka, kb := NewKeys(fmt.Sprintf("a%d", cases)), NewKeys(fmt.Sprintf("b%d", cases))
									for _, k := range []Keys{ka, kb} {
										setupResumeCase(t, ctx, tg, k, st, wk, win, act, full, b.owner, b.sub, dropElig, staleMS, idleMS)
									}
									cli, ok, lerr := Resume(ctx, c, ka, ResumeArgs{SessionID: "sess", SubID: "s1", Owner: "-",
										ResumeLimit: resumeLimit, StaleMS: staleMS, IdleMS: idleMS, TurnID: "t1", LeaseMS: idleMS})
									fr, ferr := Allocate(ctx, c, kb, kb.SubSet([]string{"s1"}), AllocateArgs{SessionID: "sess",
										Priority: "normal", Admit: 0.85, ResumeLimit: resumeLimit, ApproachAt: 0.8, StaleMS: staleMS,
										FallbackOK: true, Weights: DefaultWeights, ResumeOnly: true, Owner: "-", TurnID: "t1",
										LeaseMS: idleMS, IdleMS: idleMS})
									fullOK := ferr == nil && fr.Code == CodeOK
									switch {
									case lerr != nil || ferr != nil:
										if !errors.Is(lerr, ErrNotFound) || !errors.Is(ferr, ErrNotFound) {
											t.Errorf("%s: resume %v, allocate %v", name, lerr, ferr)
										}
									case ok:
										lean++
										if !fullOK || fr.CLISession != cli {
											t.Errorf("%s: resume resumed (%q), allocate %+v", name, cli, fr)
										}
										sa, _ := c.ZScore(ctx, ka.Clients("s1"), "sess").Result()
										sb, _ := c.ZScore(ctx, kb.Clients("s1"), "sess").Result()
										if d := sa - sb; d > 1000 || d < -1000 {
											t.Errorf("%s: active until %.0f after resume, %.0f after allocate", name, sa, sb)
										}
									default:
										misses++
										mayMiss := dropElig || st == "limited-past" || st == "cooldown-past"
										if fullOK && !mayMiss {
											t.Errorf("%s: resume missed, allocate resumed", name)
										}
									}
								}
							}
						}
					}
				}
			}
		}
		t.Logf("%d cases: %d resumed by resume.lua, %d left to allocate.lua", cases, lean, misses)
	})
}

// setupResumeCase writes one case into pool k: subscriptions s1 (the hint)
// and s2, s1's usage, observed window and status, and a session bound to
// sub by owner with the given activity on s1; full puts two other active
// sessions on s1 (its cap).
func setupResumeCase(t *testing.T, ctx context.Context, tg *redistest.Target, k Keys, st, weekly, win, act string,
	full bool, owner, sub string, dropElig bool, staleMS, idleMS int64) {
	t.Helper()
	c := tg.Client
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	var subs []SyncSub
	for _, id := range []string{"s1", "s2"} {
		subs = append(subs, SyncSub{ID: id, Email: id + "@example.com", Type: "claude-max", ConfigDir: "/x", WeeklyBudget: "100", MaxClients: 2})
	}
	_, err := Sync(ctx, c, k, ConfigVersion{Hash: "h", LoadedAt: 1}, subs, nil)
	must(err)
	tm, err := c.Time(ctx).Result()
	must(err)
	now := tm.UnixMilli()
	hour := now / 3600000
	must(c.HSet(ctx, k.Hourly("s1"), strconv.FormatInt(hour, 10), weekly).Err())
	switch win {
	case "current-low", "current-high":
		u := "0.300000"
		if win == "current-high" {
			u = "0.990000"
		}
		must(c.HSet(ctx, k.Sub("s1"), "w:seven_day:util", u, "w:seven_day:reset", now+86400000,
			"w:seven_day:at", now-1000, "w:seven_day:status", "allowed").Err())
	case "reset":
		must(c.HSet(ctx, k.Sub("s1"), "w:seven_day:util", "0.990000", "w:seven_day:reset", now-1000,
			"w:seven_day:at", now-86400000, "w:seven_day:status", "allowed").Err())
	}
	// Maintain computes the weekly total and the resume fraction.
	must(c.Set(ctx, k.Epoch(), 1, 0).Err())
	_, _, _, err = Maintain(ctx, c, k, k.SubSet([]string{"s1", "s2"}), 1, staleMS, idleMS, 0.8, 0, RankInputs{})
	must(err)
	if dropElig {
		must(c.HDel(ctx, k.Sub("s1"), "elig").Err())
	}
	switch st {
	case "limited-future":
		must(c.HSet(ctx, k.Sub("s1"), "status", "limited", "statusReason", "limit", "until", now+3600000).Err())
	case "limited-past":
		must(c.HSet(ctx, k.Sub("s1"), "status", "limited", "statusReason", "limit", "until", now-1000).Err())
	case "cooldown-past":
		must(c.HSet(ctx, k.Sub("s1"), "status", "cooldown", "statusReason", "failures", "until", now-1000).Err())
	default:
		must(c.HSet(ctx, k.Sub("s1"), "status", st, "statusReason", "", "until", "0").Err())
	}
	must(c.HSet(ctx, k.Session("sess"), "sub", sub, "priority", "normal", "allocatedAt", now, "owner", owner,
		"cliSession", "cli-1").Err())
	must(c.PExpire(ctx, k.Session("sess"), 10*time.Minute).Err())
	var score int64
	switch act {
	case "active":
		score = now + idleMS/2
	case "idle":
		score = now - 1000
	case "stale":
		score = now - staleMS
	}
	if act != "none" {
		must(c.ZAdd(ctx, k.Clients(sub), redisZ(float64(score), "sess")).Err())
	}
	if full {
		must(c.ZAdd(ctx, k.Clients("s1"), redisZ(float64(now+idleMS), "o1"), redisZ(float64(now+idleMS), "o2")).Err())
	}
}

// resume.lua trusts the stored weekly fraction (elig) only until its time:
// an elig that says 0.1 but ran out is not used (the full allocate decides
// on the real usage, here over the resume limit), while one still valid is.
func TestResumeIgnoresAnExpiredElig(t *testing.T) {
	redistest.Each(t, func(t *testing.T, tg *redistest.Target) {
		ctx := context.Background()
		c := tg.Client
		const staleMS, idleMS = 600_000, 60_000
		for _, tc := range []struct {
			name    string
			validMS int64 // elig's time from now
			resumes bool
		}{{"expired", -1000, false}, {"valid", 60_000, true}} {
			k := NewKeys("elig-" + tc.name)
			setupResumeCase(t, ctx, tg, k, "available", "99.000000", "none", "active", false, "-", "s1", false, staleMS, idleMS)
			tm, err := c.Time(ctx).Result()
			if err != nil {
				t.Fatal(err)
			}
			elig := fmt.Sprintf("0.100000:%d", tm.UnixMilli()+tc.validMS)
			if err := c.HSet(ctx, k.Sub("s1"), "elig", elig).Err(); err != nil {
				t.Fatal(err)
			}
			_, ok, err := Resume(ctx, c, k, ResumeArgs{SessionID: "sess", SubID: "s1", Owner: "-",
				ResumeLimit: 0.98, StaleMS: staleMS, IdleMS: idleMS, TurnID: "t1", LeaseMS: idleMS})
			if err != nil || ok != tc.resumes {
				t.Fatalf("%s elig %q: resumed %v, %v; want %v", tc.name, elig, ok, err, tc.resumes)
			}
		}
	})
}
