package lua

import (
	"context"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// crc16 is Redis Cluster's key hash (CRC16-CCITT/XMODEM).
func crc16(b []byte) uint16 {
	var crc uint16
	for _, c := range b {
		crc ^= uint16(c) << 8
		for i := 0; i < 8; i++ {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

// slot follows the Cluster spec: only the part inside the first {…} counts.
func slot(key string) uint16 {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	return crc16([]byte(key)) % 16384
}

func TestCRC16MatchesRedisCluster(t *testing.T) {
	// Reference values from the Redis Cluster specification and CLUSTER KEYSLOT.
	if got := crc16([]byte("123456789")); got != 0x31C3 {
		t.Fatalf("crc16(123456789) = %#x, want 0x31c3", got)
	}
	if got := slot("foo"); got != 12182 {
		t.Fatalf("slot(foo) = %d, want 12182", got)
	}
	if slot("{user1000}.following") != slot("{user1000}.followers") {
		t.Fatal("hash tags not honoured")
	}
}

// keyRecorder captures the KEYS of every script call.
type keyRecorder struct{ calls map[string][][]string }

func (r *keyRecorder) DialHook(next redis.DialHook) redis.DialHook { return next }
func (r *keyRecorder) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
func (r *keyRecorder) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		a := cmd.Args()
		name := strings.ToLower(cmd.Name())
		if (name == "evalsha" || name == "eval") && len(a) >= 3 {
			n := int(a[2].(int))
			var keys []string
			for _, k := range a[3 : 3+n] {
				keys = append(keys, k.(string))
			}
			id := a[1].(string)
			if name == "eval" { // the NOSCRIPT retry of an EVALSHA: same script
				id = shaOf(id)
			}
			r.calls[id] = append(r.calls[id], keys)
		}
		return next(ctx, cmd)
	}
}

func shaOf(src string) string { return redis.NewScript(src).Hash() }

// Every script's KEYS, as the wrappers really send them, fall in one slot.
func TestEveryScriptCallStaysInOneSlot(t *testing.T) {
	m := miniredis.RunT(t)
	c := redis.NewClient(&redis.Options{Addr: m.Addr()})
	rec := &keyRecorder{calls: map[string][][]string{}}
	c.AddHook(rec)
	ctx := context.Background()
	k := NewKeys("team-a")
	ids := []string{"sub1", "sub2", "sub3"}
	subs := k.SubSet(ids)
	var sync []SyncSub
	for _, id := range ids {
		sync = append(sync, SyncSub{ID: id, Email: id + "@example.com", Type: "claude-pro", ConfigDir: "/x", WeeklyBudget: "100", MaxClients: 5})
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	_, err := Sync(ctx, c, k, ConfigVersion{Hash: "h1", LoadedAt: 1}, sync, nil)
	must(err)
	_, err = Allocate(ctx, c, k, subs, AllocateArgs{SessionID: "sess-1", Priority: "normal", Admit: 0.85, ResumeLimit: 0.98, ApproachAt: 0.8, StaleMS: 60000, FallbackOK: true, Weights: DefaultWeights, Owner: "-", TurnID: "turn-1", LeaseMS: 60000})
	must(err)
	must(Turn(ctx, c, k, subs, "sess-1", "turn-1", 60000, 60000, 500))
	_, _, err = Resume(ctx, c, k, ResumeArgs{SessionID: "sess-1", SubID: "sub1", Owner: "-", ResumeLimit: 0.98,
		StaleMS: 60000, IdleMS: 500, TurnID: "turn-2", LeaseMS: 60000})
	must(err)
	_, err = Settle(ctx, c, k, SettleArgs{RequestID: "req-1", SubID: "sub1", SessionID: "sess-1", CostUSD: "0.1", MarkerTTL: 1000, Retention: 1000, StaleMS: 1000, Thresholds: []string{"0.8"}})
	must(err)
	_, err = Settle(ctx, c, k, SettleArgs{RequestID: "req-2", CostUSD: "0.1", MarkerTTL: 1000, Retention: 1000, StaleMS: 1000})
	must(err)
	_, err = Mark(ctx, c, k, MarkArgs{SubID: "sub2", Status: "limited", Reason: "t", CooldownMS: 1000})
	must(err)
	_, err = Failure(ctx, c, k, FailureArgs{SubID: "sub3", Outcome: OutcomeFailed, Threshold: 1, CooldownMS: 1000})
	must(err)
	_, err = Failure(ctx, c, k, FailureArgs{SubID: "sub2", Outcome: OutcomeAuth, Threshold: 1, AuthMinMS: 1000, AuthMaxMS: 8000})
	must(err)
	u := 0.5
	_, err = Observe(ctx, c, k, ObserveArgs{SubID: "sub1", ApproachAt: 0.8, Thresholds: []string{"0.4"},
		Observations: []Observation{{Window: "five_hour", Utilization: &u, ResetMS: 4102444800000, Status: "allowed", AtMS: 1}}})
	must(err)
	_, err = Status(ctx, c, k, subs, StatusArgs{StaleMS: 1000, Weights: DefaultWeights, IdleMS: 500})
	must(err)
	must(c.Set(ctx, k.Epoch(), 1, 0).Err())
	_, _, _, err = Maintain(ctx, c, k, subs, 1, 1000, 500, 0.8, 0, RankInputs{Weights: DefaultWeights, IdleMS: 500})
	must(err)
	_, err = RankRefresh(ctx, c, k, subs, RankInputs{Weights: DefaultWeights, IdleMS: 500})
	must(err)
	_, err = Rebalance(ctx, c, k, subs, RebalanceArgs{Epoch: 1, From: "sub1", To: "sub3", GapThreshold: "5", IdleMS: 1, StaleMS: 1000, MaxMoves: 1, Admit: 0.95, Candidates: []string{"sess-1"}})
	must(err)
	_, err = AppendTurn(ctx, c, k, AppendTurnArgs{SessionID: "sess-1", TurnID: "turn-1", Owner: "-", User: "u", Assistant: "a", MaxBytes: 1000, StaleMS: 1000, MarkerTTL: 1000})
	must(err)
	_, err = LoadConversation(ctx, c, k, "sess-1", "-", true)
	must(err)
	_, err = Admin(ctx, c, k, subs, AdminArgs{Op: AdminDrain, Target: "sub1", Actor: "admin", StaleMS: 1000, IdleMS: 500})
	must(err)
	_, err = Admin(ctx, c, k, subs, AdminArgs{Op: AdminMove, Target: "sess-1", To: "sub3", Actor: "admin", StaleMS: 60000, IdleMS: 500})
	if err != nil && !errors.Is(err, ErrRefused) {
		t.Fatal(err)
	}
	_, err = Release(ctx, c, k, subs, "sess-1", "")
	must(err)
	_, err = RateLimit(ctx, c, k, "client-1", 1000, 10)
	must(err)
	must(c.Set(ctx, k.Leader(), "lock", 0).Err())
	_, _, _, err = Promote(ctx, c, k, "lock", "rb-a")
	must(err)
	must(Demote(ctx, c, k, "rb-a", 1))
	must(CreateEventsGroup(ctx, c, k, "g"))
	_, err = ReadNewEvents(ctx, c, k, "g", "c1", 1)
	must(err)
	_, err = TouchEvent(ctx, c, k, "g", "c1", "0-1")
	must(err)
	_, err = DeadEvent(ctx, c, k, "g", "0-1", 10, []any{"type", "x"})
	must(err)
	_, err = TrimEvents(ctx, c, k, "g", time.Hour)
	must(err)

	want := slot(k.Subs())
	scripts := 0
	for _, calls := range rec.calls {
		scripts++
		for _, keys := range calls {
			for _, key := range keys {
				if slot(key) != want {
					t.Errorf("key %q is in slot %d, the pool's is %d", key, slot(key), want)
				}
			}
		}
	}
	if scripts != len(all) {
		t.Fatalf("recorded %d distinct scripts, want all %d", scripts, len(all))
	}
}

// Every key builder of Keys, found by reflection (so a builder added later
// is checked without anyone remembering to list it), answers in the pool's
// slot, whatever the pool and the ids.
func TestEveryKeyBuilderStaysInOneSlot(t *testing.T) {
	for _, pool := range []string{"default", "team-a", "x"} {
		k := NewKeys(pool)
		want := slot(k.Subs())
		v := reflect.ValueOf(k)
		typ := v.Type()
		checked := 0
		for i := 0; i < typ.NumMethod(); i++ {
			m := typ.Method(i)
			ft := m.Type // receiver first
			if ft.NumOut() != 1 || ft.Out(0).Kind() != reflect.String {
				continue // not a key builder (SubSet)
			}
			args := []reflect.Value{v}
			for j := 1; j < ft.NumIn(); j++ {
				if ft.In(j).Kind() != reflect.String {
					t.Fatalf("Keys.%s takes a %s: teach this test to call it", m.Name, ft.In(j))
				}
				args = append(args, reflect.ValueOf("id-"+strconv.Itoa(j)))
			}
			key := m.Func.Call(args)[0].String()
			if !strings.HasPrefix(key, k.Base()) {
				t.Errorf("Keys.%s = %q, not under %q", m.Name, key, k.Base())
			}
			if slot(key) != want {
				t.Errorf("Keys.%s = %q is in slot %d, the pool's is %d", m.Name, key, slot(key), want)
			}
			checked++
		}
		if checked < 18 {
			t.Fatalf("checked %d key builders; the reflection missed some", checked)
		}
	}
}

func TestKeyBuilders(t *testing.T) {
	k := NewKeys("default")
	cases := map[string]string{
		k.Subs():                   "authpool:{default}:subs",
		k.Sub("sub1"):              "authpool:{default}:sub:sub1",
		k.Hourly("sub1"):           "authpool:{default}:sub:sub1:hourly",
		k.Clients("sub1"):          "authpool:{default}:sub:sub1:clients",
		k.Session("s-1"):           "authpool:{default}:session:s-1",
		k.Usage():                  "authpool:{default}:usage",
		k.Req("r1"):                "authpool:{default}:req:r1",
		k.Events():                 "authpool:{default}:events",
		k.EventsDead():             "authpool:{default}:events:dead",
		k.Leader():                 "authpool:{default}:leader",
		k.LeaderInfo():             "authpool:{default}:leader:info",
		k.Epoch():                  "authpool:{default}:epoch",
		k.Fallback():               "authpool:{default}:fallback",
		k.FallbackHourly():         "authpool:{default}:fallback:hourly",
		k.RateLimit("abc"):         "authpool:{default}:ratelimit:abc",
		k.Base():                   "authpool:{default}",
		k.Turns("s-1"):             "authpool:{default}:session:s-1:turns",
		k.TurnMarker("t1"):         "authpool:{default}:req:t1:turn",
		k.Config():                 "authpool:{default}:config",
		k.ClientKey("alice"):       "authpool:{default}:key:alice",
		k.ClientKeyHourly("alice"): "authpool:{default}:key:alice:hourly",
	}
	for got, want := range cases {
		if got != want {
			t.Errorf("key %q, want %q", got, want)
		}
	}
	// A channel, not a key, but in the pool's name space (Cluster
	// broadcasts PUBLISH to every node, so its slot does not matter).
	if got := k.LeaderChannel(); got != "authpool:{default}:leader" {
		t.Errorf("leader channel %q", got)
	}
	for _, bad := range []string{"", "a:b", "a{b}", "a b", "a\x00", strings.Repeat("x", 129)} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Session(%q) did not refuse the id", bad)
				}
			}()
			k.Session(bad)
		}()
	}
}
