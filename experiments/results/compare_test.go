package results

import (
	"bytes"
	"strings"
	"testing"
)

func TestCompare(t *testing.T) {
	var rows []Row
	for i, v := range []float64{1, 2, 3} {
		rows = append(rows, Row{Experiment: "recovery", Backend: "sim", Params: "fault=deletePod", Repetition: i, Metric: "recovery_connected", Value: v, Unit: "s"})
	}
	for i, v := range []float64{4, 4} {
		rows = append(rows, Row{Experiment: "recovery", Backend: "kind", Params: "fault=deletePod", Repetition: i, Metric: "recovery_connected", Value: v, Unit: "s"})
	}
	// Metrics only one side has, and baselines, are left out.
	rows = append(rows, Row{Experiment: "recovery", Backend: "kind", Params: "fault=deletePod", Metric: "pod_startup", Subject: "p", Value: 9, Unit: "s"},
		Row{Experiment: "recovery", Backend: "kind", Params: "fault=stopNode", Metric: "recovery_connected", Value: 360, Unit: "s"},
		Row{Experiment: "recovery", Backend: "kind-baseline", Params: "fault=deletePod", Metric: "recovery_connected", Value: 3, Unit: "s"})
	cs := Compare(rows)
	if len(cs) != 1 {
		t.Fatalf("%d comparisons, want 1: %+v", len(cs), cs)
	}
	c := cs[0]
	if c.SimMedian != 2 || c.RealMedian != 4 || c.RelErr() != -0.5 || c.SimN != 3 || c.RealN != 2 || c.Measured != "kind" {
		t.Fatalf("comparison %+v, relative error %v", c, c.RelErr())
	}
	var buf bytes.Buffer
	if err := WriteComparison(&buf, cs); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "| recovery | kind | recovery_connected | fault=deletePod | 2 | ") || !strings.Contains(buf.String(), "-50%") {
		t.Fatalf("table:\n%s", buf.String())
	}
}
