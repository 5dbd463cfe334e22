package plots

import (
	"bytes"
	"image/png"
	"math"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"sluice.dev/sluice/experiments/results"
	"sluice.dev/sluice/experiments/spec"
)

func loadDef(t *testing.T, name string) *spec.Definition {
	t.Helper()
	d, err := spec.LoadNamed("../experiments/defs", name, "")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// synthetic rows of gc for two backends: value = pes/10 * (2 for Foreground) + rep.
func gcRows() []results.Row {
	var rows []results.Row
	for _, backend := range []string{"kind", "sim"} {
		for _, pes := range []string{"2", "8", "32", "64"} {
			for _, prop := range []string{"Background", "Foreground"} {
				for rep := 0; rep < 11; rep++ {
					v := float64(len(pes)) + float64(rep)
					if prop == "Foreground" {
						v *= 2
					}
					rows = append(rows, results.Row{Experiment: "gc", Backend: backend, Params: "pes=" + pes + ";propagation=" + prop,
						Repetition: rep, Metric: "gc_dependents", Value: v, Unit: "s"})
				}
			}
		}
	}
	return rows
}

func TestSummarise(t *testing.T) {
	d := loadDef(t, "gc")
	series, err := Summarise(d, gcRows(), "gc_dependents")
	if err != nil {
		t.Fatal(err)
	}
	var labels []string
	for _, s := range series {
		labels = append(labels, s.Label())
	}
	want := []string{"sim, propagation=Background", "sim, propagation=Foreground", "kind, propagation=Background", "kind, propagation=Foreground"}
	if diff := cmp.Diff(want, labels); diff != "" {
		t.Fatal(diff)
	}
	// Values 1..11 (pes=2, Background): median 6, p10 2, p90 10 by linear interpolation.
	got := series[0].Points[0]
	if diff := cmp.Diff(Stats{X: "2", N: 11, Median: 6, P10: 2, P90: 10}, got, cmpopts.EquateApprox(0, 1e-9)); diff != "" {
		t.Error(diff)
	}
	if xs := []string{series[1].Points[0].X, series[1].Points[3].X}; !cmp.Equal(xs, []string{"2", "64"}) {
		t.Errorf("x order %v", xs)
	}
	if series[1].Points[3].Median != 2*(2+5) {
		t.Errorf("foreground pes=64 median %v", series[1].Points[3].Median)
	}
}

func TestRenderNumericAndCategorical(t *testing.T) {
	dir := t.TempDir()
	if keep := os.Getenv("PLOTS_TEST_OUT"); keep != "" {
		dir = keep // to look at the test figures
	}
	for _, tc := range []struct {
		name string
		rows []results.Row
		want []string
	}{
		{"gc", gcRows(), []string{"gc: garbage collection", "garbage collection (s)", "processing elements (count)",
			"sim, propagation=Background", "kind, propagation=Foreground", "gc: Job deletion (no data)"}},
		{"recovery", []results.Row{
			{Experiment: "recovery", Backend: "sim", Params: "fault=deletePod", Metric: "recovery_connected", Value: 2, Unit: "s"},
			{Experiment: "recovery", Backend: "sim", Params: "fault=stopNode", Metric: "recovery_connected", Value: 300, Unit: "s"},
		}, []string{"recovery: recovery (connected)", "recovery (connected) (s)", "fault kind", "deletePod", "stopNode", "killContainer"}},
	} {
		d := loadDef(t, tc.name)
		pngPath, svgPath, err := Render(d, tc.rows, dir)
		if err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(pngPath)
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(f)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", pngPath, err)
		}
		if b := img.Bounds(); b.Dx() < 600 || b.Dy() < 400 {
			t.Errorf("%s is %v", pngPath, b)
		}
		svg, err := os.ReadFile(svgPath)
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range tc.want {
			if !bytes.Contains(svg, []byte(w)) {
				t.Errorf("%s lacks %q", svgPath, w)
			}
		}
		// Deterministic output: committed figures do not churn.
		svg2 := svg
		if _, _, err := Render(d, tc.rows, dir); err != nil {
			t.Fatal(err)
		}
		if svg, _ = os.ReadFile(svgPath); !bytes.Equal(svg, svg2) {
			t.Errorf("%s differs between two renders", svgPath)
		}
	}
}

func TestPanelErrors(t *testing.T) {
	d := loadDef(t, "gc")
	if _, err := Panel(d, nil, "nope"); err == nil {
		t.Error("unknown metric accepted")
	}
	bad := []results.Row{{Experiment: "gc", Params: "novalue", Metric: "gc_job", Value: math.Pi, Unit: "s"}}
	if _, err := Panel(d, bad, "gc_job"); err == nil || !strings.Contains(err.Error(), "key=value") {
		t.Errorf("bad params: %v", err)
	}
}

func TestShortTicks(t *testing.T) {
	var labels []string
	for _, tk := range (shortTicks{}).Ticks(0, 27.5) {
		if tk.Label != "" {
			labels = append(labels, tk.Label)
		}
	}
	if diff := cmp.Diff([]string{"0", "10", "20"}, labels); diff != "" {
		t.Error(diff)
	}
	labels = nil
	for _, tk := range (shortTicks{}).Ticks(0, 1.3) {
		if tk.Label != "" {
			labels = append(labels, tk.Label)
		}
	}
	if diff := cmp.Diff([]string{"0", "0.5", "1"}, labels); diff != "" {
		t.Error(diff)
	}
}

func TestLogY(t *testing.T) {
	d := loadDef(t, "recovery") // plot.logY: true
	rows := []results.Row{
		{Experiment: "recovery", Backend: "sim", Params: "fault=deletePod", Metric: "recovery_connected", Value: 0.5, Unit: "s"},
		{Experiment: "recovery", Backend: "sim", Params: "fault=stopNode", Metric: "recovery_connected", Value: 300, Unit: "s"},
	}
	p, err := Panel(d, rows, "recovery_connected")
	if err != nil {
		t.Fatal(err)
	}
	var labels []string
	for _, tk := range p.Y.Tick.Marker.Ticks(p.Y.Min, p.Y.Max) {
		if tk.Label != "" {
			labels = append(labels, tk.Label)
		}
	}
	// Decades from below 0.5 to above 300, in plain decimals.
	if diff := cmp.Diff([]string{"0.1", "1", "10", "100", "1000"}, labels); diff != "" {
		t.Error(diff)
	}
	// A zero forces a linear axis (log10(0) has no place).
	rows[0].Value = 0
	if p, _ = Panel(d, rows, "recovery_connected"); p.Y.Min != 0 {
		t.Errorf("linear axis expected from 0, got min %v", p.Y.Min)
	}
}
