package lua

import "context"

// RateLimitReply is gcra.lua's answer.
type RateLimitReply struct {
	Allowed      bool
	Remaining    int
	RetryAfterMS int64
}

// RateLimit runs gcra.lua: one request of subject against a limit of one
// request every intervalMS on average, burst at once.
func RateLimit(ctx context.Context, c Scripter, k Keys, subject string, intervalMS int64, burst int) (RateLimitReply, error) {
	v, err := run(ctx, c, "rate limit", gcraScript, []string{k.RateLimit(subject)}, 3, intervalMS, burst)
	if err != nil {
		return RateLimitReply{}, err
	}
	return RateLimitReply{Allowed: v.code() == CodeOK, Remaining: v.int(1), RetryAfterMS: v.int64(2)}, nil
}
