package ids

import (
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// Each id keeps its documented limit and alphabet.
func TestPatterns(t *testing.T) {
	cases := []struct {
		name    string
		re      *regexp.Regexp
		ok, bad []string
	}{
		{"Name", Name, []string{"sub1", "team_A-2", strings.Repeat("x", 64)},
			[]string{"", strings.Repeat("x", 65), "a:b", "a{b}", "a.b", "a b"}},
		{"Key", Key, []string{"s-1", "c6f1e2d0-9a7b", strings.Repeat("x", 128)},
			[]string{"", strings.Repeat("x", 129), "a:b", "a{b}", "a\x00", "a.b"}},
		{"CLISession", CLISession, []string{"0b6e1c1e-5f9a-4a5e-9c7e-2d1f3a4b5c6d"},
			[]string{"", "a_b", "a b", "--help", "-x", strings.Repeat("x", 129)}},
		{"Replica", Replica, []string{"rebalancer-7f9c:1234", "pod.ns@node", strings.Repeat("x", 128)},
			[]string{"", "a b", "a{b}", strings.Repeat("x", 129)}},
		{"Backend", Backend, []string{"claude-cli", "anthropic.api_1", strings.Repeat("x", 64)},
			[]string{"", "a:b", strings.Repeat("x", 65)}},
	}
	for _, c := range cases {
		for _, s := range c.ok {
			if !c.re.MatchString(s) {
				t.Errorf("%s refused %q", c.name, s)
			}
		}
		for _, s := range c.bad {
			if c.re.MatchString(s) {
				t.Errorf("%s accepted %q", c.name, s)
			}
		}
	}
	if got := NotReplica.ReplaceAllString("my host/pod{1}", "-"); !Replica.MatchString(got) {
		t.Errorf("sanitised %q is no Replica", got)
	}
	if !ValidSession(strings.Repeat("s", 128)) || ValidSession(strings.Repeat("s", 129)) {
		t.Error("session ids are [A-Za-z0-9_-]{1,128} (README)")
	}
	if !ValidName("sub1") || ValidName(strings.Repeat("s", 65)) || !ValidKey("req-1") {
		t.Error("ValidName/ValidKey")
	}
}

// ProcessName always makes a Replica, however odd or long the host name
// or prefix, and ends with the pid.
func TestProcessName(t *testing.T) {
	pid := "-" + strconv.Itoa(os.Getpid())
	for _, prefix := range []string{"", "api-", "a b/c:" + strings.Repeat("x", 200)} {
		n := ProcessName(prefix, "none")
		if !Replica.MatchString(n) || !strings.HasSuffix(n, pid) {
			t.Errorf("ProcessName(%q) = %q: not a Replica ending in the pid", prefix, n)
		}
	}
}
