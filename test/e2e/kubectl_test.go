//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"sluice.dev/sluice/kindconfig"
)

// kubectlBinary finds kubectl: $KUBECTL, then PATH, then the offline kind
// scripts' build.
func kubectlBinary(t *testing.T) string {
	t.Helper()
	if k := os.Getenv("KUBECTL"); k != "" {
		return k
	}
	if k, err := exec.LookPath("kubectl"); err == nil {
		return k
	}
	cache := os.Getenv("OFFLINE_K8S_CACHE")
	if cache == "" {
		cache = "/var/cache/offline-k8s"
	}
	k := filepath.Join(cache, kindconfig.KubernetesVersion, "bin", "kubectl")
	if _, err := os.Stat(k); err != nil {
		t.Fatalf("no kubectl: set KUBECTL, put one on PATH, or build it with ../shared/kind/build-k8s")
	}
	return k
}

// kubectlCmd runs kubectl against the cluster under test.
type kubectlCmd struct {
	t          *testing.T
	bin, kconf string
	ns         string
}

func newKubectl(t *testing.T, c *kindconfig.Cluster, ns string) *kubectlCmd {
	t.Helper()
	cfg, err := c.Provider.KubeConfig(c.Name, false)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return &kubectlCmd{t: t, bin: kubectlBinary(t), kconf: path, ns: ns}
}

// run returns kubectl's output and error.
func (k *kubectlCmd) run(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, k.bin, append([]string{"--kubeconfig", k.kconf, "-n", k.ns}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// must runs kubectl and fails the test when it fails.
func (k *kubectlCmd) must(args ...string) string {
	k.t.Helper()
	out, err := k.run(args...)
	if err != nil {
		k.t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	k.t.Logf("kubectl %s:\n%s", strings.Join(args, " "), strings.TrimRight(out, "\n"))
	return out
}

// The user's path with the kubectl binary: a sample applied from its file
// is Submitted, kubectl get and describe show its columns and events, and
// kubectl delete leaves nothing. A faulty file is refused or marked
// invalid, with the reason where kubectl shows it.
func TestKubectlUserPath(t *testing.T) {
	c := cluster(t)
	ns := namespace(t, c, "e2e-kubectl")
	k := newKubectl(t, c, ns)
	sample := filepath.Join(repoDir(), "config", "samples", "streams_v1alpha1_job.yaml")

	k.must("apply", "-f", sample)
	k.must("wait", "--for=condition=Submitted", "streamsjob/sample-job", "--timeout=3m")

	get := k.must("get", "streamsjobs")
	if !regexp.MustCompile(`(?m)^NAME\s+STATUS\s+PES\s+CONNECTED\s+GENERATION\s+AGE$`).MatchString(get) ||
		!regexp.MustCompile(`(?m)^sample-job\s+Submitted\s+3\s+3\s+1\s+\S+$`).MatchString(get) {
		t.Errorf("kubectl get streamsjobs shows\n%s\nwant sample-job Submitted with 3 of 3 PEs connected", get)
	}
	pes := k.must("get", "spe", "-l", "streams.sluice.dev/job=sample-job")
	if n := len(regexp.MustCompile(`(?m)^sample-job-\S+\s+sample-job\s+1\s+0\s+Connected\s+Running\s+\S+`).FindAllString(pes, -1)); n != 3 {
		t.Errorf("kubectl get spe shows %d connected running PEs of launch 1, want 3:\n%s", n, pes)
	}
	desc := k.must("describe", "streamsjob", "sample-job")
	for _, want := range []string{"Phase:", "Submitted", "Valid", "Normal", "all 3 PEs running and connected"} {
		if !strings.Contains(desc, want) {
			t.Errorf("kubectl describe does not show %q", want)
		}
	}

	// A fault the API server refuses: kubectl apply fails, naming the field.
	broken := filepath.Join(t.TempDir(), "broken.yaml")
	b, err := os.ReadFile(sample)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, broken, strings.Replace(strings.Replace(string(b), "kind: map", "kind: teleport", 1), "name: sample-job", "name: broken-job", 1))
	if out, err := k.run("apply", "-f", broken); err == nil || !strings.Contains(out, "spec.application.operators[1].kind") {
		t.Errorf("kubectl apply of an unknown operator kind: err %v, output\n%s\nwant a refusal naming spec.application.operators[1].kind", err, out)
	}
	// A fault only the operator sees: the Job is marked Valid=False and
	// describe shows the reason as a Warning event.
	cyclic := strings.Replace(strings.Replace(string(b), "kind: map", "kind: union", 1), "name: sample-job", "name: cyclic-job", 1)
	cyclic = strings.Replace(cyclic, "    - from: {operator: work}\n      to: {operator: sink}\n",
		"    - from: {operator: work}\n      to: {operator: sink}\n    - from: {operator: work}\n      to: {operator: work, port: 1}\n", 1)
	writeFile(t, broken, cyclic)
	k.must("apply", "-f", broken)
	k.must("wait", "--for=condition=Valid=false", "streamsjob/cyclic-job", "--timeout=1m")
	desc = k.must("describe", "streamsjob", "cyclic-job")
	for _, want := range []string{"Invalid", "Warning", "InvalidApplication", "cycle"} {
		if !strings.Contains(desc, want) {
			t.Errorf("kubectl describe of a cyclic Job does not show %q", want)
		}
	}

	k.must("delete", "-f", sample, "-f", broken, "--wait=true", "--timeout=2m")
	waitFor(t, 2*time.Minute, "nothing left", func(ctx context.Context) (bool, string) {
		left, err := leftovers(ctx, c, ns)
		if err != nil {
			return false, err.Error()
		}
		return len(left) == 0, strings.Join(left, ", ")
	})
	if out := k.must("get", "streamsjobs,spe,pods,services,configmaps", "-l", "streams.sluice.dev/job"); !strings.Contains(out, "No resources found") {
		t.Errorf("kubectl get after delete shows\n%s", out)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
