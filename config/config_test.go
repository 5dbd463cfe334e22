package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/app"
	"sluice.dev/sluice/platform/render"
)

// byKind indexes rendered objects by kind.
func byKind(objs []*unstructured.Unstructured) map[string][]*unstructured.Unstructured {
	m := map[string][]*unstructured.Unstructured{}
	for _, o := range objs {
		m[o.GetKind()] = append(m[o.GetKind()], o)
	}
	return m
}

func TestRenderDefault(t *testing.T) {
	objs, err := Render(DefaultImages)
	if err != nil {
		t.Fatal(err)
	}
	if objs[0].GetKind() != "Namespace" || objs[0].GetName() != Namespace {
		t.Fatalf("first object %s %s, want the Namespace %s", objs[0].GetKind(), objs[0].GetName(), Namespace)
	}
	k := byKind(objs)
	if n := len(k["CustomResourceDefinition"]); n != 7 {
		t.Errorf("%d CRDs, want 7", n)
	}
	for _, kind := range []string{"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Deployment", "ConfigMap", "Service"} {
		if len(k[kind]) != 1 {
			t.Fatalf("%d objects of kind %s, want 1", len(k[kind]), kind)
		}
	}
	for _, o := range objs {
		if ns := o.GetNamespace(); ns != "" && ns != Namespace {
			t.Errorf("%s %s in namespace %q", o.GetKind(), o.GetName(), ns)
		}
	}
	subjects, _, _ := unstructured.NestedSlice(k["ClusterRoleBinding"][0].Object, "subjects")
	if ns := subjects[0].(map[string]any)["namespace"]; ns != Namespace {
		t.Errorf("the binding's subject is in namespace %v", ns)
	}
	checkImages(t, k, DefaultOperatorImage, DefaultPEImage)
	svc := k["Service"][0]
	sel, _, _ := unstructured.NestedStringMap(svc.Object, "spec", "selector")
	if svc.GetName() != "sluice-operator-metrics" || sel["app.kubernetes.io/name"] != OperatorDeployment {
		t.Errorf("metrics Service %s selects %v", svc.GetName(), sel)
	}
}

// checkImages finds the operator image in the Deployment and the PE image
// in the ConfigMap its environment names (kustomize's hashed name).
func checkImages(t *testing.T, k map[string][]*unstructured.Unstructured, operator, pe string) {
	t.Helper()
	dep := k["Deployment"][0]
	containers, _, _ := unstructured.NestedSlice(dep.Object, "spec", "template", "spec", "containers")
	c := containers[0].(map[string]any)
	if c["image"] != operator {
		t.Errorf("operator image %v, want %s", c["image"], operator)
	}
	env, _ := c["env"].([]any)
	ref := ""
	for _, e := range env {
		m := e.(map[string]any)
		if m["name"] == "SLUICE_PE_IMAGE" {
			ref, _, _ = unstructured.NestedString(m, "valueFrom", "configMapKeyRef", "name")
		}
	}
	cm := k["ConfigMap"][0]
	if ref == "" || ref != cm.GetName() || !strings.HasPrefix(ref, OperatorConfig+"-") {
		t.Fatalf("SLUICE_PE_IMAGE comes from ConfigMap %q; the ConfigMap is %q", ref, cm.GetName())
	}
	if got, _, _ := unstructured.NestedString(cm.Object, "data", "peImage"); got != pe {
		t.Errorf("PE image %q, want %q", got, pe)
	}
}

func TestRenderSetsImages(t *testing.T) {
	for _, tc := range []Images{
		{Operator: "registry.example.com:5000/team/sluice-operator:v1.2", PE: "registry.example.com:5000/team/sluice-pe:v1.2"},
		{Operator: "ghcr.io/x/sluice-operator@sha256:" + strings.Repeat("a", 64), PE: "ghcr.io/x/sluice-pe@sha256:" + strings.Repeat("b", 64)},
		{Operator: "sluice-operator", PE: "sluice-pe"},
	} {
		objs, err := Render(tc)
		if err != nil {
			t.Fatalf("%+v: %v", tc, err)
		}
		want := tc.Operator
		if !strings.ContainsAny(want, ":@") {
			want += ":latest"
		}
		checkImages(t, byKind(objs), want, tc.PE)
	}
	if _, err := Render(Images{Operator: "", PE: "x"}); err == nil {
		t.Error("an empty operator image was accepted")
	}
	if _, err := Render(Images{Operator: "x", PE: "a b"}); err == nil {
		t.Error("a PE image with a space was accepted")
	}
}

// config/crd/kustomization.yaml lists what controller-gen generated.
func TestCRDKustomizationListsEveryCRD(t *testing.T) {
	files, err := os.ReadDir("crd/bases")
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, f := range files {
		want = append(want, "bases/"+f.Name())
	}
	b, err := os.ReadFile("crd/kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var k struct{ Resources []string }
	if err := yaml.Unmarshal(b, &k); err != nil {
		t.Fatal(err)
	}
	slices.Sort(k.Resources)
	if !slices.Equal(k.Resources, want) {
		t.Errorf("crd/kustomization.yaml lists %v; crd/bases holds %v", k.Resources, want)
	}
	crds, err := RenderCRDs()
	if err != nil {
		t.Fatal(err)
	}
	if len(crds) != len(want) {
		t.Errorf("RenderCRDs gave %d objects, want %d", len(crds), len(want))
	}
}

func TestDefaultPEImageIsTheOperatorsDefault(t *testing.T) {
	if DefaultPEImage != render.DefaultPEImage {
		t.Errorf("config/manager's PE image %s differs from the operator's default %s", DefaultPEImage, render.DefaultPEImage)
	}
}

// Every sample is a Job that decodes strictly and plans, and
// samples/kustomization.yaml lists them all. (The envtest test in
// platform/integration submits them to a real API server.)
func TestSamplesPlan(t *testing.T) {
	files, err := filepath.Glob("samples/streams_*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("samples: %v %v", files, err)
	}
	b, err := os.ReadFile("samples/kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var k struct{ Resources []string }
	if err := yaml.Unmarshal(b, &k); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range files {
		names = append(names, filepath.Base(f))
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var job v1alpha1.Job
		if err := yaml.UnmarshalStrict(data, &job); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if _, errs := app.Build("default", job.Name, &job.Spec); len(errs) > 0 {
			t.Errorf("%s: %v", f, errs.ToAggregate())
		}
	}
	slices.Sort(k.Resources)
	if !slices.Equal(k.Resources, names) {
		t.Errorf("samples/kustomization.yaml lists %v; samples/ holds %v", k.Resources, names)
	}
}
