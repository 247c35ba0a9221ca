package deploy

import (
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/authpool/authpool/internal/runenv"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// secretVars are the variables that must only ever come from a Secret.
var secretVars = []string{"API_KEYS", "ADMIN_TOKEN", "ANTHROPIC_API_KEY", "WEBHOOK_SECRET", "REDIS_PASSWORD", "SENTRY_DSN"}

func env(c corev1.Container, name string) *corev1.EnvVar {
	for i := range c.Env {
		if c.Env[i].Name == name {
			return &c.Env[i]
		}
	}
	return nil
}

func container(t *testing.T, m *manifests, component string) corev1.Container {
	t.Helper()
	d := m.deployments[component]
	if d == nil {
		t.Fatalf("no %s Deployment rendered", component)
	}
	if n := len(d.Spec.Template.Spec.Containers); n != 1 {
		t.Fatalf("%s: %d containers, want 1", component, n)
	}
	return d.Spec.Template.Spec.Containers[0]
}

// renders are the two value sets every structural check runs on.
func renders(t *testing.T) map[string]*manifests {
	return map[string]*manifests{
		"default":    render(t),
		"production": render(t, "-f", productionFile),
	}
}

func TestChartPodsAreLockedDown(t *testing.T) {
	for name, m := range renders(t) {
		t.Run(name, func(t *testing.T) {
			specs := map[string]corev1.PodSpec{}
			for c, d := range m.deployments {
				specs[c] = d.Spec.Template.Spec
			}
			for _, p := range m.pods {
				specs[p.Name] = p.Spec
			}
			if len(specs) != 3 {
				t.Fatalf("got pod specs %v, want gateway, rebalancer and the test pod", slices.Collect(maps.Keys(specs)))
			}
			for owner, s := range specs {
				psc := s.SecurityContext
				if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
					t.Errorf("%s: pod does not require runAsNonRoot", owner)
				}
				if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
					t.Errorf("%s: pod seccomp profile is not RuntimeDefault", owner)
				}
				if s.AutomountServiceAccountToken == nil || *s.AutomountServiceAccountToken {
					t.Errorf("%s: mounts a service account token it never uses", owner)
				}
				for _, c := range s.Containers {
					sc := c.SecurityContext
					switch {
					case sc == nil:
						t.Errorf("%s/%s: no securityContext", owner, c.Name)
					case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
						t.Errorf("%s/%s: allowPrivilegeEscalation is not false", owner, c.Name)
					case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
						t.Errorf("%s/%s: root filesystem is writable", owner, c.Name)
					case sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0:
						t.Errorf("%s/%s: capabilities are not drop [ALL]", owner, c.Name)
					}
					if c.Resources.Limits.Memory().IsZero() {
						t.Errorf("%s/%s: no memory limit", owner, c.Name)
					}
				}
			}
			// The CLI needs a writable HOME and /tmp on a read-only root.
			gw := container(t, m, "gateway")
			for _, dir := range []string{"/tmp", env(gw, "HOME").Value} {
				if mnt := mountFor(gw, dir); mnt == nil || mnt.ReadOnly {
					t.Errorf("gateway: %s is not on a writable volume", dir)
				}
			}
		})
	}
}

func TestChartProbesAndPorts(t *testing.T) {
	for name, m := range renders(t) {
		t.Run(name, func(t *testing.T) {
			for component, port := range map[string]string{"gateway": "3000", "rebalancer": "3001"} {
				c := container(t, m, component)
				if e := env(c, "PORT"); e == nil || e.Value != port {
					t.Errorf("%s: PORT = %+v, want %s", component, e, port)
				}
				if len(c.Ports) < 1 || c.Ports[0].Name != "http" || strconv.Itoa(int(c.Ports[0].ContainerPort)) != port {
					t.Errorf("%s: ports %+v, want http:%s", component, c.Ports, port)
				}
				// The gateway's admin surface and /metrics on a port of their own.
				if component == "gateway" {
					if len(c.Ports) != 2 || c.Ports[1].Name != "admin" || c.Ports[1].ContainerPort != 3002 {
						t.Errorf("gateway: ports %+v, want http and admin:3002", c.Ports)
					}
					if e := env(c, "ADMIN_ADDR"); e == nil || e.Value != ":3002" {
						t.Errorf("gateway: ADMIN_ADDR = %+v, want :3002", e)
					}
					if a := m.services["gateway-admin"]; a == nil || a.Spec.Ports[0].TargetPort.String() != "admin" ||
						!labels.SelectorFromSet(a.Spec.Selector).Matches(labels.Set(m.deployments["gateway"].Spec.Template.Labels)) {
						t.Errorf("gateway: no admin Service on the pods' admin port: %+v", a)
					}
				}
				for probe, want := range map[*corev1.Probe]string{c.LivenessProbe: "/health", c.ReadinessProbe: "/ready"} {
					if probe == nil || probe.HTTPGet == nil || probe.HTTPGet.Path != want || probe.HTTPGet.Port.String() != "http" {
						t.Errorf("%s: probe %+v, want GET %s on port http", component, probe, want)
					}
				}
				// Traffic and scrapes reach the pods: each Service selects its own Deployment's pods.
				d, svc := m.deployments[component], m.services[component]
				if svc == nil {
					t.Fatalf("%s: no Service", component)
				}
				podLabels := labels.Set(d.Spec.Template.Labels)
				if !labels.SelectorFromSet(svc.Spec.Selector).Matches(podLabels) {
					t.Errorf("%s: Service selector %v misses pod labels %v", component, svc.Spec.Selector, podLabels)
				}
				if !labels.SelectorFromSet(d.Spec.Selector.MatchLabels).Matches(podLabels) {
					t.Errorf("%s: Deployment selector misses its own pods", component)
				}
				other := map[string]string{"gateway": "rebalancer", "rebalancer": "gateway"}[component]
				if labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(m.deployments[other].Spec.Template.Labels)) {
					t.Errorf("%s: Service also selects %s pods", component, other)
				}
				if svc.Spec.Ports[0].TargetPort.String() != "http" {
					t.Errorf("%s: Service targets %s, want http", component, svc.Spec.Ports[0].TargetPort.String())
				}
			}
			if r := m.deployments["rebalancer"].Spec.Replicas; r == nil || *r != 2 {
				t.Errorf("rebalancer replicas = %v, want 2 (one leads, one stands by)", r)
			}
			for component := range m.deployments {
				c := container(t, m, component)
				for _, name := range []string{"GOMAXPROCS", "GOMEMLIMIT"} {
					e := env(c, name)
					if e == nil || (e.Value == "" && (e.ValueFrom == nil || e.ValueFrom.ResourceFieldRef == nil)) {
						t.Errorf("%s: %s is neither set nor taken from the container's limits", component, name)
					}
				}
			}
		})
	}
}

func TestChartSecretsComeFromSecrets(t *testing.T) {
	m := render(t, "-f", productionFile)
	gw, rb := container(t, m, "gateway"), container(t, m, "rebalancer")
	tokens := []string{"CLAUDE_TOKEN_PROD_SUB1", "CLAUDE_TOKEN_PROD_SUB2", "CLAUDE_TOKEN_PROD_SUB3"}
	for _, c := range []corev1.Container{gw, rb} {
		for _, name := range append(slices.Clone(secretVars), tokens...) {
			e := env(c, name)
			if e != nil && (e.Value != "" || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil) {
				t.Errorf("%s: %s is not a secretKeyRef: %+v", c.Name, name, e)
			}
		}
	}
	want := map[string][]string{
		"gateway":    {"API_KEYS", "ADMIN_TOKEN", "ANTHROPIC_API_KEY", "REDIS_PASSWORD", "SENTRY_DSN"},
		"rebalancer": {"WEBHOOK_SECRET", "REDIS_PASSWORD", "SENTRY_DSN"},
	}
	for component, names := range want {
		c := container(t, m, component)
		for _, name := range secretVars {
			e := env(c, name)
			if !slices.Contains(names, name) {
				if e != nil {
					t.Errorf("%s gets %s, which it does not need", component, name)
				}
				continue
			}
			if e == nil || e.ValueFrom.SecretKeyRef.Name != "authpool-secrets" || e.ValueFrom.SecretKeyRef.Key != name {
				t.Errorf("%s: %s = %+v, want key %s of authpool-secrets", component, name, e, name)
			}
		}
	}
	for _, name := range tokens {
		e := env(gw, name)
		if e == nil || e.ValueFrom.SecretKeyRef.Name != "authpool-claude-tokens" {
			t.Errorf("gateway: %s = %+v, want it from authpool-claude-tokens", name, e)
			continue
		}
		if opt := e.ValueFrom.SecretKeyRef.Optional; opt != nil && *opt {
			t.Errorf("gateway: %s is optional; a missing token must stop the pod", name)
		}
		if env(rb, name) != nil {
			t.Errorf("rebalancer gets %s, which it does not need", name)
		}
	}
	// A renamed key in the token Secret.
	m = render(t, "-f", productionFile, "--set", "subscriptionTokens.keys.CLAUDE_TOKEN_PROD_SUB2=sub2-token")
	if e := env(container(t, m, "gateway"), "CLAUDE_TOKEN_PROD_SUB2"); e == nil || e.ValueFrom.SecretKeyRef.Key != "sub2-token" {
		t.Errorf("CLAUDE_TOKEN_PROD_SUB2 = %+v, want key sub2-token", e)
	}
}

// TestChartConfigLoads hands the rendered auth-pool.json and each container's
// environment to the same loader the processes use.
func TestChartConfigLoads(t *testing.T) {
	cases := map[string]struct {
		args   []string
		ids    []string
		budget float64
	}{
		"default":    {nil, []string{"sub1", "sub2", "sub3"}, 456},
		"production": {[]string{"-f", productionFile}, []string{"prod-sub1", "prod-sub2", "prod-sub3"}, 456},
		"budget override": {[]string{"--set", "weeklyBudget=500", "--set", "rebalancingEnabled=false"},
			[]string{"sub1", "sub2", "sub3"}, 500},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			m := render(t, tc.args...)
			if len(m.configMaps) != 1 {
				t.Fatalf("%d ConfigMaps, want 1", len(m.configMaps))
			}
			cm := m.configMaps[0]
			dir := t.TempDir()
			file := filepath.Join(dir, "auth-pool.json")
			if err := os.WriteFile(file, []byte(cm.Data["auth-pool.json"]), 0o600); err != nil {
				t.Fatal(err)
			}
			for component, d := range m.deployments {
				c := container(t, m, component)
				cfgPath := env(c, "AUTH_POOL_CONFIG").Value
				mnt := mountFor(c, cfgPath)
				if mnt == nil || path.Base(cfgPath) != "auth-pool.json" {
					t.Fatalf("%s: AUTH_POOL_CONFIG %s is not on a mount", component, cfgPath)
				}
				if v := volume(d.Spec.Template.Spec, mnt.Name); v == nil || v.ConfigMap == nil || v.ConfigMap.Name != cm.Name {
					t.Errorf("%s: %s is not the ConfigMap %s", component, mnt.MountPath, cm.Name)
				}
				home := t.TempDir()
				getenv := func(k string) string {
					switch k {
					case "AUTH_POOL_CONFIG":
						return file
					case "HOME":
						return home
					}
					if e := env(c, k); e != nil {
						return e.Value
					}
					return ""
				}
				pe, err := runenv.PoolFromEnv(getenv)
				if err != nil {
					t.Fatalf("%s: %v", component, err)
				}
				cfg, err := pe.Load()
				if err != nil {
					t.Fatalf("%s: the rendered config does not load: %v", component, err)
				}
				var ids []string
				for _, s := range cfg.Subscriptions {
					ids = append(ids, s.ID)
					if s.WeeklyBudget != tc.budget {
						t.Errorf("%s: %s weeklyBudget %v, want %v", component, s.ID, s.WeeklyBudget, tc.budget)
					}
				}
				if !slices.Equal(ids, tc.ids) {
					t.Errorf("%s: subscriptions %v, want %v", component, ids, tc.ids)
				}
				if name == "budget override" && cfg.RebalancingEnabled() {
					t.Errorf("%s: rebalancingEnabled=false did not reach the process", component)
				}
			}
		})
	}
}

func TestChartConfigChangeRollsPods(t *testing.T) {
	checksums := func(m *manifests) (gw, rb string) {
		return m.deployments["gateway"].Spec.Template.Annotations["checksum/config"],
			m.deployments["rebalancer"].Spec.Template.Annotations["checksum/config"]
	}
	g1, r1 := checksums(render(t))
	g2, r2 := checksums(render(t, "--set-json", "authPool.weeklyBudgetThreshold=0.8"))
	g3, _ := checksums(render(t, "--set", "gateway.replicaCount=5"))
	if g1 == "" || g1 != r1 {
		t.Fatalf("checksums %q / %q: want one non-empty checksum on both Deployments", g1, r1)
	}
	if g2 == g1 || r2 == r1 {
		t.Errorf("a config change left the checksum at %s: pods would keep the old config", g1)
	}
	if g3 != g1 {
		t.Errorf("a replica change altered the config checksum")
	}
}

// mountFor is the deepest mount of c that holds p.
func mountFor(c corev1.Container, p string) *corev1.VolumeMount {
	var best *corev1.VolumeMount
	for i, m := range c.VolumeMounts {
		mp := strings.TrimSuffix(m.MountPath, "/")
		if (p == mp || strings.HasPrefix(p, mp+"/")) && (best == nil || len(mp) > len(best.MountPath)) {
			best = &c.VolumeMounts[i]
		}
	}
	return best
}

func volume(s corev1.PodSpec, name string) *corev1.Volume {
	for i := range s.Volumes {
		if s.Volumes[i].Name == name {
			return &s.Volumes[i]
		}
	}
	return nil
}

// TestGatewayDrainsBeforeKill: in-flight CLI turns get the gateway's whole
// shutdown timeout, which ends before the kubelet's SIGKILL.
func TestGatewayDrainsBeforeKill(t *testing.T) {
	for name, m := range renders(t) {
		spec := m.deployments["gateway"].Spec.Template.Spec
		e := env(container(t, m, "gateway"), "SHUTDOWN_TIMEOUT")
		if e == nil {
			t.Fatalf("%s: no SHUTDOWN_TIMEOUT", name)
		}
		d, err := time.ParseDuration(e.Value)
		grace := time.Duration(*spec.TerminationGracePeriodSeconds) * time.Second
		if err != nil || d < 30*time.Second || d >= grace {
			t.Errorf("%s: SHUTDOWN_TIMEOUT %s with a grace period of %s: want at least 30s, ending before the kill", name, e.Value, grace)
		}
	}
}
