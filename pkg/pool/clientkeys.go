package pool

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"time"

	"github.com/authpool/authpool/pkg/lua"
)

// ErrInvalidKeyName: a client key name that does not match keyNamePattern.
var ErrInvalidKeyName = errors.New("pool: invalid client key name")

// keyNamePattern: a name starts with a letter or digit, so that it never
// collides with the placeholder settle uses for no name.
var keyNamePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)

// ValidKeyName reports whether s may name a client key (API_KEYS_FILE):
// ^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$. It becomes part of Redis keys.
func ValidKeyName(s string) bool { return keyNamePattern.MatchString(s) }

// KeyUsage is a named client key's usage, written by every settle of its
// requests.
type KeyUsage struct {
	// Requests and Tokens are totals since the pool's data began; Cost is
	// the total in USD.
	Requests, Tokens int64
	Cost             float64
	// Weekly is the rolling 7-day cost in USD (the hourly buckets of the
	// last 168 hours, as the subscriptions' weekly usage).
	Weekly float64
	// LastUsageAt is the last settle's time (zero before any).
	LastUsageAt time.Time

	hours []hourCost // the weekly window's buckets, oldest first
	now   time.Time
}

type hourCost struct {
	hour int64
	usd  float64
}

// ClientKeyUsage reads the usage of the client key named name.
func (p *Pool) ClientKeyUsage(ctx context.Context, name string) (KeyUsage, error) {
	if !ValidKeyName(name) {
		return KeyUsage{}, ErrInvalidKeyName
	}
	totals, hourly, now, err := lua.ClientKeyUsage(ctx, p.rdb, p.keys, name)
	if err != nil {
		return KeyUsage{}, fmt.Errorf("pool: %w", err)
	}
	u := KeyUsage{Cost: atof(totals["cost"]), now: now}
	u.Requests, _ = strconv.ParseInt(totals["requests"], 10, 64)
	u.Tokens, _ = strconv.ParseInt(totals["tokens"], 10, 64)
	if ms, err := strconv.ParseInt(totals["lastUsageAt"], 10, 64); err == nil {
		u.LastUsageAt = time.UnixMilli(ms)
	}
	cur := now.UnixMilli() / time.Hour.Milliseconds()
	for h, v := range hourly {
		hour, err := strconv.ParseInt(h, 10, 64)
		if err != nil || hour < cur-167 {
			continue
		}
		u.hours = append(u.hours, hourCost{hour, atof(v)})
		u.Weekly += atof(v)
	}
	slices.SortFunc(u.hours, func(a, b hourCost) int { return int(a.hour - b.hour) })
	return u, nil
}

// ResetAt is when the rolling weekly usage falls under budget again, as
// the oldest hours leave the 7-day window; the zero time when it is under
// budget now.
func (u KeyUsage) ResetAt(budget float64) time.Time {
	left := u.Weekly
	if left < budget {
		return time.Time{}
	}
	for _, h := range u.hours {
		left -= h.usd
		if left < budget {
			return time.UnixMilli((h.hour + 168) * time.Hour.Milliseconds())
		}
	}
	return u.now.Add(7 * 24 * time.Hour)
}
