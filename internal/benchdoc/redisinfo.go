package benchdoc

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// InfoField reads one field of a section of Redis' INFO ("memory",
// "used_memory"); ok is false when the field is absent.
func InfoField(ctx context.Context, rdb redis.UniversalClient, section, field string) (value string, ok bool, err error) {
	info, err := rdb.Info(ctx, section).Result()
	if err != nil {
		return "", false, err
	}
	for _, line := range strings.Split(info, "\n") {
		if v, found := strings.CutPrefix(strings.TrimSpace(line), field+":"); found {
			return v, true, nil
		}
	}
	return "", false, nil
}

// UsedMemory is INFO memory's used_memory, bytes.
func UsedMemory(ctx context.Context, rdb redis.UniversalClient) (int64, error) {
	v, ok, err := InfoField(ctx, rdb, "memory", "used_memory")
	if err != nil {
		return 0, err
	}
	if !ok {
		return 0, fmt.Errorf("benchdoc: no used_memory in INFO memory")
	}
	return strconv.ParseInt(v, 10, 64)
}

// RedisVersion is INFO server's redis_version ("?" when absent).
func RedisVersion(ctx context.Context, rdb redis.UniversalClient) (string, error) {
	v, ok, err := InfoField(ctx, rdb, "server", "redis_version")
	if err != nil || !ok {
		return "?", err
	}
	return v, nil
}

// EvalshaMicros is INFO commandstats' EVALSHA usec_per_call: Redis' own time
// per script call (the script with the commands it runs) since the last
// CONFIG RESETSTAT; 0 when no EVALSHA ran.
func EvalshaMicros(ctx context.Context, rdb redis.UniversalClient) (float64, error) {
	v, ok, err := InfoField(ctx, rdb, "commandstats", "cmdstat_evalsha")
	if err != nil || !ok {
		return 0, err
	}
	for _, kv := range strings.Split(v, ",") {
		if us, found := strings.CutPrefix(kv, "usec_per_call="); found {
			return strconv.ParseFloat(us, 64)
		}
	}
	return 0, nil
}
