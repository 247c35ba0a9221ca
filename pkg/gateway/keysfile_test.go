package gateway

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
)

// TestKeysFileProblems: every problem is reported with its JSON path, and
// no message quotes a key.
func TestKeysFileProblems(t *testing.T) {
	const secret = "s3cr3t-key-material-xyz"
	cases := []struct {
		name, file string
		wantPaths  []string
	}{
		{"valid", `[{"name":"alice","key":"` + secret + `","weeklyBudget":5,"models":["sonnet"]},
			{"name":"bob","sha256":"` + strings.Repeat("ab", 32) + `","rateLimitPerMinute":10}]`, nil},
		{"every problem", `[{"name":"-bad","key":"short"},
			{"name":"ok","key":"` + secret + `","sha256":"` + strings.Repeat("ab", 32) + `"},
			{"name":"ok","sha256":"zz","weeklyBudget":-1,"rateLimitPerMinute":-2,"models":["", "a", "a"]},
			{"name":"dup","key":"` + secret + `"}]`,
			[]string{"[0].name", "[0].key", "[1]", "[2].name", "[2].sha256", "[2].rateLimitPerMinute",
				"[2].weeklyBudget", "[2].models[0]", "[2].models[2]"}},
		{"empty", `[]`, []string{""}},
		{"syntax", `[{"name":"a","key":"` + secret + `"`, []string{""}},
		{"unknown field", `[{"name":"a","key":"` + secret + `","budget":1}]`, []string{""}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, ps := parseKeysFile([]byte(tc.file))
			var got []string
			for _, p := range ps {
				got = append(got, p.Path)
				if strings.Contains(p.Message, secret) || strings.Contains(p.Message, "short") {
					t.Errorf("a problem quotes a key: %v", p)
				}
			}
			for _, w := range tc.wantPaths {
				found := false
				for _, g := range got {
					found = found || g == w
				}
				if !found {
					t.Errorf("no problem at %q; got %v", w, ps)
				}
			}
			if tc.wantPaths == nil && len(ps) > 0 {
				t.Errorf("problems in a valid file: %v", ps)
			}
		})
	}
}

// TestKeyringMatchesNamedKeys: a named key matches by its key or its
// sha256 and carries its limits, never its secret.
func TestKeyringMatchesNamedKeys(t *testing.T) {
	keys, ps := parseKeysFile([]byte(`[{"name":"alice","key":"alice-key-0123456789","weeklyBudget":2},
		{"name":"bob","sha256":"` + sha256Hex("bob-key-0123456789ab") + `"}]`))
	if len(ps) > 0 {
		t.Fatal(ps)
	}
	k := newKeyring([]string{"plain-key"}).with(keys)
	for key, want := range map[string]string{"alice-key-0123456789": "alice", "bob-key-0123456789ab": "bob", "plain-key": ""} {
		e, ok := k.match(key)
		if !ok || e.Name != want || e.Key != "" || e.SHA256 != "" {
			t.Errorf("match(%s) = %+v %v, want %q without its secret", want, e, ok, want)
		}
	}
	if _, ok := k.match("nope"); ok {
		t.Error("an unknown key matched")
	}
}

func sha256Hex(s string) string {
	d := sha256.Sum256([]byte(s))
	return hex.EncodeToString(d[:])
}
