package simbackend

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"sluice.dev/sluice/experiments/results"
	"sluice.dev/sluice/experiments/runner"
	"sluice.dev/sluice/experiments/spec"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

const (
	defsDir      = "../defs"
	workloadsDir = "../../workloads"
)

// small cuts a committed definition down to a quick run: the first and
// last value of each parameter, one or two repetitions.
func small(t *testing.T, name string, reps int) (*spec.Definition, []spec.Trial) {
	t.Helper()
	d, err := spec.LoadNamed(defsDir, name, workloadsDir)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range d.Sweep {
		if len(p.Values) > 2 && name != "recovery" {
			d.Sweep[i].Values = []string{p.Values[0], p.Values[len(p.Values)-1]}
		}
	}
	d.Repetitions = reps
	trials, err := d.Trials(workloadsDir)
	if err != nil {
		t.Fatal(err)
	}
	return d, trials
}

func csvOf(t *testing.T, d *spec.Definition, trials []spec.Trial) []byte {
	t.Helper()
	out, err := runner.RunTrials(context.Background(), d, trials, New(), runner.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range out.Failures {
		t.Errorf("trial %s rep %d failed: %s", f.Params, f.Repetition, f.Error)
	}
	var buf bytes.Buffer
	if err := results.WriteCSV(&buf, out.Rows); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Golden files of a small run of every experiment. A change of a model's
// parameters or of the platform's behaviour shows up here as a diff:
// review it, then run `go test ./experiments/simbackend -update`.
func TestGolden(t *testing.T) {
	names, err := spec.Names(defsDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			d, trials := small(t, name, 2)
			got := csvOf(t, d, trials)
			path := filepath.Join("testdata", name+".csv")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs from a fresh run (%s); review, then go test -update", path, firstDiff(want, got))
			}
		})
	}
}

// The same seed and definition give byte-identical CSV; another seed does not.
func TestDeterminism(t *testing.T) {
	d, trials := small(t, "recovery", 1)
	a := csvOf(t, d, trials)
	b := csvOf(t, d, trials)
	if !bytes.Equal(a, b) {
		t.Fatalf("two runs differ:\n%s\n---\n%s", a, b)
	}
	d.Seed++
	other, err := d.Trials(workloadsDir)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a, csvOf(t, d, other)) {
		t.Error("a different seed gave the same results")
	}
}

// firstDiff describes the first line where two files differ.
func firstDiff(want, got []byte) string {
	w, g := bytes.Split(want, []byte("\n")), bytes.Split(got, []byte("\n"))
	for i := 0; i < max(len(w), len(g)); i++ {
		var a, b []byte
		if i < len(w) {
			a = w[i]
		}
		if i < len(g) {
			b = g[i]
		}
		if !bytes.Equal(a, b) {
			return fmt.Sprintf("line %d: want %q, got %q", i+1, a, b)
		}
	}
	return "no difference"
}
