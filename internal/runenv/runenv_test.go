package runenv

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestList(t *testing.T) {
	if got := List(" a, b,,c ,"); !reflect.DeepEqual(got, []string{"a", "b", "c"}) {
		t.Errorf("List = %q", got)
	}
	if got := List(""); got != nil {
		t.Errorf("List(\"\") = %q", got)
	}
}

func TestDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{"30": 30 * time.Second, "1m30s": 90 * time.Second, "250ms": 250 * time.Millisecond} {
		if got, err := Duration(in); err != nil || got != want {
			t.Errorf("Duration(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := Duration("soon"); err == nil {
		t.Error("Duration(soon) succeeded")
	}
}

// TestRedis: the settings are read, checked and described without their
// secrets, and a password-less URL takes REDIS_PASSWORD.
func TestRedis(t *testing.T) {
	env := func(kv map[string]string) func(string) string { return func(k string) string { return kv[k] } }
	tests := []struct {
		env     map[string]string
		mode    string
		problem string
	}{
		{env: map[string]string{}, mode: "none"},
		{env: map[string]string{"REDIS_URL": "redis://:s3cret@h:6379/0"}, mode: "REDIS_URL"},
		{env: map[string]string{"REDIS_ADDRS": "a:26379,b:26379", "REDIS_MASTER_NAME": "m"}, mode: "sentinel m a:26379,b:26379"},
		{env: map[string]string{"REDIS_ADDRS": "a:7000,b:7000"}, mode: "cluster a:7000,b:7000"},
		{env: map[string]string{"REDIS_ADDRS": "a:6379"}, mode: "node a:6379"},
		{env: map[string]string{"REDIS_URL": "redis://h", "REDIS_ADDRS": "a:1"}, mode: "REDIS_URL", problem: "not both"},
		{env: map[string]string{"REDIS_URL": "http://:s3cret@h"}, mode: "REDIS_URL", problem: "not a redis://"},
	}
	for _, tc := range tests {
		r := RedisFromEnv(env(tc.env))
		if r.Describe() != tc.mode {
			t.Errorf("%v: mode %q, want %q", tc.env, r.Describe(), tc.mode)
		}
		p := r.Check()
		if (tc.problem == "") != (p == "") || !strings.Contains(p, tc.problem) || strings.Contains(p, "s3cret") {
			t.Errorf("%v: problem %q, want %q", tc.env, p, tc.problem)
		}
	}
	r := RedisFromEnv(env(map[string]string{"REDIS_URL": "redis://h:6379/2", "REDIS_PASSWORD": "pw"}))
	c, err := r.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if o := c.(*redis.Client).Options(); o.Password != "pw" || o.DB != 2 || !o.ContextTimeoutEnabled {
		t.Errorf("options: password set %v, db %d, context timeouts %v", o.Password == "pw", o.DB, o.ContextTimeoutEnabled)
	}
}
