package deploy

import (
	"strings"
	"testing"
)

// TestBundledRedis: with no redis.url or redis.addrs the chart runs its own
// Redis (one command installs everything) with the AOF on a PVC and the
// password from the chart's Secret; naming a Redis turns it off.
func TestBundledRedis(t *testing.T) {
	m := render(t, "--set", "redis.url=", "--set", "secrets.existingSecret=authpool")
	if len(m.statefulSets) != 1 {
		t.Fatalf("statefulSets = %d, want the bundled Redis", len(m.statefulSets))
	}
	ss := m.statefulSets[0]
	c := ss.Spec.Template.Spec.Containers[0]
	if !strings.HasPrefix(c.Image, "redis:") {
		t.Errorf("image %q, want the official redis image", c.Image)
	}
	cmd := strings.Join(c.Args, " ")
	for _, want := range []string{"--appendonly yes", "--appendfsync everysec", "--dir /data", "--requirepass \"$REDIS_PASSWORD\""} {
		if !strings.Contains(cmd, want) {
			t.Errorf("redis-server command lacks %q: %s", want, cmd)
		}
	}
	if len(c.Env) != 1 || c.Env[0].Name != "REDIS_PASSWORD" || c.Env[0].ValueFrom.SecretKeyRef.Name != "authpool" {
		t.Errorf("password env = %+v, want REDIS_PASSWORD from the chart's secret", c.Env)
	}
	if len(ss.Spec.VolumeClaimTemplates) != 1 || c.VolumeMounts[0].MountPath != "/data" {
		t.Errorf("the data dir is not on a PVC: %+v", ss.Spec.VolumeClaimTemplates)
	}
	for _, comp := range []string{"gateway", "rebalancer"} {
		d := m.deployments[comp]
		var url string
		for _, e := range d.Spec.Template.Spec.Containers[0].Env {
			if e.Name == "REDIS_URL" {
				url = e.Value
			}
		}
		if url != "redis://authpool-redis:6379" {
			t.Errorf("%s REDIS_URL = %q, want the bundled Redis' service", comp, url)
		}
	}
	if m.services["redis"] == nil {
		t.Error("no service for the bundled Redis")
	}

	// A Redis of one's own: no bundled one.
	m = render(t, "--set", "redis.url=redis://elsewhere:6379")
	if len(m.statefulSets) != 0 {
		t.Error("the bundled Redis runs although redis.url names one")
	}
	m = render(t, "--set", "redis.url=", "--set-json", `redis.addrs=["a:26379"]`, "--set", "redis.masterName=m")
	if len(m.statefulSets) != 0 {
		t.Error("the bundled Redis runs although redis.addrs names one")
	}
}
