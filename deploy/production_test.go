package deploy

import (
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// TestProductionValues checks the production example renders what the
// production guide asks for.
func TestProductionValues(t *testing.T) {
	m := render(t, "-f", productionFile)
	gw := container(t, m, "gateway")

	if len(m.hpas) != 1 || m.hpas[0].Spec.ScaleTargetRef.Name != m.deployments["gateway"].Name ||
		m.hpas[0].Spec.MinReplicas == nil || *m.hpas[0].Spec.MinReplicas != 3 {
		t.Errorf("want one HPA on the gateway with at least 3 replicas, got %+v", m.hpas)
	}
	if m.deployments["gateway"].Spec.Replicas != nil {
		t.Errorf("gateway sets replicas while the HPA owns them: every upgrade would reset the scale")
	}
	if len(m.pdbs) != 2 {
		t.Errorf("%d PodDisruptionBudgets, want one per component", len(m.pdbs))
	}
	for _, pdb := range m.pdbs {
		sel := labels.SelectorFromSet(pdb.Spec.Selector.MatchLabels)
		n := 0
		for _, d := range m.deployments {
			if sel.Matches(labels.Set(d.Spec.Template.Labels)) {
				n++
			}
		}
		if n != 1 {
			t.Errorf("PDB %s selects %d Deployments, want 1", pdb.Name, n)
		}
	}

	if len(m.ingresses) != 1 || len(m.ingresses[0].Spec.TLS) == 0 || m.ingresses[0].Spec.TLS[0].SecretName == "" {
		t.Fatalf("want one Ingress with TLS, got %+v", m.ingresses)
	}
	if b := m.ingresses[0].Spec.Rules[0].HTTP.Paths[0].Backend.Service; b == nil ||
		b.Name != m.services["gateway"].Name || b.Port.Name != "http" {
		t.Errorf("Ingress backend %+v, want the gateway Service's http port", b)
	}

	if len(m.serviceMonitors) != 1 {
		t.Fatalf("%d ServiceMonitors, want 1", len(m.serviceMonitors))
	}
	sm := m.serviceMonitors[0]
	sel := labels.SelectorFromSet(sm.Spec.Selector.MatchLabels)
	// /metrics is on the gateway's admin Service and the rebalancer's; the
	// gateway's API Service has none and is not scraped.
	for component, svc := range m.services {
		scraped := sel.Matches(labels.Set(svc.Labels)) && svc.Spec.Ports[0].Name == sm.Spec.Endpoints[0].Port
		if want := component != "gateway"; scraped != want {
			t.Errorf("ServiceMonitor scrapes the %s Service: %v, want %v", component, scraped, want)
		}
	}
	if sm.Spec.Endpoints[0].Path != "/metrics" || sm.Labels["release"] != "kube-prometheus-stack" {
		t.Errorf("ServiceMonitor endpoint %+v labels %v", sm.Spec.Endpoints[0], sm.Labels)
	}

	for _, c := range []corev1.Container{gw, container(t, m, "rebalancer")} {
		if env(c, "REDIS_URL") != nil || env(c, "REDIS_MASTER_NAME").Value != "authpool" ||
			len(strings.Split(env(c, "REDIS_ADDRS").Value, ",")) != 3 {
			t.Errorf("%s: want Sentinel (3 REDIS_ADDRS + REDIS_MASTER_NAME) and no REDIS_URL", c.Name)
		}
	}
	if e := env(gw, "GOMEMLIMIT"); e == nil || e.Value != "384MiB" {
		t.Errorf("GOMEMLIMIT = %+v, want the explicit 384MiB", e)
	}

	// Shared config dirs: HOME on a ReadWriteMany claim, every ~/ configDir under it.
	if len(m.pvcs) != 1 || !slices.Contains(m.pvcs[0].Spec.AccessModes, corev1.ReadWriteMany) {
		t.Fatalf("want one ReadWriteMany claim for HOME, got %+v", m.pvcs)
	}
	home := env(gw, "HOME").Value
	for _, dir := range []string{"/.claude-prod-sub1", "/.claude-prod-sub2", "/.claude-prod-sub3"} {
		mnt := mountFor(gw, home+dir)
		v := volume(m.deployments["gateway"].Spec.Template.Spec, mnt.Name)
		if mnt.ReadOnly || v.PersistentVolumeClaim == nil || v.PersistentVolumeClaim.ClaimName != m.pvcs[0].Name {
			t.Errorf("config dir ~%s is not on the shared claim", dir)
		}
	}
}

func TestSubscriptionVolumesMountAtConfigDir(t *testing.T) {
	values := map[string]any{
		"authPool": map[string]any{"subscriptions": []any{
			subscription("sub1", "/var/lib/claude/sub1"), subscription("sub2", "~/.claude-sub2"), subscription("sub3", "~/.claude-sub3"),
		}},
		"claudeHome": map[string]any{"subscriptionVolumes": map[string]any{
			"sub2": map[string]any{"persistentVolumeClaim": map[string]any{"claimName": "claude-sub2"}},
		}},
	}
	m := render(t, "-f", writeValues(t, values))
	gw := container(t, m, "gateway")
	spec := m.deployments["gateway"].Spec.Template.Spec
	mnt := mountFor(gw, env(gw, "HOME").Value+"/.claude-sub2")
	if v := volume(spec, mnt.Name); mnt.MountPath != "/home/authpool/.claude-sub2" || v.PersistentVolumeClaim == nil ||
		v.PersistentVolumeClaim.ClaimName != "claude-sub2" {
		t.Errorf("sub2's config dir is on %+v, want the claude-sub2 claim mounted at it", mnt)
	}
	if mnt := mountFor(gw, "/home/authpool/.claude-sub3"); mnt.Name != "claude-home" {
		t.Errorf("sub3 (no volume of its own) is on %s, want HOME's volume", mnt.Name)
	}
	if mnt := mountFor(gw, "/var/lib/claude/sub1"); mnt != nil {
		t.Errorf("an absolute configDir without a volume got mount %s", mnt.Name)
	}
}

func TestHelmTestPodChecksReadiness(t *testing.T) {
	m := render(t)
	if len(m.pods) != 1 {
		t.Fatalf("%d pods, want the helm test pod", len(m.pods))
	}
	p := m.pods[0]
	if p.Annotations["helm.sh/hook"] != "test" {
		t.Errorf("test pod hook = %q, want test", p.Annotations["helm.sh/hook"])
	}
	want := "http://" + m.services["gateway"].Name + ":3000/ready"
	c := p.Spec.Containers[0]
	if !slices.Contains(c.Args, want) || !slices.Contains(c.Args, "--fail") {
		t.Errorf("test pod runs %v %v, want curl --fail %s", c.Command, c.Args, want)
	}
	if p.Spec.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("test pod restartPolicy %s: a failure would retry forever", p.Spec.RestartPolicy)
	}
}
