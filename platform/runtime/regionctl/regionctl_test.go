package regionctl

import (
	"testing"

	"sluice.dev/sluice/platform/api/v1alpha1"
)

func TestCommandCarriesTheEpochsWidths(t *testing.T) {
	st := &v1alpha1.ConsistentRegionStatus{State: v1alpha1.RegionResetting, Epoch: 3,
		ParallelWidths: map[string]int32{"agg": 4, "enrich": 2}}
	c := FromStatus(st)
	if c.Widths != "agg=4,enrich=2" || c.Width("agg") != 4 || c.Width("enrich") != 2 || c.Width("other") != 0 {
		t.Fatalf("command %+v: widths agg %d enrich %d other %d", c, c.Width("agg"), c.Width("enrich"), c.Width("other"))
	}
	// Map order does not change the command (commands are compared).
	for i := 0; i < 20; i++ {
		if FromStatus(st) != c {
			t.Fatal("the same status gave another command")
		}
	}
	st.ParallelWidths["agg"] = 2
	if FromStatus(st) == c {
		t.Fatal("a width change did not change the command")
	}
	if (Command{}).Width("agg") != 0 {
		t.Fatal("a command without widths names one")
	}
}
