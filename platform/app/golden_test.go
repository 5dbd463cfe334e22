package app

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"sluice.dev/sluice/platform/api/v1alpha1"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden.json from the current Build output")

// TestBuildGolden builds each Job file and compares the plan's JSON with
// testdata/<name>.golden.json. Run `go test ./platform/app -run Golden
// -update` after an intended change and review the diff.
func TestBuildGolden(t *testing.T) {
	inputs, err := filepath.Glob("testdata/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// The repository's own example workload, when present.
	if _, err := os.Stat("../../workloads/pipeline.yaml"); err == nil {
		inputs = append(inputs, "../../workloads/pipeline.yaml")
	}
	if len(inputs) == 0 {
		t.Fatal("no inputs")
	}
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".yaml")
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			var job v1alpha1.Job
			if err := yaml.UnmarshalStrict(raw, &job); err != nil {
				t.Fatal(err)
			}
			plan, errs := Build(job.Namespace, job.Name, &job.Spec)
			if len(errs) > 0 {
				t.Fatalf("Build: %v", errs.ToAggregate())
			}
			checkPlan(t, job.Namespace, job.Name, &job.Spec, plan)
			got, err := json.MarshalIndent(plan, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			golden := filepath.Join("testdata", name+".golden.json")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(want, got) {
				t.Errorf("plan of %s differs from %s (run with -update if intended):\n%s", in, golden, lineDiff(string(want), string(got)))
			}
		})
	}
}

// lineDiff shows the first differing lines, enough to see what changed.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	shown := 0
	for i := 0; i < len(w) || i < len(g); i++ {
		var a, c string
		if i < len(w) {
			a = w[i]
		}
		if i < len(g) {
			c = g[i]
		}
		if a != c {
			b.WriteString("line " + strconv.Itoa(i+1) + ":\n- " + a + "\n+ " + c + "\n")
			if shown++; shown == 10 {
				break
			}
		}
	}
	return b.String()
}
