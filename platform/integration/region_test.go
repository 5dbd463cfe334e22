package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/app"
	"sluice.dev/sluice/platform/render"
	"sluice.dev/sluice/platform/wiring/wiringtest"
)

// These tests run the region state machine through a real kube-apiserver.
// The test plays the PE processes: it watches the ConsistentRegion as a PE
// would and annotates the PEs' pods with their progress, which is exactly
// the interface between the platform and the PE runtime.

const regionName = "pipe-main"

func createRegionJob(t *testing.T, ns string, n int, edit func(*v1alpha1.ConsistentRegionDef)) {
	t.Helper()
	j := wiringtest.PipelineJob(ns, "pipe", n)
	j.UID, j.Generation = "", 0
	def := v1alpha1.ConsistentRegionDef{Name: "main", Period: &metav1.Duration{Duration: 500 * time.Millisecond}}
	for _, op := range j.Spec.Application.Operators {
		def.Operators = append(def.Operators, op.Name)
	}
	if edit != nil {
		edit(&def)
	}
	j.Spec.Application.ConsistentRegions = []v1alpha1.ConsistentRegionDef{def}
	j.Spec.CheckpointStore = &v1alpha1.CheckpointStore{Type: v1alpha1.StoreFilesystem, Path: "/ckpt"}
	if err := k8s.Create(context.Background(), j); err != nil {
		t.Fatal(err)
	}
}

func getRegion(t *testing.T, ns string) *v1alpha1.ConsistentRegion {
	t.Helper()
	cr := &v1alpha1.ConsistentRegion{}
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: regionName}, cr); err != nil {
		t.Fatal(err)
	}
	return cr
}

// pePlayer is the test's stand-in for the PE processes of a region.
type pePlayer struct {
	t  *testing.T
	ns string
	// progress is what each pod's process has reported, by pod name; a
	// replaced pod starts with nothing, as a new process does.
	progress map[string]v1alpha1.RegionProgress
	// stalled PEs neither checkpoint nor apply resets.
	stalled map[string]bool
}

func newPlayer(t *testing.T, ns string) *pePlayer {
	return &pePlayer{t: t, ns: ns, progress: map[string]v1alpha1.RegionProgress{}, stalled: map[string]bool{}}
}

// step does what each PE process would do for the region's current status.
func (p *pePlayer) step() {
	p.t.Helper()
	ctx := context.Background()
	cr := getRegion(p.t, p.ns)
	for _, peName := range cr.Spec.PEs {
		if p.stalled[peName] {
			continue
		}
		pe := &v1alpha1.ProcessingElement{}
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: p.ns, Name: peName}, pe); err != nil || pe.Spec.LaunchCount == 0 {
			continue
		}
		podName := app.PodName(peName, pe.Spec.LaunchCount)
		pr := p.progress[podName]
		pr.Region = "main"
		st := cr.Status
		switch {
		case st.State == v1alpha1.RegionResetting && st.Epoch > pr.Epoch:
			pr.Epoch = st.Epoch
		case st.State == v1alpha1.RegionDraining && st.Epoch == pr.Epoch && pr.Checkpointed < st.CurrentSeq:
			pr.Checkpointed, pr.Bytes = st.CurrentSeq, 64
		}
		if old, ok := p.progress[podName]; ok && old == pr {
			continue
		}
		raw, _ := json.Marshal(pr)
		patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{v1alpha1.AnnotationRegionProgress: string(raw)}}})
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: p.ns, Name: podName}}
		if err := k8s.Patch(ctx, pod, client.RawPatch(types.MergePatchType, patch)); err != nil {
			continue // not created yet
		}
		p.progress[podName] = pr
	}
}

// until plays the PEs until cond holds.
func (p *pePlayer) until(within time.Duration, what string, cond func(*v1alpha1.ConsistentRegion) bool) *v1alpha1.ConsistentRegion {
	p.t.Helper()
	var cr *v1alpha1.ConsistentRegion
	eventually(p.t, within, what, func() (bool, string) {
		p.step()
		cr = getRegion(p.t, p.ns)
		return cond(cr), fmt.Sprintf("%+v", cr.Status)
	})
	return cr
}

func TestRegionCheckpointsPeriodically(t *testing.T) {
	defer startOperator(t)()
	ns := namespace(t)
	createRegionJob(t, ns, 3, nil)
	submitted(t, ns, 3)
	ctx := context.Background()
	cr := getRegion(t, ns)
	if ref := metav1.GetControllerOf(cr); ref == nil || ref.Kind != "Job" || ref.Name != "pipe" {
		t.Fatalf("region owner %+v", cr.OwnerReferences)
	}
	if len(cr.Spec.PEs) != 3 || cr.Spec.Trigger != v1alpha1.TriggerPeriodic || cr.Spec.MaxConsecutiveResets != 5 {
		t.Fatalf("region spec %+v", cr.Spec)
	}
	// The PEs' access objects exist and the pods use them.
	name := render.PEAccessName("pipe")
	for _, o := range []client.Object{&corev1.ServiceAccount{}, &rbacv1.Role{}, &rbacv1.RoleBinding{}} {
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, o); err != nil {
			t.Fatalf("%T %s: %v", o, name, err)
		}
	}
	for _, pod := range pods(t, ns) {
		if pod.Spec.ServiceAccountName != name {
			t.Fatalf("pod %s runs as %q", pod.Name, pod.Spec.ServiceAccountName)
		}
	}
	p := newPlayer(t, ns)
	cr = p.until(30*time.Second, "three checkpoints", func(cr *v1alpha1.ConsistentRegion) bool {
		return cr.Status.LastCompletedSeq >= 3
	})
	if cr.Status.Epoch != 1 || cr.Status.Resets != 0 || cr.Status.CheckpointBytes != 3*64 || cr.Status.LastDrainDuration == nil {
		t.Fatalf("status after checkpoints %+v", cr.Status)
	}
	// PE statuses carry the progress their pods reported.
	pe := &v1alpha1.ProcessingElement{}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: app.PEName("pipe", 2)}, pe); err != nil {
		t.Fatal(err)
	}
	if pe.Status.Region == nil || pe.Status.Region.Epoch != 1 || pe.Status.Region.Checkpointed < 3 {
		t.Fatalf("PE status region %+v", pe.Status.Region)
	}
}

func TestRegionPELostDuringDrainResets(t *testing.T) {
	defer startOperator(t)()
	ns := namespace(t)
	createRegionJob(t, ns, 3, nil)
	submitted(t, ns, 3)
	p := newPlayer(t, ns)
	p.until(30*time.Second, "one checkpoint", func(cr *v1alpha1.ConsistentRegion) bool { return cr.Status.LastCompletedSeq >= 1 })
	victim := app.PEName("pipe", 1)
	p.stalled[victim] = true
	// A drain the stalled PE holds up: its process never reported this seq.
	cr := p.until(30*time.Second, "a drain the stalled PE holds up", func(cr *v1alpha1.ConsistentRegion) bool {
		return cr.Status.State == v1alpha1.RegionDraining && p.progress[app.PodName(victim, 1)].Checkpointed < cr.Status.CurrentSeq
	})
	abandoned, last, epoch := cr.Status.CurrentSeq, cr.Status.LastCompletedSeq, cr.Status.Epoch
	ctx := context.Background()
	pod := &corev1.Pod{}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: app.PodName(victim, 1)}, pod); err != nil {
		t.Fatal(err)
	}
	if err := k8s.Delete(ctx, pod, client.GracePeriodSeconds(0)); err != nil {
		t.Fatal(err)
	}
	cr = p.until(30*time.Second, "reset", func(cr *v1alpha1.ConsistentRegion) bool { return cr.Status.State == v1alpha1.RegionResetting })
	if cr.Status.Epoch != epoch+1 || cr.Status.RestoreSeq != last || cr.Status.Resets != 1 {
		t.Fatalf("reset status %+v (was epoch %d, last %d)", cr.Status, epoch, last)
	}
	// The replacement pod runs and its process applies the reset.
	waitPods(t, ns, 3)
	p.stalled[victim] = false
	eventually(t, 30*time.Second, "replacement pod started", func() (bool, string) {
		n := kubelet(t, ns, "node-b")
		return n > 0 || podRunning(t, ns, app.PodName(victim, 2)), "no pod of launch 2 yet"
	})
	cr = p.until(30*time.Second, "healthy again and a new checkpoint", func(cr *v1alpha1.ConsistentRegion) bool {
		return cr.Status.State == v1alpha1.RegionHealthy && cr.Status.LastCompletedSeq > abandoned
	})
	if cr.Status.LastResetDuration == nil || cr.Status.ConsecutiveResets != 0 {
		t.Fatalf("after recovery %+v", cr.Status)
	}
	var events corev1.EventList
	if err := k8s.List(ctx, &events, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range events.Items {
		found = found || (e.InvolvedObject.Name == regionName && e.Reason == "PEOutOfSync")
	}
	if !found {
		t.Fatalf("no PEOutOfSync event on the region")
	}
}

func podRunning(t *testing.T, ns, name string) bool {
	pod := &corev1.Pod{}
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, pod); err != nil {
		return false
	}
	return pod.Status.Phase == corev1.PodRunning
}

func TestRegionRepeatedResetsFail(t *testing.T) {
	defer startOperator(t)()
	ns := namespace(t)
	createRegionJob(t, ns, 2, func(d *v1alpha1.ConsistentRegionDef) {
		d.ResetTimeout = &metav1.Duration{Duration: 3 * time.Second}
		d.MaxConsecutiveResets = 2
	})
	submitted(t, ns, 2)
	p := newPlayer(t, ns)
	p.until(30*time.Second, "one checkpoint", func(cr *v1alpha1.ConsistentRegion) bool { return cr.Status.LastCompletedSeq >= 1 })
	// One PE stops answering and loses its connection: every reset times out.
	p.stalled[app.PEName("pipe", 0)] = true
	pod := &corev1.Pod{}
	ctx := context.Background()
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: app.PodName(app.PEName("pipe", 0), 1)}, pod); err != nil {
		t.Fatal(err)
	}
	wiringtest.SetPodRunning(pod, "node-a", false)
	if err := k8s.Status().Update(ctx, pod); err != nil {
		t.Fatal(err)
	}
	cr := p.until(30*time.Second, "failed region", func(cr *v1alpha1.ConsistentRegion) bool { return cr.Status.State == v1alpha1.RegionFailed })
	if cr.Status.Resets != 2 {
		t.Fatalf("resets %d before failing, want 2", cr.Status.Resets)
	}
	for _, c := range cr.Status.Conditions {
		if c.Type == "Healthy" && (c.Status != metav1.ConditionFalse || c.Reason != "TooManyResets") {
			t.Fatalf("condition %+v", c)
		}
	}
}

func TestRegionOperatorRestartMidDrain(t *testing.T) {
	stop := startOperator(t)
	ns := namespace(t)
	createRegionJob(t, ns, 3, func(d *v1alpha1.ConsistentRegionDef) { d.Period = &metav1.Duration{Duration: 300 * time.Millisecond} })
	submitted(t, ns, 3)
	p := newPlayer(t, ns)
	p.until(30*time.Second, "one checkpoint", func(cr *v1alpha1.ConsistentRegion) bool { return cr.Status.LastCompletedSeq >= 1 })
	for _, pe := range getRegion(t, ns).Spec.PEs {
		p.stalled[pe] = true
	}
	// A drain none of the (stalled) PE processes has answered yet.
	cr := p.until(30*time.Second, "draining", func(cr *v1alpha1.ConsistentRegion) bool {
		if cr.Status.State != v1alpha1.RegionDraining {
			return false
		}
		for _, pr := range p.progress {
			if pr.Checkpointed >= cr.Status.CurrentSeq {
				return false // answered before it was stalled
			}
		}
		return true
	})
	seq, epoch := cr.Status.CurrentSeq, cr.Status.Epoch
	stop() // the operator dies in the middle of the drain
	p.stalled = map[string]bool{}
	p.step() // the PEs finish their checkpoint while no operator runs
	if got := getRegion(t, ns).Status; got.State != v1alpha1.RegionDraining || got.LastCompletedSeq >= seq {
		t.Fatalf("region moved without an operator: %+v", got)
	}
	defer startOperator(t)()
	cr = p.until(30*time.Second, "the drain completes after the restart", func(cr *v1alpha1.ConsistentRegion) bool {
		return cr.Status.LastCompletedSeq >= seq
	})
	if cr.Status.Epoch != epoch || cr.Status.Resets != 0 {
		t.Fatalf("restart caused a reset: %+v", cr.Status)
	}
}
