package wiring_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/app"
	"sluice.dev/sluice/platform/wiring/wiringtest"
)

const ns = "default"

func job(t *testing.T, h *wiringtest.Harness, name string) *v1alpha1.Job {
	t.Helper()
	j := &v1alpha1.Job{}
	h.Get(t, ns, name, j)
	return j
}

func cond(j *v1alpha1.Job, typ string) *metav1.Condition {
	return meta.FindStatusCondition(j.Status.Conditions, typ)
}

// checkChildren asserts the full set of generated objects of a submitted
// n-operator pipeline with one PE per operator.
func checkChildren(t *testing.T, h *wiringtest.Harness, j *v1alpha1.Job, n int, launch int32) {
	t.Helper()
	ctx := context.Background()
	sel := client.MatchingLabels{v1alpha1.LabelJob: j.Name}
	var pes v1alpha1.ProcessingElementList
	var cms corev1.ConfigMapList
	var svcs corev1.ServiceList
	for _, l := range []client.ObjectList{&pes, &cms, &svcs} {
		if err := h.Client.List(ctx, l, client.InNamespace(ns), sel); err != nil {
			t.Fatal(err)
		}
	}
	if len(pes.Items) != n || len(cms.Items) != n+1 || len(svcs.Items) != n-1 {
		t.Fatalf("got %d PEs, %d ConfigMaps, %d Services; want %d, %d, %d", len(pes.Items), len(cms.Items), len(svcs.Items), n, n+1, n-1)
	}
	owned := func(o client.Object, owner client.Object, kind string) {
		t.Helper()
		refs := o.GetOwnerReferences()
		if len(refs) != 1 || refs[0].UID != owner.GetUID() || refs[0].Kind != kind || refs[0].Controller == nil || !*refs[0].Controller {
			t.Errorf("%s: owner references %+v, want controller %s %s", o.GetName(), refs, kind, owner.GetName())
		}
	}
	for i := range pes.Items {
		owned(&pes.Items[i], j, "Job")
		if pes.Items[i].Spec.LaunchCount != launch {
			t.Errorf("PE %s launch count %d, want %d", pes.Items[i].Name, pes.Items[i].Spec.LaunchCount, launch)
		}
	}
	for i := range cms.Items {
		owned(&cms.Items[i], j, "Job")
	}
	for i := range svcs.Items {
		owned(&svcs.Items[i], j, "Job")
	}
	pods := h.Pods(t, ns, j.Name)
	if len(pods) != n {
		t.Fatalf("got %d pods, want %d", len(pods), n)
	}
	for i := range pods {
		p := &v1alpha1.ProcessingElement{}
		h.Get(t, ns, pods[i].Labels[v1alpha1.LabelPE], p)
		owned(&pods[i], p, "ProcessingElement")
		if pods[i].Name != app.PodName(p.Name, p.Spec.LaunchCount) {
			t.Errorf("pod %s is not of PE %s's launch %d", pods[i].Name, p.Name, p.Spec.LaunchCount)
		}
	}
}

func submit(t *testing.T, n int) (*wiringtest.Harness, *v1alpha1.Job) {
	t.Helper()
	j := wiringtest.PipelineJob(ns, "pipe", n)
	h := wiringtest.New(t, j)
	h.Run(t, 100*n)
	if got := job(t, h, "pipe"); got.Status.Phase != v1alpha1.JobSubmitting {
		t.Fatalf("phase %q before pods run, want Submitting", got.Status.Phase)
	}
	checkChildren(t, h, j, n, 1)
	if started := h.Kubelet(t, ns, "pipe", "node-1"); started != n {
		t.Fatalf("kubelet started %d pods, want %d", started, n)
	}
	h.Run(t, 100*n)
	got := job(t, h, "pipe")
	if got.Status.Phase != v1alpha1.JobSubmitted || got.Status.ConnectedPEs != int32(n) {
		t.Fatalf("phase %q connected %d, want Submitted with %d", got.Status.Phase, got.Status.ConnectedPEs, n)
	}
	if c := cond(got, v1alpha1.ConditionSubmitted); c == nil || c.Status != metav1.ConditionTrue {
		t.Fatalf("Submitted condition %+v", c)
	}
	return h, got
}

func TestSubmissionChain(t *testing.T) {
	submit(t, 4)
}

func TestSubmissionChainOrder(t *testing.T) {
	// The first reconciles follow the causal chain: the job controller
	// creates the children, then each PE is launched before its pod exists.
	h, _ := submit(t, 3)
	if !strings.HasPrefix(h.Trace[0], "job ") {
		t.Fatalf("first reconcile %q, want the job controller", h.Trace[0])
	}
	pe := &v1alpha1.ProcessingElement{}
	h.Get(t, ns, app.PEName("pipe", 0), pe)
	if pe.Status.Connectivity != v1alpha1.ConnectivityConnected || pe.Status.NodeName != "node-1" || pe.Status.PodPhase != corev1.PodRunning {
		t.Fatalf("PE status %+v", pe.Status)
	}
}

func relaunchAfter(t *testing.T, h *wiringtest.Harness, hurt func(p *corev1.Pod)) {
	t.Helper()
	pod := &corev1.Pod{}
	h.Get(t, ns, app.PodName(app.PEName("pipe", 1), 1), pod)
	h.External(func() { hurt(pod) })
	h.Run(t, 1000)
	pe := &v1alpha1.ProcessingElement{}
	h.Get(t, ns, app.PEName("pipe", 1), pe)
	if pe.Spec.LaunchCount != 2 {
		t.Fatalf("launch count %d after the pod ended, want 2", pe.Spec.LaunchCount)
	}
	pods := h.Pods(t, ns, "pipe")
	var names []string
	for _, p := range pods {
		if p.Labels[v1alpha1.LabelPE] == pe.Name {
			names = append(names, p.Name)
		}
	}
	if len(names) != 1 || names[0] != app.PodName(pe.Name, 2) {
		t.Fatalf("pods of the PE %v, want only %s", names, app.PodName(pe.Name, 2))
	}
	if j := job(t, h, "pipe"); j.Status.ConnectedPEs != 2 {
		t.Fatalf("connected %d while one PE relaunches, want 2", j.Status.ConnectedPEs)
	}
	h.Kubelet(t, ns, "pipe", "node-2")
	h.Run(t, 1000)
	h.Get(t, ns, pe.Name, pe)
	if pe.Status.Connectivity != v1alpha1.ConnectivityConnected || pe.Status.PodLaunch != 2 || pe.Status.NodeName != "node-2" {
		t.Fatalf("PE status after relaunch %+v", pe.Status)
	}
	if j := job(t, h, "pipe"); j.Status.ConnectedPEs != 3 || j.Status.Phase != v1alpha1.JobSubmitted {
		t.Fatalf("job after relaunch: %s, %d connected", j.Status.Phase, j.Status.ConnectedPEs)
	}
}

func TestDeletedPodIsRelaunched(t *testing.T) {
	h, _ := submit(t, 3)
	relaunchAfter(t, h, func(p *corev1.Pod) {
		if err := h.Client.Delete(context.Background(), p); err != nil {
			t.Fatal(err)
		}
	})
}

func TestFailedPodIsRelaunched(t *testing.T) {
	h, _ := submit(t, 3)
	relaunchAfter(t, h, func(p *corev1.Pod) {
		p.Status.Phase = corev1.PodFailed
		if err := h.Client.Status().Update(context.Background(), p); err != nil {
			t.Fatal(err)
		}
	})
}

func TestCompletedPodIsNotRelaunchedByDefault(t *testing.T) {
	h, _ := submit(t, 3)
	pod := &corev1.Pod{}
	h.Get(t, ns, app.PodName(app.PEName("pipe", 0), 1), pod)
	h.External(func() {
		pod.Status.Phase = corev1.PodSucceeded
		if err := h.Client.Status().Update(context.Background(), pod); err != nil {
			t.Fatal(err)
		}
	})
	h.Run(t, 1000)
	pe := &v1alpha1.ProcessingElement{}
	h.Get(t, ns, app.PEName("pipe", 0), pe)
	if pe.Spec.LaunchCount != 1 || pe.Status.PodPhase != corev1.PodSucceeded {
		t.Fatalf("launch %d phase %s, want 1 and Succeeded (restartCompleted is off)", pe.Spec.LaunchCount, pe.Status.PodPhase)
	}
}

func TestInvalidJobCreatesNothing(t *testing.T) {
	for name, mutate := range map[string]func(j *v1alpha1.Job){
		"cycle": func(j *v1alpha1.Job) {
			j.Spec.Application.Streams = append(j.Spec.Application.Streams,
				v1alpha1.Stream{From: v1alpha1.Endpoint{Operator: "op2"}, To: v1alpha1.Endpoint{Operator: "op1"}})
			j.Spec.Application.Operators[1].Kind = v1alpha1.KindUnion
		},
		"missing port": func(j *v1alpha1.Job) { j.Spec.Application.Streams[0].To.Port = 3 },
		"unknown pool": func(j *v1alpha1.Job) { j.Spec.Application.Operators[0].HostPool = "gpu" },
	} {
		t.Run(name, func(t *testing.T) {
			j := wiringtest.PipelineJob(ns, "bad", 4)
			mutate(j)
			h := wiringtest.New(t, j)
			h.Run(t, 100)
			got := job(t, h, "bad")
			c := cond(got, v1alpha1.ConditionValid)
			if got.Status.Phase != v1alpha1.JobInvalid || c == nil || c.Status != metav1.ConditionFalse || c.Message == "" {
				t.Fatalf("phase %q, Valid %+v; want Invalid with a message", got.Status.Phase, c)
			}
			t.Logf("message: %s", c.Message)
			var pes v1alpha1.ProcessingElementList
			var cms corev1.ConfigMapList
			_ = h.Client.List(context.Background(), &pes)
			_ = h.Client.List(context.Background(), &cms)
			if len(pes.Items)+len(cms.Items) != 0 {
				t.Fatalf("an invalid job created %d PEs and %d ConfigMaps", len(pes.Items), len(cms.Items))
			}
		})
	}
}

// Every third platform write fails with a conflict or a server error; the
// chain must still converge to the same result.
func TestConvergesDespiteWriteErrors(t *testing.T) {
	j := wiringtest.PipelineJob(ns, "pipe", 5)
	h := wiringtest.New(t, j)
	n := 0
	h.Fail = func(verb string, obj client.Object) error {
		n++
		switch n % 6 {
		case 0:
			return wiringtest.Conflict(obj)
		case 3:
			return apierrors.NewInternalError(errors.New("etcdserver: request timed out"))
		}
		return nil
	}
	h.Run(t, 5000)
	h.Kubelet(t, ns, "pipe", "node-1")
	h.Run(t, 5000)
	if h.Errors == 0 {
		t.Fatal("no reconcile failed: the injection did not bite")
	}
	got := job(t, h, "pipe")
	if got.Status.Phase != v1alpha1.JobSubmitted {
		t.Fatalf("phase %q after injected errors, want Submitted", got.Status.Phase)
	}
	checkChildren(t, h, got, 5, 1)
}

// An operator that stops after any number of reconciles and restarts with
// empty queues and coordinators converges to the same objects.
func TestRestartAtEveryStepConverges(t *testing.T) {
	full, _ := submit(t, 3)
	total := full.Reconciles
	for stop := 1; stop < total; stop += 2 {
		t.Run(fmt.Sprintf("after-%d", stop), func(t *testing.T) {
			j := wiringtest.PipelineJob(ns, "pipe", 3)
			h := wiringtest.New(t, j)
			func() {
				defer func() { _ = recover() }()
				h.Run(&stopAfter{T: t, n: stop}, stop)
			}()
			h.Restart(t)
			h.Run(t, 1000)
			h.Kubelet(t, ns, "pipe", "node-1")
			h.Run(t, 1000)
			got := job(t, h, "pipe")
			if got.Status.Phase != v1alpha1.JobSubmitted {
				t.Fatalf("phase %q after restart, want Submitted", got.Status.Phase)
			}
			checkChildren(t, h, got, 3, 1)
		})
	}
}

// stopAfter turns the harness's "did not settle" failure into a stop: the
// operator is killed after n reconciles.
type stopAfter struct {
	*testing.T
	n int
}

func (s *stopAfter) Fatalf(string, ...any) { panic("stopped") }

func TestVanishingObjects(t *testing.T) {
	j := wiringtest.PipelineJob(ns, "pipe", 3)
	h := wiringtest.New(t, j)
	h.Run(t, 1000)
	// A PE's ConfigMap deleted by hand before its relaunch, and another PE
	// deleted outright: nothing panics, the rest of the Job carries on.
	h.External(func() {
		cm := &corev1.ConfigMap{}
		h.Get(t, ns, app.PEName("pipe", 0), cm)
		if err := h.Client.Delete(context.Background(), cm); err != nil {
			t.Fatal(err)
		}
		pe := &v1alpha1.ProcessingElement{}
		h.Get(t, ns, app.PEName("pipe", 2), pe)
		if err := h.Client.Delete(context.Background(), pe); err != nil {
			t.Fatal(err)
		}
	})
	h.Run(t, 1000)
	h.Kubelet(t, ns, "pipe", "node-1")
	h.Run(t, 1000)
	pe := &v1alpha1.ProcessingElement{}
	h.Get(t, ns, app.PEName("pipe", 1), pe)
	if pe.Status.Connectivity != v1alpha1.ConnectivityConnected {
		t.Fatalf("untouched PE: %+v", pe.Status)
	}
	if got := job(t, h, "pipe"); got.Status.Phase == v1alpha1.JobSubmitted {
		t.Fatalf("job Submitted although a PE is gone")
	}
}

func TestUnschedulableThenTimeoutThenRetry(t *testing.T) {
	j := wiringtest.PipelineJob(ns, "pipe", 3)
	j.Spec.SubmissionTimeout = &metav1.Duration{Duration: time.Minute}
	h := wiringtest.New(t, j)
	h.Run(t, 1000)
	msg := "0/3 nodes are available: 3 Insufficient cpu."
	h.External(func() {
		for _, p := range h.Pods(t, ns, "pipe") {
			p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse,
				Reason: corev1.PodReasonUnschedulable, Message: msg}}
			if err := h.Client.Status().Update(context.Background(), &p); err != nil {
				t.Fatal(err)
			}
		}
	})
	h.Run(t, 1000)
	got := job(t, h, "pipe")
	c := cond(got, v1alpha1.ConditionSubmitted)
	if got.Status.Phase != v1alpha1.JobSubmitting || c == nil || c.Reason != corev1.PodReasonUnschedulable || !strings.Contains(c.Message, msg) {
		t.Fatalf("phase %q condition %+v; want Submitting with the scheduler's reason", got.Status.Phase, c)
	}
	h.Advance(2 * time.Minute)
	h.Run(t, 1000)
	got = job(t, h, "pipe")
	if c := cond(got, v1alpha1.ConditionSubmitted); got.Status.Phase != v1alpha1.JobFailed || c.Reason != corev1.PodReasonUnschedulable {
		t.Fatalf("after the timeout: phase %q condition %+v; want Failed, Unschedulable", got.Status.Phase, c)
	}
	// Retry. The fake client has no garbage collector and deletes at once
	// whatever the propagation policy, so the old pods outlive their PEs:
	// the new PEs must not adopt them (the pod controller removes them).
	h.External(func() {
		got.Spec.Retry = 1
		if err := h.Client.Update(context.Background(), got); err != nil {
			t.Fatal(err)
		}
	})
	h.Run(t, 1000)
	got = job(t, h, "pipe")
	if got.Status.Phase != v1alpha1.JobSubmitting || got.Status.Attempt != 1 {
		t.Fatalf("after the retry: phase %q attempt %d; want Submitting, 1", got.Status.Phase, got.Status.Attempt)
	}
	h.Kubelet(t, ns, "pipe", "node-1")
	h.Run(t, 1000)
	if got = job(t, h, "pipe"); got.Status.Phase != v1alpha1.JobSubmitted {
		t.Fatalf("phase %q after the retry's pods run, want Submitted", got.Status.Phase)
	}
	checkChildren(t, h, got, 3, 1)
}

// A Job that names no restart policy gets the documented default: a deleted
// pod is replaced (regression: a zero-valued policy used to mean "never").
func TestDefaultRestartPolicyRelaunchesDeletedPod(t *testing.T) {
	j := wiringtest.PipelineJob(ns, "pipe", 3)
	j.Spec.PE.RestartPolicy = nil
	h := wiringtest.New(t, j)
	h.Run(t, 1000)
	h.Kubelet(t, ns, "pipe", "node-1")
	h.Run(t, 1000)
	relaunchAfter(t, h, func(p *corev1.Pod) {
		if err := h.Client.Delete(context.Background(), p); err != nil {
			t.Fatal(err)
		}
	})
}
