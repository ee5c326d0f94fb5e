// Package helm holds the tests of the Helm chart in orrery/.
package helm

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"
)

const chart = "orrery"

// helmPath finds the helm pinned in this module's go.mod, a tool built once into Go's build cache. Asking
// go tool once for the binary, rather than running go tool per call, saves the go command's staleness
// check of helm's ~1,500 packages on every call.
var helmPath = sync.OnceValues(func() (string, error) {
	cmd := exec.Command("go", "tool", "-n", "helm")
	cmd.Env = append(os.Environ(), "GOWORK=off")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("build helm with go tool: %w\n%s", err, out)
	}
	return strings.TrimSpace(string(out)), nil
})

// helm runs helm with its state in throwaway directories.
func helm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	path, err := helmPath()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), path, args...)
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+t.TempDir(), "HELM_CONFIG_HOME="+t.TempDir(), "HELM_DATA_HOME="+t.TempDir())
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("helm %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// manifests are the rendered objects, decoded strictly into the Kubernetes API types.
type manifests struct {
	deployments  []appsv1.Deployment
	statefulSets []appsv1.StatefulSet
	services     []corev1.Service
	secrets      []corev1.Secret
	budgets      []policyv1.PodDisruptionBudget
}

// decode splits helm template's output and decodes every document strictly, so a misspelled or misplaced
// field fails here rather than being dropped by the API server.
func decode(t *testing.T, rendered string) manifests {
	t.Helper()
	m, err := decodeStrictly(rendered)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func decodeStrictly(rendered string) (manifests, error) {
	var m manifests
	for doc := range strings.SplitSeq(rendered, "\n---\n") {
		var head struct{ APIVersion, Kind string }
		if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
			return m, fmt.Errorf("%w in\n%s", err, doc)
		}
		var err error
		switch head.APIVersion + " " + head.Kind {
		case " ":
			continue // a template that rendered nothing
		case "apps/v1 Deployment":
			m.deployments = append(m.deployments, strict[appsv1.Deployment](&err, doc))
		case "apps/v1 StatefulSet":
			m.statefulSets = append(m.statefulSets, strict[appsv1.StatefulSet](&err, doc))
		case "v1 Service":
			m.services = append(m.services, strict[corev1.Service](&err, doc))
		case "v1 Secret":
			m.secrets = append(m.secrets, strict[corev1.Secret](&err, doc))
		case "policy/v1 PodDisruptionBudget":
			m.budgets = append(m.budgets, strict[policyv1.PodDisruptionBudget](&err, doc))
		default:
			return m, fmt.Errorf("the chart renders a %s %s the test does not know: add it to decodeStrictly", head.APIVersion, head.Kind)
		}
		if err != nil {
			return m, fmt.Errorf("%w in\n%s", err, doc)
		}
	}
	return m, nil
}

func strict[T any](errp *error, doc string) T {
	var v T
	*errp = yaml.UnmarshalStrict([]byte(doc), &v)
	return v
}

func TestLint(t *testing.T) {
	t.Parallel()
	if out, err := helm(t, "lint", "--strict", chart, "--values", chart+"/ci/test-values.yaml"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
}

func TestTemplate(t *testing.T) {
	t.Parallel()
	out, err := helm(t, "template", "acme", chart, "--values", chart+"/ci/test-values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	m := decode(t, out)
	if len(m.deployments) != 1 || len(m.statefulSets) != 1 || len(m.budgets) != 2 || len(m.secrets) != 2 {
		t.Fatalf("rendered %d deployments, %d stateful sets, %d disruption budgets, %d secrets; want 1, 1, 2, 2",
			len(m.deployments), len(m.statefulSets), len(m.budgets), len(m.secrets))
	}
	secrets := map[string]corev1.Secret{}
	for _, s := range m.secrets {
		secrets[s.Name] = s
	}

	cp := m.deployments[0]
	if *cp.Spec.Replicas != 2 {
		t.Errorf("control plane replicas %d, want 2", *cp.Spec.Replicas)
	}
	cpc := cp.Spec.Template.Spec.Containers[0]
	checkProbes(t, cpc, "http")
	if env := envOf(cpc); env["ORRERY_ISSUER"] != "https://orrery.example.test" || env["ORRERY_LISTEN"] != "0.0.0.0:8080" ||
		env["GOMEMLIMIT"] != "900MiB" {
		t.Errorf("control plane environment %v", env)
	}
	// The secrets reach the control plane from a Secret, never as literal values in the pod spec.
	if len(cpc.EnvFrom) != 1 || cpc.EnvFrom[0].SecretRef == nil {
		t.Fatalf("control plane envFrom %+v, want one Secret", cpc.EnvFrom)
	}
	cpSecret, ok := secrets[cpc.EnvFrom[0].SecretRef.Name]
	if !ok {
		t.Fatalf("the control plane reads Secret %q, which the chart does not render", cpc.EnvFrom[0].SecretRef.Name)
	}
	for _, key := range []string{"ORRERY_DATABASE_URL", "ORRERY_ADMIN_TOKEN", "ORRERY_TOKEN_SIGNING_KEY", "ORRERY_SECRET_KEYS"} {
		if cpSecret.StringData[key] == "" {
			t.Errorf("Secret %s lacks %s", cpSecret.Name, key)
		}
	}
	if spec, _ := yaml.Marshal(cp.Spec.Template); strings.Contains(string(spec), "not-a-password") {
		t.Error("the database password appears in the pod template")
	}

	sat := m.statefulSets[0]
	satc := sat.Spec.Template.Spec.Containers[0]
	checkProbes(t, satc, "mcp")
	if len(sat.Spec.VolumeClaimTemplates) != 1 {
		t.Error("satellites keep their identity in a volume of their own: no volume claim template")
	}
	env := envOf(satc)
	if env["ORRERY_REGISTRATION_TOKEN"] != "" || env["ORRERY_REGISTRATION_TOKEN_FILE"] != "/run/orrery/registration/$(POD_NAME)" {
		t.Errorf("registration token from %q", env["ORRERY_REGISTRATION_TOKEN_FILE"])
	}
	if env["ORRERY_CONTROL_PLANE_URL"] != "http://acme-orrery-controlplane:8080" {
		t.Errorf("satellites reach the control plane at %q", env["ORRERY_CONTROL_PLANE_URL"])
	}
	var registration *corev1.SecretVolumeSource
	for _, v := range sat.Spec.Template.Spec.Volumes {
		if v.Secret != nil {
			registration = v.Secret
		}
	}
	if registration == nil {
		t.Fatal("no registration token volume")
	}
	regSecret := secrets[registration.SecretName]
	// One single-use token per pod, named as the pods are.
	if keys := sortedKeys(regSecret.StringData); !slices.Equal(keys, []string{"acme-orrery-satellite-0", "acme-orrery-satellite-1"}) {
		t.Errorf("registration Secret %q keys %q", registration.SecretName, keys)
	}
	sc := satc.SecurityContext
	if sc == nil || sc.ProcMount == nil || *sc.ProcMount != corev1.UnmaskedProcMount || sc.SeccompProfile == nil ||
		sc.SeccompProfile.Type != corev1.SeccompProfileTypeUnconfined || sc.Capabilities == nil || len(sc.Capabilities.Add) != 0 {
		t.Errorf("satellite security context %+v does not let bubblewrap make namespaces unprivileged", sc)
	}
	if hu := sat.Spec.Template.Spec.HostUsers; hu == nil || *hu {
		t.Error("an unmasked /proc needs the pod in a user namespace of its own (hostUsers: false)")
	}

	// Services and disruption budgets select the pods they are meant for.
	pods := map[string]map[string]string{"controlplane": cp.Spec.Template.Labels, "satellite": sat.Spec.Template.Labels}
	for _, s := range m.services {
		if !selects(s.Spec.Selector, pods[s.Labels["app.kubernetes.io/component"]]) {
			t.Errorf("service %s selects %v, no pods of its component", s.Name, s.Spec.Selector)
		}
	}
	for _, b := range m.budgets {
		if !selects(b.Spec.Selector.MatchLabels, pods[b.Labels["app.kubernetes.io/component"]]) || b.Spec.MaxUnavailable == nil {
			t.Errorf("disruption budget %s %+v", b.Name, b.Spec)
		}
	}
}

// TestTemplateExistingSecrets renders without any secret in the values: the operator's Secrets are named.
func TestTemplateExistingSecrets(t *testing.T) {
	t.Parallel()
	out, err := helm(t, "template", "acme", chart, "--set", "controlPlane.issuer=https://orrery.example.test",
		"--set", "controlPlane.existingSecret=orrery-prod", "--set", "satellite.publicURL=https://mcp.example.test",
		"--set", "satellite.existingRegistrationSecret=orrery-registration")
	if err != nil {
		t.Fatal(err)
	}
	m := decode(t, out)
	if len(m.secrets) != 0 {
		t.Errorf("rendered %d Secrets beside the existing ones", len(m.secrets))
	}
	if name := m.deployments[0].Spec.Template.Spec.Containers[0].EnvFrom[0].SecretRef.Name; name != "orrery-prod" {
		t.Errorf("control plane reads Secret %q", name)
	}
}

// TestDecodingIsStrict: a field the Kubernetes API does not know, here through values an operator could
// misspell, fails the decoding the chart's output goes through.
func TestDecodingIsStrict(t *testing.T) {
	t.Parallel()
	out, err := helm(t, "template", "acme", chart, "--values", chart+"/ci/test-values.yaml", "--set", "controlPlane.extraEnv[0].nmae=X")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := decodeStrictly(out); err == nil || !strings.Contains(err.Error(), `unknown field "nmae"`) {
		t.Errorf("decoding a misspelled field = %v, want an unknown field error", err)
	}
}

// TestTemplateRefusesIncompleteValues: a missing setting fails the render with a message naming it.
func TestTemplateRefusesIncompleteValues(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"no issuer":       {[]string{"--set", "controlPlane.existingSecret=s", "--set", "satellite.enabled=false"}, "controlPlane.issuer"},
		"no database URL": {[]string{"--set", "controlPlane.issuer=https://x.test", "--set", "satellite.enabled=false"}, "controlPlane.secrets.databaseURL"},
		"a token short": {[]string{"--values", chart + "/ci/test-values.yaml", "--set", "satellite.replicas=3"},
			"satellite.registrationTokens has 2 tokens for 3 replicas"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := helm(t, append([]string{"template", "acme", chart}, tc.args...)...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("helm template %v: %v, want an error naming %q", tc.args, err, tc.want)
			}
		})
	}
}

func checkProbes(t *testing.T, c corev1.Container, port string) {
	t.Helper()
	for name, want := range map[string]struct {
		probe *corev1.Probe
		path  string
	}{"liveness": {c.LivenessProbe, "/healthz"}, "readiness": {c.ReadinessProbe, "/readyz"}} {
		p := want.probe
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != want.path || p.HTTPGet.Port.String() != port {
			t.Errorf("%s: %s probe %+v, want GET %s on port %s", c.Name, name, p, want.path, port)
		}
	}
}

func envOf(c corev1.Container) map[string]string {
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	return env
}

func selects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func sortedKeys(m map[string]string) []string {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
