// Package runenv reads what both binaries take from the environment in the
// same way: comma-separated lists, durations, the Redis connection
// (REDIS_URL, or REDIS_ADDRS with REDIS_MASTER_NAME, and REDIS_PASSWORD), the
// pool variables (AUTH_POOL_*, WEEKLY_BUDGET), production (APP_ENV,
// NODE_ENV) and telemetry (LOG_*, OTEL_EXPORTER_OTLP_*, SENTRY_*); and it
// syncs the pool into Redis at start-up. Each binary reads its environment
// once through it and passes the values down: no package under pkg/ reads
// the environment.
package runenv

import (
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// List splits a comma-separated value, dropping blanks.
func List(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// Duration parses a Go duration ("30s", "1m") or a whole number of seconds.
func Duration(v string) (time.Duration, error) {
	if n, err := strconv.Atoi(v); err == nil {
		return time.Duration(n) * time.Second, nil
	}
	return time.ParseDuration(v)
}

// Redis says how to reach Redis. Password may hold a secret: never log it,
// nor URL (it may carry one).
type Redis struct {
	// URL (REDIS_URL) is one node: redis:// or rediss://.
	URL string
	// Addrs (REDIS_ADDRS, comma-separated) are Sentinel addresses with
	// MasterName (REDIS_MASTER_NAME), else Cluster addresses (several) or
	// one node.
	Addrs      []string
	MasterName string
	// Password (REDIS_PASSWORD) is used with Addrs, and with a URL that
	// carries none.
	Password string
}

// RedisFromEnv reads the Redis variables.
func RedisFromEnv(getenv func(string) string) Redis {
	return Redis{URL: getenv("REDIS_URL"), Addrs: List(getenv("REDIS_ADDRS")),
		MasterName: getenv("REDIS_MASTER_NAME"), Password: getenv("REDIS_PASSWORD")}
}

// ErrRedisURL reports a REDIS_URL that is not a Redis URL; the value itself
// is left out, since it may hold a password.
var ErrRedisURL = errors.New("REDIS_URL: not a redis:// or rediss:// URL")

// Configured reports whether REDIS_URL or REDIS_ADDRS is set.
func (r Redis) Configured() bool { return r.URL != "" || len(r.Addrs) > 0 }

// Check lists what is wrong with the settings ("" when nothing is).
func (r Redis) Check() string {
	if r.URL != "" && len(r.Addrs) > 0 {
		return "set REDIS_URL or REDIS_ADDRS, not both"
	}
	if r.URL != "" {
		if _, err := redis.ParseURL(r.URL); err != nil {
			return ErrRedisURL.Error()
		}
	}
	return ""
}

// Describe names the connection without any secret: "REDIS_URL" (the URL
// may carry a password), "sentinel <master> <addrs>", "cluster <addrs>",
// "node <addr>", or "none".
func (r Redis) Describe() string {
	addrs := strings.Join(r.Addrs, ",")
	switch {
	case r.URL != "":
		return "REDIS_URL"
	case len(r.Addrs) > 0 && r.MasterName != "":
		return "sentinel " + r.MasterName + " " + addrs
	case len(r.Addrs) > 1:
		return "cluster " + addrs
	case len(r.Addrs) == 1:
		return "node " + addrs
	}
	return "none"
}

// Open returns a client for the settings, with context deadlines honoured
// by every command. It does not connect.
func (r Redis) Open() (redis.UniversalClient, error) {
	if r.URL != "" {
		opts, err := redis.ParseURL(r.URL)
		if err != nil {
			return nil, ErrRedisURL
		}
		if opts.Password == "" {
			opts.Password = r.Password
		}
		opts.ContextTimeoutEnabled = true
		return redis.NewClient(opts), nil
	}
	if len(r.Addrs) == 0 {
		return nil, errors.New("set REDIS_URL or REDIS_ADDRS")
	}
	return redis.NewUniversalClient(&redis.UniversalOptions{Addrs: r.Addrs, MasterName: r.MasterName,
		Password: r.Password, ContextTimeoutEnabled: true}), nil
}
