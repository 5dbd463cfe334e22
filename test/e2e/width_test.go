//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"sluice.dev/sluice/kindconfig"
	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/app"
	"sluice.dev/sluice/platform/controllers/job"
	"sluice.dev/sluice/platform/runtime/operators"
)

// The width workload: a paced keyed source, a per-key tumbling sum in a
// parallel region of width 2, and a sink, all in one consistent region
// checkpointing to MinIO (every channel must read every other channel's
// checkpoint when keys move, so the store is shared).
const (
	wdJob      = "wide"
	wdRegion   = "main"
	wdParallel = "agg"
	wdCount    = 240_000
	wdRate     = 2_000
	wdKeys     = 32
)

// widthJob is the stateful test's keyed sum with the sum in a parallel
// region of width 2, a faster source, and its own checkpoint prefix.
func widthJob(ns, endpoint, secret string) *v1alpha1.Job {
	j := statefulJob(ns, endpoint, secret)
	j.Name = wdJob
	a := &j.Spec.Application
	for i := range a.Operators {
		a.Operators[i].Exlocate = ""
	}
	a.Operators[0].Params = &v1alpha1.OperatorParams{
		Rate: ptr.To[int64](wdRate), Count: ptr.To[int64](wdCount), Keys: ptr.To[int64](wdKeys), TupleSize: ptr.To[int32](64)}
	a.ParallelRegions = []v1alpha1.ParallelRegionDef{{Name: wdParallel, Operators: []string{"sum"}, Width: 2}}
	a.ConsistentRegions[0].Name = wdRegion
	a.ConsistentRegions[0].MaxConsecutiveResets = 20
	j.Spec.CheckpointStore.Prefix = "width"
	return j
}

// peUIDs maps every PE of the Job to the UID of its current pod.
func peUIDs(ctx context.Context, c *kindconfig.Cluster, ns string) (map[string]types.UID, error) {
	var pes v1alpha1.ProcessingElementList
	if err := c.Client.List(ctx, &pes, client.InNamespace(ns), client.MatchingLabels{v1alpha1.LabelJob: wdJob}); err != nil {
		return nil, err
	}
	out := map[string]types.UID{}
	for _, p := range pes.Items {
		if p.DeletionTimestamp != nil || p.Status.PodName == "" {
			continue
		}
		var pod corev1.Pod
		if err := c.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: p.Status.PodName}, &pod); err == nil {
			out[p.Name] = pod.UID
		}
	}
	return out, nil
}

// widthSink reads the summary of the PE holding the sink.
func widthSink(ctx context.Context, c *kindconfig.Cluster, ns string) (operators.Summary, error) {
	var pes v1alpha1.ProcessingElementList
	if err := c.Client.List(ctx, &pes, client.InNamespace(ns), client.MatchingLabels{v1alpha1.LabelJob: wdJob}); err != nil {
		return operators.Summary{}, err
	}
	for _, p := range pes.Items {
		if slices.Contains(p.Spec.Operators, "sink") && p.Status.PodName != "" {
			return podSummary(ctx, c, ns, p.Status.PodName)
		}
	}
	return operators.Summary{}, fmt.Errorf("no running sink PE")
}

// rescale sets the region's width through the scale subresource (as
// kubectl scale does) and waits until that width runs, returning the
// region's status.
func rescale(t *testing.T, c *kindconfig.Cluster, ns string, width int32) v1alpha1.ParallelRegionStatus {
	t.Helper()
	ctx := context.Background()
	pr := &v1alpha1.ParallelRegion{}
	key := client.ObjectKey{Namespace: ns, Name: app.ParallelResourceName(wdJob, wdParallel)}
	if err := c.Client.Get(ctx, key, pr); err != nil {
		t.Fatal(err)
	}
	sc := &autoscalingv1.Scale{Spec: autoscalingv1.ScaleSpec{Replicas: width}}
	if err := c.Client.SubResource("scale").Update(ctx, pr, client.WithSubResourceBody(sc)); err != nil {
		t.Fatalf("scale to %d: %v", width, err)
	}
	waitFor(t, 5*time.Minute, fmt.Sprintf("width %d running", width), func(ctx context.Context) (bool, string) {
		if err := c.Client.Get(ctx, key, pr); err != nil {
			return false, err.Error()
		}
		cond := meta.FindStatusCondition(pr.Status.Conditions, job.ConditionRebalanced)
		ok := pr.Status.Width == width && pr.Status.RebalanceStarted == nil && cond != nil && cond.Status == metav1.ConditionTrue
		return ok, fmt.Sprintf("status width %d, condition %+v", pr.Status.Width, cond)
	})
	if pr.Status.LastRebalanceDuration == nil {
		t.Fatalf("width %d reached without a rebalance duration: %+v", width, pr.Status)
	}
	return pr.Status
}

// regionStatus reads the consistent region's status.
func regionStatus(ctx context.Context, c *kindconfig.Cluster, ns string) (v1alpha1.ConsistentRegionStatus, error) {
	var cr v1alpha1.ConsistentRegion
	err := c.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: app.RegionResourceName(wdJob, wdRegion)}, &cr)
	return cr.Status, err
}

// waitCheckpointAbove waits for the region to be Healthy with a checkpoint
// after seq.
func waitCheckpointAbove(t *testing.T, c *kindconfig.Cluster, ns string, seq int64) int64 {
	t.Helper()
	var got int64
	waitFor(t, 3*time.Minute, fmt.Sprintf("a checkpoint after %d", seq), func(ctx context.Context) (bool, string) {
		st, err := regionStatus(ctx, c, ns)
		if err != nil {
			return false, err.Error()
		}
		got = st.LastCompletedSeq
		return st.State == v1alpha1.RegionHealthy && st.LastCompletedSeq > seq, fmt.Sprintf("%s, last %d", st.State, st.LastCompletedSeq)
	})
	return got
}

// A parallel region inside a consistent region goes from width 2 to 4 and
// back to 2 while tuples flow: the channels below both widths keep their
// pods, keyed state moves with its keys through the checkpoint, and the
// sink's final result equals the failure-free one computed in process.
func TestParallelWidthChangeUnderLoad(t *testing.T) {
	c := cluster(t)
	ctx := context.Background()
	ns := namespace(t, c, "e2e-width")
	endpoint, secret := minIO(t, c, ns)
	j := widthJob(ns, endpoint, secret)
	want := expectedSummary(t, j)
	if !want.Complete || want.Tuples == 0 {
		t.Fatalf("in-process expectation %s", fingerprint(want))
	}
	if err := c.Client.Create(ctx, j); err != nil {
		t.Fatalf("creating Job: %v", err)
	}
	waitSubmitted(t, c, ns, wdJob, submitTimeout)
	seq := waitCheckpointAbove(t, c, ns, 0)
	before, err := peUIDs(ctx, c, ns)
	if err != nil {
		t.Fatal(err)
	}
	channels := []string{app.ChannelPEName(wdJob, wdParallel, 0, 0, 1), app.ChannelPEName(wdJob, wdParallel, 1, 0, 1)}
	for _, pe := range channels {
		if before[pe] == "" {
			t.Fatalf("no pod for channel PE %s: %v", pe, before)
		}
	}
	mid, _ := widthSink(ctx, c, ns)
	t.Logf("width 2 running: checkpoint %d, sink at %d of %d tuples", seq, mid.Tuples, want.Tuples)

	up := rescale(t, c, ns, 4)
	during, _ := widthSink(ctx, c, ns)
	t.Logf("2 -> 4 rebalanced in %v (lastRebalanceDuration); sink at %d tuples", up.LastRebalanceDuration.Duration, during.Tuples)
	seq = waitCheckpointAbove(t, c, ns, seq)
	wide, err := peUIDs(ctx, c, ns)
	if err != nil {
		t.Fatal(err)
	}
	for _, pe := range channels {
		if wide[pe] != before[pe] {
			t.Errorf("2 -> 4: channel PE %s got a new pod (%s -> %s); it was not affected", pe, before[pe], wide[pe])
		}
	}
	if len(wide) != 6 {
		t.Errorf("at width 4: pods of %d PEs, want 6: %v", len(wide), wide)
	}

	down := rescale(t, c, ns, 2)
	after, _ := widthSink(ctx, c, ns)
	t.Logf("4 -> 2 rebalanced in %v; sink at %d tuples", down.LastRebalanceDuration.Duration, after.Tuples)
	if after.Complete {
		t.Errorf("the source had finished before the width went back to 2: the change was not under load")
	}
	waitCheckpointAbove(t, c, ns, seq)
	narrow, err := peUIDs(ctx, c, ns)
	if err != nil {
		t.Fatal(err)
	}
	for _, pe := range channels {
		if narrow[pe] != before[pe] {
			t.Errorf("4 -> 2: channel PE %s got a new pod", pe)
		}
	}
	if len(narrow) != 4 {
		t.Errorf("back at width 2: pods of %d PEs, want 4: %v", len(narrow), narrow)
	}

	var got operators.Summary
	waitFor(t, 10*time.Minute, "the sink to complete", func(ctx context.Context) (bool, string) {
		s, err := widthSink(ctx, c, ns)
		if err != nil {
			return false, err.Error()
		}
		got = s
		return s.Complete, fmt.Sprintf("%d tuples", s.Tuples)
	})
	st, _ := regionStatus(ctx, c, ns)
	var lost, dup int64
	if got.Tuples < want.Tuples {
		lost = int64(want.Tuples - got.Tuples)
	} else {
		dup = int64(got.Tuples - want.Tuples)
	}
	lost += int64(got.Gaps)
	dup += int64(got.Duplicates)
	t.Logf("sink: %d tuples (expected %d), lost %d, duplicated %d, value sum %d (expected %d), content digest equal %v; region: %d checkpoints, %d resets",
		got.Tuples, want.Tuples, lost, dup, got.ValueSum, want.ValueSum, got.ContentDigest == want.ContentDigest, st.Checkpoints, st.Resets)
	if lost != 0 || dup != 0 || got.ValueSum != want.ValueSum || got.ContentDigest != want.ContentDigest {
		t.Errorf("the result differs from the failure-free one:\n got  %s contentDigest=%016x\n want %s contentDigest=%016x",
			fingerprint(got), got.ContentDigest, fingerprint(want), want.ContentDigest)
	}
}
