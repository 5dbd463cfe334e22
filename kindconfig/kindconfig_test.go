package kindconfig

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

func TestConfigShapes(t *testing.T) {
	for shape, want := range map[Shape][]string{
		OneNode:      {"control-plane"},
		ThreeWorkers: {"control-plane", "worker", "worker", "worker"},
	} {
		raw, err := Config(shape)
		if err != nil {
			t.Fatal(err)
		}
		var cfg struct {
			Kind       string `json:"kind"`
			APIVersion string `json:"apiVersion"`
			Nodes      []struct {
				Role string `json:"role"`
			} `json:"nodes"`
		}
		if err := yaml.UnmarshalStrict(raw, &cfg); err != nil {
			t.Fatalf("%s: %v", shape, err)
		}
		var roles []string
		for _, n := range cfg.Nodes {
			roles = append(roles, n.Role)
		}
		if cfg.Kind != "Cluster" || cfg.APIVersion != "kind.x-k8s.io/v1alpha4" || strings.Join(roles, ",") != strings.Join(want, ",") {
			t.Errorf("%s: %s %s roles %v, want Cluster kind.x-k8s.io/v1alpha4 %v", shape, cfg.Kind, cfg.APIVersion, roles, want)
		}
	}
	if _, err := Config("five-nodes"); err == nil {
		t.Error("unknown shape accepted")
	}
}

func TestNodeImage(t *testing.T) {
	t.Setenv(NodeImageEnv, "example/node:v9")
	if got := NodeImage(""); got != "example/node:v9" {
		t.Errorf("with %s set: %s", NodeImageEnv, got)
	}
	t.Setenv(NodeImageEnv, "")
	dir := t.TempDir()
	shared := filepath.Join(dir, "shared", "kind")
	if err := os.MkdirAll(shared, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SLUICE_SHARED_KIND", "")
	repo := filepath.Join(dir, "main")
	wantNoShared := StandardNodeImage
	if SharedKindDir("") != "" { // this machine has /work/shared/kind
		wantNoShared = OfflineNodeImage
	}
	if got := NodeImage(repo); got != wantNoShared {
		t.Errorf("without ../shared/kind: %s, want %s", got, wantNoShared)
	}
	if err := os.WriteFile(filepath.Join(shared, "cluster-up"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if got := NodeImage(repo); got != OfflineNodeImage {
		t.Errorf("with ../shared/kind: %s, want %s", got, OfflineNodeImage)
	}
	if !strings.Contains(StandardNodeImage, KubernetesVersion+"@sha256:") || !strings.Contains(OfflineNodeImage, KubernetesVersion) {
		t.Errorf("node images do not carry the pinned version %s: %s %s", KubernetesVersion, StandardNodeImage, OfflineNodeImage)
	}
}

func TestSumMetric(t *testing.T) {
	text := []byte(`# HELP x
sluice_pe_operator_tuples_in_total{operator="sink"} 120
sluice_pe_operator_tuples_in_total{operator="sink2"} 5
sluice_pe_operator_tuples_in_total_extra{operator="sink"} 999
sluice_pe_tuples_out_total{stream="a"} 1.5e+03
sluice_pe_tuples_out_total{stream="b"} 500
`)
	if v, err := SumMetric(text, "sluice_pe_operator_tuples_in_total", `operator="sink"`); err != nil || v != 120 {
		t.Errorf("sink: %v %v, want 120", v, err)
	}
	if v, err := SumMetric(text, "sluice_pe_tuples_out_total"); err != nil || v != 2000 {
		t.Errorf("out: %v %v, want 2000", v, err)
	}
	if _, err := SumMetric(text, "sluice_pe_ready"); err == nil {
		t.Error("a missing metric read as a value")
	}
}

// The MinIO image deployed into clusters is the one hack/minio/build.sh
// tags by default: both name the same module version.
func TestMinIOVersionMatchesBuildScript(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "hack", "minio", "build.sh"))
	if err != nil {
		t.Fatal(err)
	}
	want := "MINIO_VERSION=${MINIO_VERSION:-" + MinIOVersion + "}"
	if !strings.Contains(string(b), want) {
		t.Fatalf("hack/minio/build.sh does not default to %s (want a line %q)", MinIOVersion, want)
	}
	// build.sh tags sluice/minio:${MINIO_VERSION##*-}: the version after its last dash.
	if !strings.Contains(string(b), "sluice/minio:${MINIO_VERSION##*-}") {
		t.Fatal("hack/minio/build.sh no longer tags sluice/minio:${MINIO_VERSION##*-}")
	}
	if commit := MinIOVersion[strings.LastIndex(MinIOVersion, "-")+1:]; MinIOImage != "sluice/minio:"+commit || len(commit) != 12 {
		t.Fatalf("MinIOImage %q, want sluice/minio:%s", MinIOImage, commit)
	}
}
