package lua

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"
)

// Admin operations (admin.lua): what an operator may do through /admin/v1.
const (
	AdminDrain   = "drain"
	AdminDisable = "disable"
	AdminEnable  = "enable"
	AdminReset   = "reset"
	AdminMove    = "move"
	AdminEnd     = "end"
)

// AdminArgs are the inputs of admin.lua.
type AdminArgs struct {
	Op string
	// Target is the subscription id (drain, disable, enable, reset) or the
	// session id (move, end).
	Target string
	// To is the destination subscription of a move.
	To string
	// Actor names the admin token that asked ("admin").
	Actor      string
	ApproachAt float64
	StaleMS    int64
	IdleMS     int64
}

// AdminReply is admin.lua's answer.
type AdminReply struct {
	// Changed is false when the state already was what was asked.
	Changed bool
	// Status is the subscription's status after the call, or the session's
	// subscription (move: the destination; end: the one it left).
	Status string
	// Detail is the previous status (subscription ops), the subscription a
	// moved session left, or why a move was refused (status, capacity, same).
	Detail string
}

// Admin runs admin.lua over subs. A refused move answers ErrRefused with
// the reply (Detail says why); an unknown or removed subscription, or an
// unknown session, answers ErrNotFound.
func Admin(ctx context.Context, c Scripter, k Keys, subs *SubSet, a AdminArgs) (AdminReply, error) {
	sess, turns := k.Base()+":session:-", k.Base()+":session:-:turns" // never written: fixed KEYS for subscription ops
	if a.Op == AdminMove || a.Op == AdminEnd {
		sess, turns = k.Session(a.Target), k.Turns(a.Target)
	}
	keys := make([]string, 0, 5+len(subs.triples))
	keys = append(keys, k.Subs(), k.Events(), sess, turns)
	keys = append(keys, subs.triples...)
	keys = append(keys, k.Rank(), k.RankAt())
	args := make([]any, 0, 8+len(subs.ids))
	args = append(args, a.Op, a.Target, a.To, a.Actor, a.ApproachAt, a.StaleMS, a.IdleMS, len(subs.ids))
	args = append(args, subs.ids...)
	v, err := run(ctx, c, "admin "+a.Op, adminScript, keys, 3, args...)
	if v == nil {
		return AdminReply{}, err
	}
	return AdminReply{Changed: v.code() == CodeOK, Status: v.str(1), Detail: v.str(2)}, err
}

// ScanSessions is one SCAN step over the pool's session hashes (never
// KEYS: it would block Redis for the whole key space): the session ids
// found and the next cursor (0 when the scan is complete).
func ScanSessions(ctx context.Context, c redis.Cmdable, k Keys, cursor uint64, count int64) ([]string, uint64, error) {
	prefix := k.Base() + ":session:"
	keys, next, err := c.ScanType(ctx, cursor, prefix+"*", count, "hash").Result()
	if err != nil {
		return nil, 0, fmt.Errorf("lua: scan sessions: %w", err)
	}
	out := make([]string, 0, len(keys))
	for _, key := range keys {
		sid := key[len(prefix):]
		if ValidID(sid) && sid != "-" { // ":turns" lists are not hashes; "-" is the placeholder
			out = append(out, sid)
		}
	}
	return out, next, nil
}

// UsageSince reads the usage stream from fromMS on, at most max entries,
// oldest first, in pages (the stream holds at most 7 days).
func UsageSince(ctx context.Context, c redis.Cmdable, k Keys, fromMS int64, max int64) ([]redis.XMessage, error) {
	var out []redis.XMessage
	start := strconv.FormatInt(fromMS, 10)
	const page = 1000
	for int64(len(out)) < max {
		msgs, err := c.XRangeN(ctx, k.Usage(), start, "+", page).Result()
		if err != nil {
			return nil, fmt.Errorf("lua: read usage: %w", err)
		}
		out = append(out, msgs...)
		if len(msgs) < page {
			break
		}
		start = "(" + msgs[len(msgs)-1].ID
	}
	if int64(len(out)) > max {
		out = out[:max]
	}
	return out, nil
}

// RecentEvents reads up to count entries of the events stream after the
// id since ("" or "0": the newest count), newest first.
func RecentEvents(ctx context.Context, c redis.Cmdable, k Keys, since string, count int64) ([]redis.XMessage, error) {
	end := "-"
	if since != "" && since != "0" {
		end = "(" + since
	}
	msgs, err := c.XRevRangeN(ctx, k.Events(), "+", end, count).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("lua: read events: %w", err)
	}
	return msgs, nil
}
