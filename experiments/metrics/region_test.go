package metrics

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"sluice.dev/sluice/experiments/results"
	"sluice.dev/sluice/platform/api/v1alpha1"
)

func region(job string, state v1alpha1.RegionState, epoch, completed int64, drain, reset time.Duration) *v1alpha1.ConsistentRegion {
	cr := &v1alpha1.ConsistentRegion{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: job + "-main"}}
	cr.Spec.JobName = job
	cr.Status = v1alpha1.ConsistentRegionStatus{State: state, Epoch: epoch, LastCompletedSeq: completed}
	if drain > 0 {
		cr.Status.LastDrainDuration = &metav1.Duration{Duration: drain}
	}
	if reset > 0 {
		cr.Status.LastResetDuration = &metav1.Duration{Duration: reset}
	}
	return cr
}

// One row per completed checkpoint, from the region's own measurement; the
// first reset completed after a PE fault, not the initial one.
func TestCheckpointAndResetDurations(t *testing.T) {
	ms := time.Millisecond
	tr := &Trace{Namespace: "default", Job: "p",
		Events: []Event{
			ev(1, watch.Added, region("p", v1alpha1.RegionInitializing, 0, 0, 0, 0)),
			ev(2, watch.Modified, region("p", v1alpha1.RegionHealthy, 1, 0, 0, 40*ms)), // initial alignment
			ev(7, watch.Modified, region("p", v1alpha1.RegionDraining, 1, 0, 0, 40*ms)),
			ev(7.1, watch.Modified, region("p", v1alpha1.RegionHealthy, 1, 1, 30*ms, 40*ms)),
			ev(7.2, watch.Modified, region("p", v1alpha1.RegionHealthy, 1, 1, 30*ms, 40*ms)), // no new checkpoint
			ev(12.2, watch.Modified, region("p", v1alpha1.RegionHealthy, 1, 2, 50*ms, 40*ms)),
			ev(13, watch.Modified, region("other", v1alpha1.RegionHealthy, 1, 9, 10*ms, 0)), // another Job
			ev(15, watch.Modified, region("p", v1alpha1.RegionResetting, 2, 2, 50*ms, 40*ms)),
			ev(15.5, watch.Modified, region("p", v1alpha1.RegionResetting, 3, 2, 50*ms, 40*ms)), // retried
			ev(18, watch.Modified, region("p", v1alpha1.RegionHealthy, 3, 2, 50*ms, 2500*ms)),
			ev(23, watch.Modified, region("p", v1alpha1.RegionHealthy, 3, 3, 20*ms, 2500*ms)),
		},
		Actions: []Action{{Time: at(14), Kind: "deletePod", PE: 1}},
	}
	got, err := tr.Compute([]string{CheckpointDuration, ResetDuration})
	if err != nil {
		t.Fatal(err)
	}
	want := []results.Row{
		{Metric: CheckpointDuration, Subject: "p-main#1", Value: 0.03, Unit: Seconds},
		{Metric: CheckpointDuration, Subject: "p-main#2", Value: 0.05, Unit: Seconds},
		{Metric: CheckpointDuration, Subject: "p-main#3", Value: 0.02, Unit: Seconds},
		{Metric: ResetDuration, Subject: "p-main/pe-1", Value: 2.5, Unit: Seconds},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("rows (-want +got):\n%s", d)
	}
	// Without a fault there is no reset row.
	tr.Actions = nil
	if got, _ := tr.Compute([]string{ResetDuration}); len(got) != 0 {
		t.Fatalf("reset rows without a fault: %+v", got)
	}
}

// The catch-up after a reset, from a source's emitted-tuple counter: the
// source ran at 1000 tuples/s from the restored checkpoint's drain (t=12)
// until the reset paused it (t=15.2): 3200 tuples to emit again after the
// reset's end (t=18), at 1000/s with a pause for a drain at 20-20.5, so
// caught up at 21.7.
func TestReplayDuration(t *testing.T) {
	ms := time.Millisecond
	draining := func(epoch, seq int64) *v1alpha1.ConsistentRegion {
		cr := region("p", v1alpha1.RegionDraining, epoch, seq-1, 30*ms, 40*ms)
		cr.Status.CurrentSeq = seq
		return cr
	}
	healthy := region("p", v1alpha1.RegionHealthy, 2, 2, 50*ms, 2500*ms)
	healthy.Status.RestoreSeq = 2
	src := func(s, v float64) Sample {
		return Sample{Time: at(s), Name: SourceTuples, Subject: "src-pod/src", Value: v}
	}
	tr := &Trace{Namespace: "default", Job: "p",
		Events: []Event{
			ev(2, watch.Modified, region("p", v1alpha1.RegionHealthy, 1, 0, 0, 40*ms)),
			ev(7, watch.Modified, draining(1, 1)),
			ev(7.1, watch.Modified, region("p", v1alpha1.RegionHealthy, 1, 1, 30*ms, 40*ms)),
			ev(12, watch.Modified, draining(1, 2)),
			ev(12.1, watch.Modified, region("p", v1alpha1.RegionHealthy, 1, 2, 100*ms, 40*ms)),
			ev(15.2, watch.Modified, region("p", v1alpha1.RegionResetting, 2, 2, 100*ms, 40*ms)),
			ev(18, watch.Modified, healthy),
		},
		Actions: []Action{{Time: at(14), Kind: "deletePod", PE: 1}},
		Samples: []Sample{
			src(2, 0), src(7, 5000), src(7.1, 5000), src(12, 9900), src(12.1, 9900),
			src(15.2, 13100), src(18, 13100), src(20, 15100), src(20.5, 15100), src(23, 17600),
			// A sink's counter is not a source's.
			{Time: at(19), Name: SinkTuples, Subject: "sink-pod/sink", Value: 1e9},
		},
	}
	got, err := tr.Compute([]string{ReplayDuration})
	if err != nil {
		t.Fatal(err)
	}
	want := []results.Row{{Metric: ReplayDuration, Subject: "p-main/pe-1", Value: 3.7, Unit: Seconds}}
	if d := cmp.Diff(want, got, cmp.Comparer(func(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 })); d != "" {
		t.Fatalf("rows (-want +got):\n%s", d)
	}
	// Not caught up by the end of the trial: no row.
	tr.Samples = tr.Samples[:8]
	if got, _ := tr.Compute([]string{ReplayDuration}); len(got) != 0 {
		t.Fatalf("replay rows before the catch-up: %+v", got)
	}
}
