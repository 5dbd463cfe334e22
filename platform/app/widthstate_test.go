package app

import (
	"slices"
	"testing"

	"sluice.dev/sluice/platform/api/v1alpha1"
)

func TestStatePinningWidth(t *testing.T) {
	// src -> agg -> sink with agg and sink replicated together.
	s := parallelPipeline(2)
	s.Application.ParallelRegions[0].Operators = []string{"agg", "sink"}
	if got := StatePinningWidth(s, "par"); len(got) != 0 {
		t.Fatalf("outside a consistent region nothing pins the width, got %v", got)
	}
	s = withRegion(s, "src", "agg", "sink")
	if got := StatePinningWidth(s, "par"); !slices.Equal(got, []string{"sink"}) {
		t.Fatalf("pinning operators %v, want the sink (an aggregate's keyed state moves)", got)
	}
	if got := StatePinningWidth(s, "other"); len(got) != 0 {
		t.Fatalf("an unknown region: %v", got)
	}
	if StateMovesAcrossWidths("novel") {
		t.Fatal("an unknown kind must not be assumed movable")
	}
	for _, k := range []v1alpha1.OperatorKind{v1alpha1.KindSink, v1alpha1.KindSplit, v1alpha1.KindSource} {
		if StateMovesAcrossWidths(k) {
			t.Errorf("%s state cannot be redistributed", k)
		}
	}
}
