package lua

import (
	"context"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"
)

// reply is a script's array reply: a code first, then its fields.
type reply []any

// run runs s and decodes its reply of n fields, after asynq's
// runScriptWithErrorCode: a reply of another length is ErrReply, and a code
// that means a refusal (codeErrs) is returned as its sentinel error, wrapped
// with op, together with the reply. So no wrapper checks lengths or codes
// of its own.
func run(ctx context.Context, c Scripter, op string, s *redis.Script, keys []string, n int, args ...any) (reply, error) {
	v, err := s.Run(ctx, c, keys, args...).Slice()
	if err != nil {
		return nil, fmt.Errorf("lua: %s: %w", op, err)
	}
	if len(v) != n {
		return nil, fmt.Errorf("lua: %s: a reply of %d fields, want %d: %w", op, len(v), n, ErrReply)
	}
	r := reply(v)
	if err := codeErrs[r.code()]; err != nil {
		return r, fmt.Errorf("lua: %s: %w", op, err)
	}
	return r, nil
}

// runInt runs s, whose reply is one integer (a count, or 1/0).
func runInt(ctx context.Context, c Scripter, op string, s *redis.Script, keys []string, args ...any) (int64, error) {
	n, err := s.Run(ctx, c, keys, args...).Int64()
	if err != nil {
		return 0, fmt.Errorf("lua: %s: %w", op, err)
	}
	return n, nil
}

func (r reply) code() int           { return r.int(0) }
func (r reply) int(i int) int       { return toInt(r[i]) }
func (r reply) int64(i int) int64   { return toInt64(r[i]) }
func (r reply) str(i int) string    { return toStr(r[i]) }
func (r reply) float(i int) float64 { f, _ := strconv.ParseFloat(r.str(i), 64); return f }

func toInt(v any) int { return int(toInt64(v)) }

func toInt64(v any) int64 {
	switch x := v.(type) {
	case int64:
		return x
	case string:
		n, _ := strconv.ParseInt(x, 10, 64)
		return n
	}
	return -1
}

func toStr(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case int64:
		return strconv.FormatInt(x, 10)
	}
	return ""
}
