package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"sigs.k8s.io/yaml"

	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/app"
)

// The committed files must be what the generator makes now.
func TestGeneratedFilesUpToDate(t *testing.T) {
	for name, job := range Files() {
		want, err := Render(job)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join("..", name))
		if err != nil {
			t.Fatalf("%s: %v (run go generate ./workloads)", name, err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is stale: run go generate ./workloads", name)
		}
	}
}

// Every workload file, generated or not, is a Job the platform can build,
// with the PE count its name promises.
func TestWorkloadsBuild(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("..", "*.yaml"))
	if len(files) == 0 {
		t.Fatal("no workloads")
	}
	wantPEs := map[string]int{"pipeline-2.yaml": 2, "pipeline-64.yaml": 64, "latency-fused.yaml": 1,
		"latency-samenode.yaml": 3, "latency-crossnode.yaml": 3}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var job v1alpha1.Job
		if err := yaml.UnmarshalStrict(data, &job); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		plan, errs := app.Build(job.Namespace, job.Name, &job.Spec)
		if len(errs) > 0 {
			t.Fatalf("%s: %v", f, errs.ToAggregate())
		}
		if n, ok := wantPEs[filepath.Base(f)]; ok && len(plan.PEs) != n {
			t.Errorf("%s: %d PEs, want %d", f, len(plan.PEs), n)
		}
	}
}
