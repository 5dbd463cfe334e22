package kindbackend

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"sluice.dev/sluice/experiments/metrics"
	"sluice.dev/sluice/kindconfig"
	"sluice.dev/sluice/platform/api/v1alpha1"
)

// The recorder must watch ConsistentRegions: the checkpoint experiment's
// metrics come from their status alone. A fake API server (unit test only)
// plays a region that completes two checkpoints.
func TestRecorderFeedsRegionMetrics(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wc := fake.NewClientBuilder().WithScheme(kindconfig.Scheme()).Build()
	clk := clocktesting.NewFakePassiveClock(t0)
	rec, err := startRecorder(ctx, wc, clk, "ns", "j")
	if err != nil {
		t.Fatal(err)
	}
	cr := &v1alpha1.ConsistentRegion{ObjectMeta: metav1.ObjectMeta{Name: "j-main", Namespace: "ns"},
		Spec: v1alpha1.ConsistentRegionSpec{JobName: "j"}}
	if err := wc.Create(ctx, cr); err != nil {
		t.Fatal(err)
	}
	for i, ms := range []int{40, 70} {
		if err := wc.Get(ctx, client.ObjectKeyFromObject(cr), cr); err != nil {
			t.Fatal(err)
		}
		cr.Status.State = v1alpha1.RegionHealthy
		cr.Status.LastCompletedSeq = int64(i + 1)
		cr.Status.LastDrainDuration = &metav1.Duration{Duration: time.Duration(ms) * time.Millisecond}
		if err := wc.Update(ctx, cr); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(rec.snapshot()) < 3 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	tr := &metrics.Trace{Namespace: "ns", Job: "j", Events: rec.snapshot(), End: t0}
	rows, err := tr.Compute([]string{metrics.CheckpointDuration})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows[0].Value != 0.04 || rows[1].Value != 0.07 || rows[1].Subject != "j-main#2" {
		t.Fatalf("checkpoint rows %+v, want 0.04 s (#1) and 0.07 s (#2)", rows)
	}
}
