package lua

import (
	"context"
	"fmt"
	"math"
	"math/rand"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/authpool/authpool/internal/redistest"
)

// fullScanWalk stands in for rank.lua's rank_walk: every subscription
// examined in id order, as allocate chose before the ranking (issue 14).
// The pick of allocate.lua with it is the reference the ranked walk must
// give.
const fullScanWalk = `
local function rank_walk(rank_key, at_key, ids, idx, now, examine, bound)
  local examined = {}
  for i = 1, #ids do
    examine(i)
    examined[i] = true
  end
  return examined
end
`

var fullScanScript = newScript(libSrc, rankSrc, fullScanWalk, allocateSrc)

const (
	rtIdleMS  = 5 * 60 * 1000
	rtStaleMS = 60 * 60 * 1000
	rtHour    = 3600 * 1000
)

var rtRank = RankInputs{Weights: DefaultWeights, IdleMS: rtIdleMS}

// rankTrial writes a random pool (statuses, budgets, weekly usage, blocks,
// observed windows, active, idle and in-flight clients), scores it by
// maintain, then changes it through the scripts that write the ranking
// (and marks some limited or cooldown with an until that has passed, as
// mark leaves them), and returns its subscription set. Times stay clear of
// every edge (idle age, a block's end, a window's reset) by seconds, so
// that a real Redis' clock moving on between the calls changes nothing.
func rankTrial(t *testing.T, ctx context.Context, c redis.UniversalClient, k Keys, rng *rand.Rand, now int64) *SubSet {
	t.Helper()
	n := 2 + rng.Intn(11)
	var ids []string
	var sync []SyncSub
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("sub%02d", i)
		ids = append(ids, id)
		budget := []string{"0", "50", "100", "200"}[rng.Intn(4)]
		sync = append(sync, SyncSub{ID: id, Email: id + "@example.com", Type: "claude-max", ConfigDir: "/x",
			WeeklyBudget: budget, MaxClients: 1 + rng.Intn(5)})
	}
	if _, err := Sync(ctx, c, k, ConfigVersion{Hash: "h", LoadedAt: 1}, sync, nil); err != nil {
		t.Fatal(err)
	}
	subs := k.SubSet(ids)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(c.Set(ctx, k.Epoch(), 1, 0).Err())
	cur := now / rtHour
	for i, id := range ids {
		sk := k.Sub(id)
		for j := rng.Intn(4); j > 0; j-- {
			h := cur - int64(rng.Intn(170))
			must(c.HSet(ctx, k.Hourly(id), strconv.FormatInt(h, 10), fmt.Sprintf("%.2f", rng.Float64()*60)).Err())
		}
		switch rng.Intn(3) {
		case 1: // a block running, ending a minute from now at the earliest
			bs := (now - rng.Int63n(4*rtHour)) / rtHour * rtHour
			must(c.HSet(ctx, sk, "blockStart", bs, "blockCost", fmt.Sprintf("%.4f", rng.Float64()*30)).Err())
		case 2: // one that ended
			must(c.HSet(ctx, sk, "blockStart", (now-6*rtHour)/rtHour*rtHour, "blockCost", "12.5").Err())
		}
		for _, w := range []string{"five_hour", "seven_day"} {
			p := "w:" + w + ":"
			switch rng.Intn(4) {
			case 1: // current
				must(c.HSet(ctx, sk, p+"util", fmt.Sprintf("%.6f", rng.Float64()), p+"reset", now+60000+rng.Int63n(4*rtHour),
					p+"status", "allowed", p+"at", now-rng.Int63n(rtHour)).Err())
			case 2: // reset since
				must(c.HSet(ctx, sk, p+"util", fmt.Sprintf("%.6f", rng.Float64()), p+"reset", now-60000-rng.Int63n(rtHour),
					p+"status", "allowed", p+"at", now-2*rtHour).Err())
			case 3: // a warning without a utilization
				must(c.HSet(ctx, sk, p+"reset", now+60000+rng.Int63n(rtHour), p+"status", "allowed_warning",
					p+"at", now-rng.Int63n(rtHour)).Err())
			}
		}
		max, err := c.HGet(ctx, sk, "maxClients").Int()
		must(err)
		for j := rng.Intn(max + 3); j > 0; j-- {
			sid := fmt.Sprintf("c%d-%d", i, j)
			var last int64 // its last turn; the score is 'active until'
			inflight := false
			switch rng.Intn(3) {
			case 0: // active
				last = now - 10000 - rng.Int63n(rtIdleMS-20000)
			case 1: // idle
				last = now - rtIdleMS - 10000 - rng.Int63n(rtStaleMS-rtIdleMS-20000)
				if rng.Intn(3) == 0 { // with a turn in flight: active
					inflight = true
				}
			default: // stale: maintain drops it
				last = now - rtStaleMS - 10000 - rng.Int63n(rtHour)
			}
			score := last + rtIdleMS
			if inflight {
				score = now + 600000
			}
			must(c.ZAdd(ctx, k.Clients(id), redis.Z{Score: float64(score), Member: sid}).Err())
		}
	}
	if _, _, _, err := Maintain(ctx, c, k, subs, 1, rtStaleMS, rtIdleMS, 0.8, 0, rtRank); err != nil {
		t.Fatal(err)
	}
	// Unusable statuses, as mark.lua and admin.lua leave them (an until
	// that has passed since: allocate must restore the subscription).
	for _, id := range ids {
		var status string
		var until int64
		switch rng.Intn(14) {
		case 0:
			status, until = "limited", now-1000-rng.Int63n(rtHour)
		case 1:
			status, until = "limited", now+60000+rng.Int63n(rtHour)
		case 2:
			status, until = "cooldown", now-1000-rng.Int63n(rtHour)
		case 3:
			status, until = "cooldown", now+60000+rng.Int63n(rtHour)
		case 4:
			status = "disabled"
		case 5:
			status = "draining"
		default:
			continue
		}
		must(c.HSet(ctx, k.Sub(id), "status", status, "statusReason", "usage_limit", "until", until).Err())
		must(c.ZAdd(ctx, k.Rank(), redis.Z{Score: math.Pow(2, 50), Member: id}).Err())
		if until > 0 {
			must(c.ZAdd(ctx, k.RankAt(), redis.Z{Score: float64(until), Member: id}).Err())
		} else {
			must(c.ZRem(ctx, k.RankAt(), id).Err())
		}
	}
	// Writes through the scripts.
	for j := rng.Intn(6); j > 0; j-- {
		id := ids[rng.Intn(n)]
		switch rng.Intn(4) {
		case 0, 1:
			_, err := Settle(ctx, c, k, SettleArgs{RequestID: fmt.Sprintf("r%d", rng.Int63()), SubID: id,
				CostUSD: fmt.Sprintf("%.4f", rng.Float64()*20), ApproachAt: 0.8, MarkerTTL: 60000, Retention: rtHour,
				StaleMS: rtStaleMS, IdleMS: rtIdleMS})
			must(err)
		case 2:
			u := rng.Float64()
			w := []string{"five_hour", "seven_day"}[rng.Intn(2)]
			_, err := Observe(ctx, c, k, ObserveArgs{SubID: id, ApproachAt: 0.8, Rank: rtRank,
				Observations: []Observation{{Window: w, Utilization: &u, ResetMS: now + 60000 + rng.Int63n(rtHour),
					Status: "allowed", AtMS: now}}})
			must(err)
		case 3:
			st, until := "available", int64(0)
			if rng.Intn(2) == 0 {
				st, until = "limited", now+2*rtHour
			}
			_, err := Mark(ctx, c, k, MarkArgs{SubID: id, Status: st, Reason: "usage_limit", UntilMS: until,
				CooldownMS: 60000, ApproachAt: 0.8})
			must(err)
		}
	}
	return subs
}

// TestRankedPickIsFullScanPick: over random pools, allocate's walk in rank
// order binds a new session where the full scan of every subscription
// would, and says the same when none can take it (reason, retry).
func TestRankedPickIsFullScanPick(t *testing.T) {
	redistest.Each(t, func(t *testing.T, tg *redistest.Target) {
		ctx := context.Background()
		c := tg.Client
		trials := 300
		if tg.Real() {
			trials = 120
		}
		rng := rand.New(rand.NewSource(14))
		outcomes := map[string]int{}
		for trial := 0; trial < trials; trial++ {
			var now int64
			if tg.Real() {
				tm, err := c.Time(ctx).Result()
				if err != nil {
					t.Fatal(err)
				}
				now = tm.UnixMilli()
			} else {
				now = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC).UnixMilli() + int64(trial)*rtHour
				tg.Mini.SetTime(time.UnixMilli(now))
			}
			k := NewKeys(fmt.Sprintf("%s-%d", tg.Pool, trial))
			subs := rankTrial(t, ctx, c, k, rng, now)
			a := AllocateArgs{Priority: "normal", Admit: 0.5 + rng.Float64()*0.5, ResumeLimit: 0.95, ApproachAt: 0.8,
				StaleMS: rtStaleMS, FallbackOK: rng.Intn(2) == 0, Weights: DefaultWeights, Owner: "-", IdleMS: rtIdleMS}
			if rng.Intn(3) == 0 {
				a.BlockAdmit = 0.9
			}
			if rng.Intn(5) == 0 {
				known := make([]byte, len(subs.IDs))
				for i := range known {
					known[i] = '1'
					if rng.Intn(4) == 0 {
						known[i] = '0'
					}
				}
				a.Known = string(known)
			}
			a.SessionID = "ranked"
			got, err := Allocate(ctx, c, k, subs, a)
			if err != nil && got.Code == 0 {
				t.Fatalf("trial %d: ranked: %v", trial, err)
			}
			// Undo the binding, then the full scan on the same pool.
			if got.SubID != "" {
				if err := c.ZRem(ctx, k.Clients(got.SubID), "ranked").Err(); err != nil {
					t.Fatal(err)
				}
			}
			a.SessionID = "full"
			want, err := allocate(ctx, c, k, subs, a, fullScanScript)
			if err != nil && want.Code == 0 {
				t.Fatalf("trial %d: full scan: %v", trial, err)
			}
			if tg.Real() && math.Abs(float64(got.RetryAfterMS-want.RetryAfterMS)) < 1000 {
				got.RetryAfterMS = want.RetryAfterMS // the clock moved on between the calls
			}
			if got != want {
				dump, _ := c.ZRangeWithScores(ctx, k.Rank(), 0, -1).Result()
				at, _ := c.ZRangeWithScores(ctx, k.RankAt(), 0, -1).Result()
				t.Fatalf("trial %d: ranked pick %+v, full scan %+v\nrank %v\nat %v (now %d)", trial, got, want, dump, at, now)
			}
			outcomes[got.Kind+" "+got.Reason]++
		}
		var seen []string
		for o, n := range outcomes {
			seen = append(seen, fmt.Sprintf("%s: %d", o, n))
		}
		t.Logf("outcomes: %s", strings.Join(seen, ", "))
		if outcomes["bound "] < trials/3 {
			t.Fatalf("only %d of %d trials bound a session: the trials are too narrow", outcomes["bound "], trials)
		}
	})
}

// TestRankTieFewerClients: with equal scores (no weight on clients), the
// subscription with fewer active clients is chosen, as the full scan
// chooses it, though its id sorts after the other's.
func TestRankTieFewerClients(t *testing.T) {
	redistest.Each(t, func(t *testing.T, tg *redistest.Target) {
		ctx := context.Background()
		c := tg.Client
		k := NewKeys(tg.Pool)
		w := DefaultWeights
		w.Clients = 0
		rank := RankInputs{Weights: w, IdleMS: rtIdleMS}
		var sync []SyncSub
		for _, id := range []string{"a", "b"} {
			sync = append(sync, SyncSub{ID: id, Email: id, Type: "claude-max", ConfigDir: "/x", WeeklyBudget: "100", MaxClients: 9})
		}
		if _, err := Sync(ctx, c, k, ConfigVersion{Hash: "h", LoadedAt: 1}, sync, nil); err != nil {
			t.Fatal(err)
		}
		subs := k.SubSet([]string{"a", "b"})
		a := AllocateArgs{Priority: "normal", Admit: 0.9, ResumeLimit: 0.95, ApproachAt: 0.8, StaleMS: rtStaleMS,
			Weights: w, Owner: "-", IdleMS: rtIdleMS}
		for i := 0; i < 6; i++ {
			a.SessionID = fmt.Sprintf("s%d", i)
			r, err := Allocate(ctx, c, k, subs, a)
			if err != nil {
				t.Fatal(err)
			}
			want := "a"
			if i%2 == 1 {
				want = "b"
			}
			if r.SubID != want {
				t.Fatalf("session %d on %s, want %s (equal scores: fewer clients first, then the id)", i, r.SubID, want)
			}
			if i == 2 {
				// Scored by maintain too: the same order.
				if err := c.Set(ctx, k.Epoch(), 1, 0).Err(); err != nil {
					t.Fatal(err)
				}
				if _, _, _, err := Maintain(ctx, c, k, subs, 1, rtStaleMS, rtIdleMS, 0.8, 0, rank); err != nil {
					t.Fatal(err)
				}
			}
		}
	})
}
