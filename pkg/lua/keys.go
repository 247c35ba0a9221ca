package lua

import "github.com/authpool/authpool/internal/ids"

// Prefix starts every authpool key.
const Prefix = "authpool"

// ValidID reports whether s may be part of a Redis key (ids.Key):
// subscription ids, session ids, request ids and pool names. Callers validate
// at the edge; the builders check again and panic on a bad id, because a bad
// id reaching here is a programming error, never user input.
func ValidID(s string) bool { return ids.ValidKey(s) }

func mustID(kind, s string) string {
	if !ValidID(s) {
		panic("lua: invalid " + kind + " id in key")
	}
	return s
}

// Keys builds the Redis keys of one pool (DESIGN §4). The pool name sits in a
// hash tag, so every key of a pool lives in one Redis Cluster slot.
type Keys struct {
	base string // "authpool:{P}"
}

// NewKeys returns the key builder of pool p.
func NewKeys(p string) Keys { return Keys{base: Prefix + ":{" + mustID("pool", p) + "}"} }

// Base is "authpool:{P}", the prefix of every key of the pool.
func (k Keys) Base() string { return k.base }

// Subs is the SET of subscription ids.
func (k Keys) Subs() string { return k.base + ":subs" }

// Config is the HASH hash loadedAt of the config version in force: the
// newest config any replica synced (sync.lua refuses an older one).
func (k Keys) Config() string { return k.base + ":config" }

// Sub is the HASH of one subscription.
func (k Keys) Sub(id string) string { return k.base + ":sub:" + mustID("subscription", id) }

// Hourly is the HASH hour-index → USD of one subscription (rolling 7 days).
func (k Keys) Hourly(id string) string { return k.Sub(id) + ":hourly" }

// Clients is the ZSET session id → "active until" ms of one subscription:
// the end of its running turn's lease, or its last turn's end + the idle
// age (lib.lua).
func (k Keys) Clients(id string) string { return k.Sub(id) + ":clients" }

// Session is the HASH of one session.
func (k Keys) Session(sid string) string { return k.base + ":session:" + mustID("session", sid) }

// Turns is the LIST of a session's stored conversation: one JSON turn
// {"id","u","a"} per settled turn, oldest first, bounded in bytes and
// expiring with the session (issue 10). The CLI's own session is only a
// cache of it.
func (k Keys) Turns(sid string) string { return k.Session(sid) + ":turns" }

// TurnMarker marks the turn of one settlement id as appended to its
// session's conversation (TTL as the settlement marker): a retried append
// adds nothing.
func (k Keys) TurnMarker(turnID string) string { return k.Req(turnID) + ":turn" }

// Rank is the ZSET subscription id → rank value of the allocation ranking
// (rank.lua, issue 14): lowest first, the order in which a new binding
// examines the subscriptions. A usable one's value is minus its health
// score (plus 1e-9 per active client), an unusable one's 2^50. Only an
// order: eligibility is always checked on the subscription itself.
func (k Keys) Rank() string { return k.base + ":rank" }

// RankAt is the ZSET subscription id → the time (ms) from which its Rank
// value may no longer hold (a limited one's until, a block's end, a
// window's reset, at most 5 s after it was scored; 0: changed, not
// scored): a new binding examines it whatever its value.
func (k Keys) RankAt() string { return k.Rank() + ":at" }

// Usage is the STREAM of settled requests, trimmed to 7 days.
func (k Keys) Usage() string { return k.base + ":usage" }

// Req is the settlement marker of one request id (TTL 24 h).
func (k Keys) Req(requestID string) string { return k.base + ":req:" + mustID("request", requestID) }

// Fallback is the HASH of usage served by the fallback backend (weeklyUsed,
// tokens, requests, lastUsageAt), kept like a subscription's for operators.
func (k Keys) Fallback() string { return k.base + ":fallback" }

// FallbackHourly is the hourly HASH of fallback usage.
func (k Keys) FallbackHourly() string { return k.Fallback() + ":hourly" }

// Events is the notification outbox STREAM. Each entry has the fields
// type (usage_threshold|failover|exhausted|rotation|limit_reached|recovered|
// auth_failed|admin_action),
// severity (info|warning|critical), subscriptionId, message, data (a JSON
// object) and ts (Unix ms from Redis TIME). A PUBLISH on the channel of the
// same name is only a wake-up hint.
func (k Keys) Events() string { return k.base + ":events" }

// EventsDead is the STREAM of notifications that exhausted their retries.
func (k Keys) EventsDead() string { return k.base + ":events:dead" }

// Leader is the redsync lock of the rebalancer leader.
func (k Keys) Leader() string { return k.base + ":leader" }

// LeaderChannel is the Pub/Sub channel on which a leader that gives up its
// lock publishes its holder id: only a hint that wakes the standbys to try
// at once (they also try on a timer). It has the lock's name, as Events'
// channel has the stream's.
func (k Keys) LeaderChannel() string { return k.base + ":leader" }

// LeaderInfo is the HASH holder epoch since of the current leader.
func (k Keys) LeaderInfo() string { return k.base + ":leader:info" }

// Epoch is the fencing epoch: each new leader sets it to max(value + 1,
// Redis time in ms), so it keeps growing across a loss of Redis' data.
func (k Keys) Epoch() string { return k.base + ":epoch" }

// ClientKey is the HASH of one named client key's usage (requests, tokens,
// cost, lastUsageAt), by the key's name from API_KEYS_FILE: never the key.
func (k Keys) ClientKey(name string) string { return k.base + ":key:" + mustID("client key", name) }

// ClientKeyHourly is the HASH hour-index → USD of one named client key
// (rolling 7 days): its weekly budget is checked against the sum.
func (k Keys) ClientKeyHourly(name string) string { return k.ClientKey(name) + ":hourly" }

// RateLimit is the GCRA state of one client key (hashed) or client IP.
func (k Keys) RateLimit(subject string) string {
	return k.base + ":ratelimit:" + mustID("rate-limit subject", subject)
}
