package lua

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/authpool/authpool/internal/redistest"
)

// TestRFC3339MatchesGo: the scripts print times for people (limit_reached
// messages) as RFC 3339 in UTC; Redis Lua has no os.date, so lib.lua does
// the calendar itself. Go's formatting is the reference, leap days and
// century years included.
func TestRFC3339MatchesGo(t *testing.T) {
	script := redis.NewScript(libSrc + "\nreturn rfc3339(tonumber(ARGV[1]))")
	times := []time.Time{
		time.Unix(0, 0),
		time.Date(2000, 2, 29, 23, 59, 59, 999e6, time.UTC),
		time.Date(2024, 2, 29, 12, 0, 0, 0, time.UTC),
		time.Date(2024, 12, 31, 23, 59, 59, 0, time.UTC),
		time.Date(2025, 1, 1, 0, 0, 0, 1e6, time.UTC),
		time.Date(2025, 3, 1, 9, 5, 7, 0, time.UTC),
		time.Date(2100, 3, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2286, 11, 20, 17, 46, 39, 0, time.UTC),
	}
	redistest.Each(t, func(t *testing.T, tg *redistest.Target) {
		for _, tm := range times {
			got, err := script.Run(context.Background(), tg.Client, nil, tm.UnixMilli()).Text()
			want := tm.UTC().Format(time.RFC3339)
			if err != nil || got != want {
				t.Errorf("rfc3339(%d) = %q, %v; want %q", tm.UnixMilli(), got, err, want)
			}
		}
	})
}
