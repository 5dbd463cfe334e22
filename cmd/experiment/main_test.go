package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sluice.dev/sluice/experiments/results"
	"sluice.dev/sluice/experiments/runner"
	"sluice.dev/sluice/experiments/spec"
)

// fakeBackend is a unit-test stand-in: one row per metric of the trial,
// valued from the seed.
type fakeBackend struct{}

func (fakeBackend) Name() string { return "fake" }

func (fakeBackend) Run(_ context.Context, t spec.Trial) (runner.Result, error) {
	var rows []results.Row
	for _, m := range t.Scenario.Metrics {
		rows = append(rows, results.Row{Metric: m, Value: float64(t.Seed%997) / 10, Unit: "s"})
	}
	return runner.Result{Rows: rows}, nil
}

func TestRunAndPlot(t *testing.T) {
	backends["fake"] = func(context.Context, options, io.Writer) ([]runner.Backend, error) {
		return []runner.Backend{fakeBackend{}}, nil
	}
	defer delete(backends, "fake")
	out, figs := t.TempDir(), t.TempDir()
	var stdout, stderr bytes.Buffer
	args := []string{"-name", "recovery", "-backend", "fake", "-reps", "2", "-defs", "../../experiments/defs",
		"-workloads", "../../workloads", "-out", out, "-plots", figs, "-progress", "lines"}
	if err := run(context.Background(), args, &stdout, &stderr); err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	for _, f := range []string{filepath.Join(out, "recovery", "fake.csv"), filepath.Join(out, "recovery", "fake.json"),
		filepath.Join(figs, "recovery.png"), filepath.Join(figs, "recovery.svg")} {
		if st, err := os.Stat(f); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
	rows, err := results.ReadFile(filepath.Join(out, "recovery", "fake.csv"))
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 3*2*4 { // 3 faults x 2 repetitions x 4 metrics
		t.Errorf("%d rows", len(rows))
	}
	if !strings.Contains(stderr.String(), "recovery [fake]: 6/6 fault=stopNode rep=1 ok") {
		t.Errorf("progress:\n%s", stderr.String())
	}
	// Redraw from the CSV alone.
	os.Remove(filepath.Join(figs, "recovery.png"))
	stdout.Reset()
	if err := run(context.Background(), []string{"-name", "recovery", "-plots-only", "-defs", "../../experiments/defs",
		"-workloads", "../../workloads", "-out", out, "-plots", figs}, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(figs, "recovery.png")); err != nil {
		t.Error(err)
	}
}

func TestFlagErrors(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"-name", "x", "-all"},
		{"-name", "recovery", "-backend", "nope", "-defs", "../../experiments/defs"},
		{"-name", "missing", "-plots-only", "-defs", "../../experiments/defs"},
		{"-name", "recovery", "-plots-only", "-reps", "x"},
	} {
		if err := run(context.Background(), args, &bytes.Buffer{}, &bytes.Buffer{}); err == nil {
			t.Errorf("%q accepted", args)
		}
	}
}

func TestProgressModes(t *testing.T) {
	var buf bytes.Buffer
	for mode, want := range map[string]struct{ tty, on bool }{
		"auto":  {false, true}, // a buffer is not a terminal: plain lines
		"lines": {false, true},
		"bar":   {true, true},
		"none":  {false, false},
	} {
		o := progressOptions(options{progress: mode, parallel: 1}, &buf)
		if o.TTY != want.tty || (o.Progress != nil) != want.on {
			t.Errorf("%s: tty %v progress %v", mode, o.TTY, o.Progress != nil)
		}
	}
}
