// Package deploy tests the deployment artefacts: the Helm chart (rendered by
// the real helm binary and decoded strictly into Kubernetes API types), the
// Grafana dashboard, the Prometheus alert rules and the metric names they use.
package deploy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

const (
	chartDir       = "helm/authpool"
	productionFile = "helm/examples/production.yaml"
)

// tool finds a binary on PATH or in $(go env GOPATH)/bin. When it is missing
// the test is skipped, unless requiredEnv is "1" (CI), where it fails.
func tool(t *testing.T, name, requiredEnv string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		for _, dir := range filepath.SplitList(strings.TrimSpace(string(out))) {
			p := filepath.Join(dir, "bin", name)
			if _, err := os.Stat(p); err == nil {
				return p
			}
		}
	}
	if os.Getenv(requiredEnv) == "1" {
		t.Fatalf("%s not found on PATH or in $(go env GOPATH)/bin, and %s=1", name, requiredEnv)
	}
	t.Skipf("%s not found (set %s=1 to make this a failure)", name, requiredEnv)
	return ""
}

func helm(t *testing.T) string { return tool(t, "helm", "HELM_REQUIRED") }

// run runs a command and returns its combined output and error.
func run(bin string, args ...string) (string, error) {
	var out bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// render runs `helm template` on the chart with extra arguments; it fails the
// test when helm refuses.
func render(t *testing.T, args ...string) *manifests {
	t.Helper()
	out, err := templateOutput(t, args...)
	if err != nil {
		t.Fatalf("helm template %v: %v\n%s", args, err, out)
	}
	return decodeManifests(t, out)
}

func templateOutput(t *testing.T, args ...string) (string, error) {
	t.Helper()
	bin := helm(t)
	base := []string{"template", "authpool", chartDir, "--namespace", "ai"}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, append(base, args...)...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stderr.String() + stdout.String(), err
	}
	return stdout.String(), nil
}

// writeValues writes a values file into a temp dir and returns its path.
func writeValues(t *testing.T, v any) string {
	t.Helper()
	data, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// serviceMonitor is the part of monitoring.coreos.com/v1 ServiceMonitor the
// chart renders; decoding into it strictly catches misspelt fields.
type serviceMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Selector          metav1.LabelSelector `json:"selector"`
		NamespaceSelector struct {
			MatchNames []string `json:"matchNames"`
		} `json:"namespaceSelector"`
		Endpoints []struct {
			Port              string           `json:"port"`
			Path              string           `json:"path"`
			Interval          string           `json:"interval"`
			ScrapeTimeout     string           `json:"scrapeTimeout"`
			Relabelings       []map[string]any `json:"relabelings,omitempty"`
			MetricRelabelings []map[string]any `json:"metricRelabelings,omitempty"`
		} `json:"endpoints"`
	} `json:"spec"`
}

// manifests are the documents of one render, by kind.
type manifests struct {
	all             []metav1.Object
	deployments     map[string]*appsv1.Deployment // by component label
	statefulSets    []*appsv1.StatefulSet
	services        map[string]*corev1.Service
	configMaps      []*corev1.ConfigMap
	pods            []*corev1.Pod
	pdbs            []*policyv1.PodDisruptionBudget
	hpas            []*autoscalingv2.HorizontalPodAutoscaler
	ingresses       []*networkingv1.Ingress
	pvcs            []*corev1.PersistentVolumeClaim
	serviceAccounts []*corev1.ServiceAccount
	serviceMonitors []*serviceMonitor
}

// decodeManifests splits helm's output into documents and decodes each one
// strictly into its API type: an unknown or misplaced field fails the test.
func decodeManifests(t *testing.T, out string) *manifests {
	t.Helper()
	m := &manifests{deployments: map[string]*appsv1.Deployment{}, services: map[string]*corev1.Service{}}
	r := k8syaml.NewYAMLReader(bufio.NewReader(strings.NewReader(out)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("split manifests: %v", err)
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			t.Fatalf("decode type of\n%s: %v", doc, err)
		}
		obj, err := m.add(tm, doc)
		if err != nil {
			t.Fatalf("%s: %v\n%s", tm.Kind, err, doc)
		}
		checkMeta(t, tm.Kind, obj)
		m.all = append(m.all, obj)
	}
	return m
}

func (m *manifests) add(tm metav1.TypeMeta, doc []byte) (metav1.Object, error) {
	strict := func(v any) error { return yaml.UnmarshalStrict(doc, v) }
	switch tm.APIVersion + " " + tm.Kind {
	case "apps/v1 Deployment":
		var d appsv1.Deployment
		err := strict(&d)
		m.deployments[d.Labels["app.kubernetes.io/component"]] = &d
		return &d, err
	case "apps/v1 StatefulSet":
		var ss appsv1.StatefulSet
		err := strict(&ss)
		m.statefulSets = append(m.statefulSets, &ss)
		return &ss, err
	case "v1 Service":
		var s corev1.Service
		err := strict(&s)
		m.services[s.Labels["app.kubernetes.io/component"]] = &s
		return &s, err
	case "v1 ConfigMap":
		var c corev1.ConfigMap
		err := strict(&c)
		m.configMaps = append(m.configMaps, &c)
		return &c, err
	case "v1 Pod":
		var p corev1.Pod
		err := strict(&p)
		m.pods = append(m.pods, &p)
		return &p, err
	case "v1 ServiceAccount":
		var s corev1.ServiceAccount
		err := strict(&s)
		m.serviceAccounts = append(m.serviceAccounts, &s)
		return &s, err
	case "v1 PersistentVolumeClaim":
		var p corev1.PersistentVolumeClaim
		err := strict(&p)
		m.pvcs = append(m.pvcs, &p)
		return &p, err
	case "policy/v1 PodDisruptionBudget":
		var p policyv1.PodDisruptionBudget
		err := strict(&p)
		m.pdbs = append(m.pdbs, &p)
		return &p, err
	case "autoscaling/v2 HorizontalPodAutoscaler":
		var h autoscalingv2.HorizontalPodAutoscaler
		err := strict(&h)
		m.hpas = append(m.hpas, &h)
		return &h, err
	case "networking.k8s.io/v1 Ingress":
		var i networkingv1.Ingress
		err := strict(&i)
		m.ingresses = append(m.ingresses, &i)
		return &i, err
	case "monitoring.coreos.com/v1 ServiceMonitor":
		var s serviceMonitor
		err := strict(&s)
		m.serviceMonitors = append(m.serviceMonitors, &s)
		return &s, err
	}
	return nil, fmt.Errorf("unexpected kind %s %s (a Secret, or a kind this test does not know)", tm.APIVersion, tm.Kind)
}

// checkMeta asserts what the API server would refuse: a bad name or label.
func checkMeta(t *testing.T, kind string, o metav1.Object) {
	t.Helper()
	for _, msg := range validation.IsDNS1123Subdomain(o.GetName()) {
		t.Errorf("%s name %q: %s", kind, o.GetName(), msg)
	}
	for k, v := range o.GetLabels() {
		for _, msg := range append(validation.IsQualifiedName(k), validation.IsValidLabelValue(v)...) {
			t.Errorf("%s %s label %s=%s: %s", kind, o.GetName(), k, v, msg)
		}
	}
	if o.GetLabels()["app.kubernetes.io/instance"] != "authpool" {
		t.Errorf("%s %s: no app.kubernetes.io/instance label", kind, o.GetName())
	}
}

func stripComments(doc []byte) []byte {
	var b bytes.Buffer
	for _, line := range strings.Split(string(doc), "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line + "\n")
		}
	}
	return b.Bytes()
}

func TestHelmLintStrict(t *testing.T) {
	bin := helm(t)
	for name, args := range map[string][]string{
		"default values":    nil,
		"production values": {"-f", productionFile},
	} {
		t.Run(name, func(t *testing.T) {
			out, err := run(bin, append([]string{"lint", "--strict", chartDir}, args...)...)
			if err != nil {
				t.Fatalf("helm lint --strict: %v\n%s", err, out)
			}
		})
	}
}
