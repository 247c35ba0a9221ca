package main

import (
	"slices"
	"strings"
	"testing"
)

// TestLoadEnvTrustedProxies (finding 10): TRUSTED_PROXIES is a
// comma-separated list of CIDRs or IPs, none by default; a bad entry stops
// the start-up with the variable's name.
func TestLoadEnvTrustedProxies(t *testing.T) {
	c, err := loadEnv(env(map[string]string{}))
	if err != nil || len(c.TrustedProxies) != 0 {
		t.Fatalf("default = %q, %v; want none", c.TrustedProxies, err)
	}
	c, err = loadEnv(env(map[string]string{"TRUSTED_PROXIES": " 10.0.0.0/8, 127.0.0.1 ,fd00::/8,"}))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"10.0.0.0/8", "127.0.0.1", "fd00::/8"}; !slices.Equal(c.TrustedProxies, want) {
		t.Errorf("trusted proxies = %q, want %q", c.TrustedProxies, want)
	}
	if !strings.Contains(c.String(), "trustedProxies=10.0.0.0/8,127.0.0.1,fd00::/8") {
		t.Errorf("String() = %s", c)
	}
	for _, bad := range []string{"10.0.0.0/33", "proxy.local", "10.0.0.0/8,nope"} {
		_, err := loadEnv(env(map[string]string{"TRUSTED_PROXIES": bad}))
		if err == nil || !strings.Contains(err.Error(), "TRUSTED_PROXIES") {
			t.Errorf("TRUSTED_PROXIES=%q: err = %v, want one naming the variable", bad, err)
		}
	}
}
