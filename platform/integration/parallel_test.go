package integration

import (
	"context"
	"fmt"
	"testing"
	"time"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/app"
	"sluice.dev/sluice/platform/controllers/job"
)

// createParallelJob submits src -> agg -> sink with agg in a parallel
// region of width 2: PEs par-pe-0 (src and the split), par-pe-1 (the
// union and sink), par-agg-0 and par-agg-1.
func createParallelJob(t *testing.T, ns string) {
	t.Helper()
	if err := k8s.Create(context.Background(), parallelJob(ns, "par")); err != nil {
		t.Fatal(err)
	}
}

// parallelJob is Job name: src -> agg -> sink with agg in a parallel
// region "agg" of width 2.
func parallelJob(ns, name string) *v1alpha1.Job {
	j := &v1alpha1.Job{}
	j.Namespace, j.Name = ns, name
	j.Spec.Application = v1alpha1.Application{
		Operators: []v1alpha1.Operator{{Name: "src", Kind: v1alpha1.KindSource}, {Name: "agg", Kind: v1alpha1.KindAggregate}, {Name: "sink", Kind: v1alpha1.KindSink}},
		Streams: []v1alpha1.Stream{{From: v1alpha1.Endpoint{Operator: "src"}, To: v1alpha1.Endpoint{Operator: "agg"}},
			{From: v1alpha1.Endpoint{Operator: "agg"}, To: v1alpha1.Endpoint{Operator: "sink"}}},
		ParallelRegions: []v1alpha1.ParallelRegionDef{{Name: "agg", Operators: []string{"agg"}, Width: 2}},
	}
	return j
}

// podUIDs maps each PE of ns to the UID of its current launch's pod.
func podUIDs(t *testing.T, ns string) map[string]types.UID {
	t.Helper()
	var pes v1alpha1.ProcessingElementList
	if err := k8s.List(context.Background(), &pes, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	out := map[string]types.UID{}
	for _, p := range pes.Items {
		pod := &corev1.Pod{}
		if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: app.PodName(p.Name, p.Spec.LaunchCount)}, pod); err == nil {
			out[p.Name] = pod.UID
		}
	}
	return out
}

func scale(t *testing.T, ns, name string, width int32) {
	t.Helper()
	pr := &v1alpha1.ParallelRegion{}
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, pr); err != nil {
		t.Fatal(err)
	}
	sc := &autoscalingv1.Scale{Spec: autoscalingv1.ScaleSpec{Replicas: width}}
	if err := k8s.SubResource("scale").Update(context.Background(), pr, client.WithSubResourceBody(sc)); err != nil {
		t.Fatalf("scale %s to %d: %v", name, width, err)
	}
}

// rebalanced plays the kubelet until the region runs at width with every
// PE connected, and returns the region.
func rebalanced(t *testing.T, ns, name string, width int32) *v1alpha1.ParallelRegion {
	t.Helper()
	pr := &v1alpha1.ParallelRegion{}
	eventually(t, 60*time.Second, fmt.Sprintf("width %d running", width), func() (bool, string) {
		kubelet(t, ns, "node-a")
		if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, pr); err != nil {
			return false, err.Error()
		}
		var pes v1alpha1.ProcessingElementList
		_ = k8s.List(context.Background(), &pes, client.InNamespace(ns))
		ok := pr.Status.Width == width && pr.Status.RebalanceStarted == nil && len(pes.Items) == int(width)+2
		return ok, fmt.Sprintf("status %+v, %d PEs", pr.Status, len(pes.Items))
	})
	return pr
}

// A width asked for before the first submission settles is a rebalance
// from the first plan's width: the region reaches Rebalanced=True at the
// new width with a rebalance duration. (It did not: the status recorded no
// running width before the first settle, so nothing counted as a change,
// and the kind e2e test read a nil lastRebalanceDuration.)
func TestParallelWidthChangedBeforeFirstSettle(t *testing.T) {
	defer startOperator(t)()
	ns := namespace(t)
	createParallelJob(t, ns)
	region := app.ParallelResourceName("par", "agg")
	eventually(t, 30*time.Second, "the region planned, no pod running", func() (bool, string) {
		pr := &v1alpha1.ParallelRegion{}
		if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: region}, pr); err != nil {
			return false, err.Error()
		}
		c := meta.FindStatusCondition(pr.Status.Conditions, job.ConditionRebalanced)
		return c != nil && pr.Status.Width == 0, fmt.Sprintf("status %+v", pr.Status)
	})
	scale(t, ns, region, 3)
	pr := rebalanced(t, ns, region, 3)
	c := meta.FindStatusCondition(pr.Status.Conditions, job.ConditionRebalanced)
	if pr.Status.LastRebalanceDuration == nil || c == nil || c.Status != metav1.ConditionTrue {
		t.Fatalf("status at width 3: %+v", pr.Status)
	}
	waitPhase(t, ns, "par", v1alpha1.JobSubmitted, 30*time.Second)
}

func TestParallelWidthTwoFourTwo(t *testing.T) {
	defer startOperator(t)()
	ns := namespace(t)
	createParallelJob(t, ns)
	region := app.ParallelResourceName("par", "agg")
	rebalanced(t, ns, region, 2)
	waitPhase(t, ns, "par", v1alpha1.JobSubmitted, 30*time.Second)
	before := podUIDs(t, ns)
	if len(before) != 4 {
		t.Fatalf("pods %v", before)
	}

	scale(t, ns, region, 4)
	pr := rebalanced(t, ns, region, 4)
	if pr.Status.LastRebalanceDuration == nil || pr.Status.Selector == "" {
		t.Fatalf("status after 2 -> 4: %+v", pr.Status)
	}
	after := podUIDs(t, ns)
	for _, pe := range []string{"par-agg-0", "par-agg-1"} {
		if after[pe] != before[pe] {
			t.Errorf("channel PE %s got a new pod (%s -> %s); it was not affected", pe, before[pe], after[pe])
		}
	}
	for _, pe := range []string{"par-pe-0", "par-pe-1"} {
		if after[pe] == before[pe] {
			t.Errorf("PE %s next to the region kept its pod; its configuration changed", pe)
		}
	}
	for _, pe := range []string{"par-agg-2", "par-agg-3"} {
		if after[pe] == "" {
			t.Errorf("new channel PE %s has no pod", pe)
		}
	}
	cm := &corev1.ConfigMap{}
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "par-pe-0"}, cm); err != nil {
		t.Fatal(err)
	}
	if cm.Data[v1alpha1.PEConfigKey] == "" || !containsAll(cm.Data[v1alpha1.PEConfigKey], `"outputs":4`) {
		t.Fatalf("split of par-pe-0 not at 4 outputs: %s", cm.Data[v1alpha1.PEConfigKey])
	}

	scale(t, ns, region, 2)
	rebalanced(t, ns, region, 2)
	back := podUIDs(t, ns)
	for _, pe := range []string{"par-agg-0", "par-agg-1"} {
		if back[pe] != before[pe] {
			t.Errorf("channel PE %s got a new pod on 4 -> 2", pe)
		}
	}
	for _, pe := range []string{"par-agg-2", "par-agg-3"} {
		p := &v1alpha1.ProcessingElement{}
		err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: pe}, p)
		if err == nil && p.DeletionTimestamp == nil {
			t.Errorf("obsolete PE %s still there", pe)
		}
	}
	if j := getJob(t, ns, "par"); j.Status.PEs != 4 {
		t.Errorf("job counts %d PEs, want 4", j.Status.PEs)
	}
}

func TestParallelWidthOutOfRangeIsRefusedByTheAPI(t *testing.T) {
	defer startOperator(t)()
	ns := namespace(t)
	createParallelJob(t, ns)
	region := app.ParallelResourceName("par", "agg")
	rebalanced(t, ns, region, 2)
	// The schema bounds a width to 1..256 (the scale subresource too).
	pr := &v1alpha1.ParallelRegion{}
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: region}, pr); err != nil {
		t.Fatal(err)
	}
	pr.Spec.Width = 1000
	if err := k8s.Update(context.Background(), pr); err == nil {
		t.Fatalf("a width of 1000 was accepted")
	}
	sc := &autoscalingv1.Scale{Spec: autoscalingv1.ScaleSpec{Replicas: 0}}
	if err := k8s.SubResource("scale").Update(context.Background(), pr, client.WithSubResourceBody(sc)); err == nil {
		t.Fatalf("scaling to 0 channels was accepted")
	}
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		found := false
		for i := 0; i+len(sub) <= len(s); i++ {
			if s[i:i+len(sub)] == sub {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// TestParallelUnschedulableWidthRollsBack: a new channel's pod finds no
// node, so after the grace period the Job goes back to the running width,
// says why in the region's condition and an event, and the width stays
// refused until the user asks for another.
// regionEvent waits for an event with reason on the ParallelRegion.
func regionEvent(t *testing.T, ns, region, reason string) {
	t.Helper()
	eventually(t, 30*time.Second, "a "+reason+" event on the region", func() (bool, string) {
		var evs corev1.EventList
		_ = k8s.List(context.Background(), &evs, client.InNamespace(ns))
		for _, e := range evs.Items {
			if e.InvolvedObject.Name == region && e.Reason == reason {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d events", len(evs.Items))
	})
}

func TestParallelUnschedulableWidthRollsBack(t *testing.T) {
	defer startOperator(t)()
	ns := namespace(t)
	createParallelJob(t, ns)
	region := app.ParallelResourceName("par", "agg")
	rebalanced(t, ns, region, 2)
	waitPhase(t, ns, "par", v1alpha1.JobSubmitted, 30*time.Second)
	before := podUIDs(t, ns)

	scale(t, ns, region, 3)
	// The scheduler's verdict on the new channel's pod, given a while ago
	// (as if the grace period had passed).
	pod := &corev1.Pod{}
	eventually(t, 30*time.Second, "pod of the new channel", func() (bool, string) {
		err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: app.PodName("par-agg-2", 1)}, pod)
		return err == nil, fmt.Sprint(err)
	})
	pod.Status.Conditions = append(pod.Status.Conditions, corev1.PodCondition{Type: corev1.PodScheduled,
		Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable,
		Message:            "0/3 nodes are available: 3 Insufficient cpu.",
		LastTransitionTime: metav1.NewTime(time.Now().Add(-2 * job.DefaultUnschedulableGrace))})
	if err := k8s.Status().Update(context.Background(), pod); err != nil {
		t.Fatal(err)
	}

	pr := &v1alpha1.ParallelRegion{}
	eventually(t, 60*time.Second, "width 3 refused and width 2 running again", func() (bool, string) {
		kubelet(t, ns, "node-a")
		if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: region}, pr); err != nil {
			return false, err.Error()
		}
		c := meta.FindStatusCondition(pr.Status.Conditions, job.ConditionRebalanced)
		p := &v1alpha1.ProcessingElement{}
		gone := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "par-agg-2"}, p) != nil || p.DeletionTimestamp != nil
		ok := c != nil && c.Reason == job.ReasonUnschedulable && pr.Status.Width == 2 && pr.Status.RebalanceStarted == nil && gone
		return ok, fmt.Sprintf("condition %+v, status width %d, par-agg-2 gone %v", c, pr.Status.Width, gone)
	})
	c := meta.FindStatusCondition(pr.Status.Conditions, job.ConditionRebalanced)
	if c.Status != metav1.ConditionFalse || !containsAll(c.Message, "width 3 cannot run", "par-agg-2", "Insufficient cpu", "width 2 kept") {
		t.Errorf("condition %+v", c)
	}
	if pr.Spec.Width != 3 {
		t.Errorf("the user's width was changed to %d", pr.Spec.Width)
	}
	after := podUIDs(t, ns)
	for _, pe := range []string{"par-agg-0", "par-agg-1"} {
		if after[pe] != before[pe] {
			t.Errorf("channel PE %s got a new pod", pe)
		}
	}
	cm := &corev1.ConfigMap{}
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "par-pe-0"}, cm); err != nil {
		t.Fatal(err)
	}
	if !containsAll(cm.Data[v1alpha1.PEConfigKey], `"outputs":2`) {
		t.Errorf("split of par-pe-0 not back at 2 outputs: %s", cm.Data[v1alpha1.PEConfigKey])
	}
	waitPhase(t, ns, "par", v1alpha1.JobSubmitted, 30*time.Second)
	regionEvent(t, ns, region, job.ReasonUnschedulable)
	// Still refused a while later: the Job does not try width 3 again.
	time.Sleep(2 * time.Second)
	var pes v1alpha1.ProcessingElementList
	if err := k8s.List(context.Background(), &pes, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	if len(pes.Items) != 4 {
		t.Errorf("%d PEs after the rollback, want 4", len(pes.Items))
	}

	// Asking again (a new generation) tries again; now it fits.
	scale(t, ns, region, 2)
	scale(t, ns, region, 3)
	rebalanced(t, ns, region, 3)
}

// A width change of a parallel region whose sink sits in a consistent
// region is refused before anything moves: the sink's checkpointed state
// cannot be rebuilt at another width, so a reset there would fail the
// region. The old width keeps running, and the condition and an event say
// why.
func TestParallelWidthWithUnmovableStateRefused(t *testing.T) {
	defer startOperator(t)()
	ns := namespace(t)
	j := parallelJob(ns, "pin")
	j.Spec.Application.ParallelRegions = []v1alpha1.ParallelRegionDef{{Name: "tail", Operators: []string{"agg", "sink"}, Width: 2}}
	j.Spec.Application.ConsistentRegions = []v1alpha1.ConsistentRegionDef{{Name: "main", Operators: []string{"src", "agg", "sink"}}}
	j.Spec.CheckpointStore = &v1alpha1.CheckpointStore{Type: v1alpha1.StoreFilesystem, Path: "/ckpt"}
	if err := k8s.Create(context.Background(), j); err != nil {
		t.Fatal(err)
	}
	region := app.ParallelResourceName("pin", "tail")
	pr := &v1alpha1.ParallelRegion{}
	eventually(t, 60*time.Second, "width 2 running", func() (bool, string) {
		kubelet(t, ns, "node-a")
		err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: region}, pr)
		return err == nil && pr.Status.Width == 2, fmt.Sprintf("%v %+v", err, pr.Status)
	})
	before := podUIDs(t, ns)
	if len(before) < 3 {
		t.Fatalf("pods %v, want the source's and two channels'", before)
	}

	scale(t, ns, region, 3)
	eventually(t, 30*time.Second, "width 3 refused", func() (bool, string) {
		kubelet(t, ns, "node-a")
		if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: region}, pr); err != nil {
			return false, err.Error()
		}
		c := meta.FindStatusCondition(pr.Status.Conditions, job.ConditionRebalanced)
		return c != nil && c.Reason == job.ReasonStateCannotMove && c.ObservedGeneration == pr.Generation, fmt.Sprintf("condition %+v", c)
	})
	c := meta.FindStatusCondition(pr.Status.Conditions, job.ConditionRebalanced)
	if c.Status != metav1.ConditionFalse || !containsAll(c.Message, "width 3 cannot run", "sink", "width 2 kept") {
		t.Errorf("condition %+v", c)
	}
	regionEvent(t, ns, region, job.ReasonStateCannotMove)
	// Nothing moved: no third channel, every pod kept, width 2 recorded.
	time.Sleep(2 * time.Second)
	kubelet(t, ns, "node-a")
	var pes v1alpha1.ProcessingElementList
	if err := k8s.List(context.Background(), &pes, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	if len(pes.Items) != len(before) {
		t.Errorf("%d PEs after the refusal, want the %d of width 2", len(pes.Items), len(before))
	}
	after := podUIDs(t, ns)
	for pe, uid := range before {
		if after[pe] != uid {
			t.Errorf("PE %s got a new pod (%s -> %s)", pe, uid, after[pe])
		}
	}
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: region}, pr); err != nil {
		t.Fatal(err)
	}
	if pr.Status.Width != 2 || pr.Spec.Width != 3 || pr.Status.RebalanceStarted != nil {
		t.Errorf("region spec width %d, status %+v", pr.Spec.Width, pr.Status)
	}
}
