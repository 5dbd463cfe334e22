package integration

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/app"
	"sluice.dev/sluice/platform/integration/realapi"
	"sluice.dev/sluice/platform/wiring/wiringtest"
)

var nsSeq atomic.Int32

func namespace(t *testing.T) string {
	t.Helper()
	name := fmt.Sprintf("it-%d", nsSeq.Add(1))
	if err := k8s.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil {
		t.Fatal(err)
	}
	return name
}

func getJob(t *testing.T, ns, name string) *v1alpha1.Job {
	t.Helper()
	j := &v1alpha1.Job{}
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, j); err != nil {
		t.Fatal(err)
	}
	return j
}

func pods(t *testing.T, ns string) []corev1.Pod {
	t.Helper()
	var l corev1.PodList
	if err := k8s.List(context.Background(), &l, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	return l.Items
}

// kubelet plays scheduler and kubelet for every unbound pod of ns.
func kubelet(t *testing.T, ns, node string) int {
	t.Helper()
	n, err := realapi.Kubelet(context.Background(), k8s, ns, node)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func waitPhase(t *testing.T, ns, name string, phase v1alpha1.JobPhase, within time.Duration) *v1alpha1.Job {
	t.Helper()
	var j *v1alpha1.Job
	eventually(t, within, "job "+name+" "+string(phase), func() (bool, string) {
		j = getJob(t, ns, name)
		return j.Status.Phase == phase, fmt.Sprintf("phase %q conditions %+v", j.Status.Phase, j.Status.Conditions)
	})
	return j
}

// waitPods waits until ns holds n PE pods, driving none of them.
func waitPods(t *testing.T, ns string, n int) {
	t.Helper()
	eventually(t, 30*time.Second, fmt.Sprintf("%d pods", n), func() (bool, string) {
		p := pods(t, ns)
		var pes v1alpha1.ProcessingElementList
		_ = k8s.List(context.Background(), &pes, client.InNamespace(ns))
		state := fmt.Sprintf("%d pods;", len(p))
		for _, x := range pes.Items {
			state += fmt.Sprintf(" %s launch=%d status=%+v;", x.Name, x.Spec.LaunchCount, x.Status)
		}
		return len(p) == n, state
	})
}

func createPipeline(t *testing.T, ns string, n int) *v1alpha1.Job {
	t.Helper()
	j := wiringtest.PipelineJob(ns, "pipe", n)
	j.UID, j.Generation = "", 0
	if err := k8s.Create(context.Background(), j); err != nil {
		t.Fatal(err)
	}
	return j
}

func submitted(t *testing.T, ns string, n int) *v1alpha1.Job {
	t.Helper()
	waitPods(t, ns, n)
	if started := kubelet(t, ns, "node-a"); started != n {
		t.Fatalf("started %d pods, want %d", started, n)
	}
	j := waitPhase(t, ns, "pipe", v1alpha1.JobSubmitted, 30*time.Second)
	if j.Status.ConnectedPEs != int32(n) || j.Status.PEs != int32(n) {
		t.Fatalf("job status %+v", j.Status)
	}
	return j
}

func TestSubmitJobCreatesOwnedChildrenAndBecomesSubmitted(t *testing.T) {
	defer startOperator(t)()
	ns := namespace(t)
	createPipeline(t, ns, 4)
	j := submitted(t, ns, 4)
	ctx := context.Background()
	var pes v1alpha1.ProcessingElementList
	var cms corev1.ConfigMapList
	var svcs corev1.ServiceList
	var pools v1alpha1.HostPoolList
	for _, l := range []client.ObjectList{&pes, &cms, &svcs, &pools} {
		if err := k8s.List(ctx, l, client.InNamespace(ns)); err != nil {
			t.Fatal(err)
		}
	}
	if len(pes.Items) != 4 || len(svcs.Items) != 3 {
		t.Fatalf("%d PEs and %d Services, want 4 and 3", len(pes.Items), len(svcs.Items))
	}
	generated := 0
	for i := range cms.Items {
		if cms.Items[i].Labels[v1alpha1.LabelJob] == "" {
			continue // kube-root-ca.crt
		}
		generated++
		if ref := metav1.GetControllerOf(&cms.Items[i]); ref == nil || ref.UID != j.UID {
			t.Errorf("ConfigMap %s not owned by the job", cms.Items[i].Name)
		}
	}
	if generated != 5 {
		t.Fatalf("%d generated ConfigMaps, want 5 (port table + 4 PEs)", generated)
	}
	for i := range svcs.Items {
		s := &svcs.Items[i]
		if ref := metav1.GetControllerOf(s); ref == nil || ref.UID != j.UID || s.Spec.ClusterIP != corev1.ClusterIPNone || !s.Spec.PublishNotReadyAddresses {
			t.Errorf("Service %s: owner %v clusterIP %q publishNotReady %v", s.Name, ref, s.Spec.ClusterIP, s.Spec.PublishNotReadyAddresses)
		}
		if s.Spec.Ports[0].Port != v1alpha1.PEInputPortBase {
			t.Errorf("Service %s port %d, want %d", s.Name, s.Spec.Ports[0].Port, v1alpha1.PEInputPortBase)
		}
	}
	for i := range pes.Items {
		p := &pes.Items[i]
		if ref := metav1.GetControllerOf(p); ref == nil || ref.UID != j.UID {
			t.Errorf("PE %s not owned by the job", p.Name)
		}
		if p.Spec.LaunchCount != 1 || p.Status.Connectivity != v1alpha1.ConnectivityConnected || p.Status.NodeName != "node-a" {
			t.Errorf("PE %s: launch %d status %+v", p.Name, p.Spec.LaunchCount, p.Status)
		}
	}
	for _, p := range pods(t, ns) {
		owner := &v1alpha1.ProcessingElement{}
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: p.Labels[v1alpha1.LabelPE]}, owner); err != nil {
			t.Fatal(err)
		}
		if ref := metav1.GetControllerOf(&p); ref == nil || ref.UID != owner.UID || ref.Kind != "ProcessingElement" {
			t.Errorf("pod %s owner %v, want PE %s", p.Name, ref, owner.Name)
		}
	}
}

func TestDeletedPodIsReplacedUnderTheSamePE(t *testing.T) {
	defer startOperator(t)()
	ns := namespace(t)
	createPipeline(t, ns, 3)
	submitted(t, ns, 3)
	ctx := context.Background()
	victim := &corev1.Pod{}
	pe1 := app.PEName("pipe", 1)
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: app.PodName(pe1, 1)}, victim); err != nil {
		t.Fatal(err)
	}
	// envtest has no kubelet to finish a graceful deletion: delete at once.
	if err := k8s.Delete(ctx, victim, client.GracePeriodSeconds(0)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "new pod of launch 2", func() (bool, string) {
		p := &v1alpha1.ProcessingElement{}
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: pe1}, p); err != nil {
			return false, err.Error()
		}
		n := &corev1.Pod{}
		err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: app.PodName(pe1, 2)}, n)
		return p.Spec.LaunchCount == 2 && err == nil, fmt.Sprintf("launch %d, pod: %v", p.Spec.LaunchCount, err)
	})
	if got := len(pods(t, ns)); got != 3 {
		t.Fatalf("%d pods after the replacement, want 3", got)
	}
	kubelet(t, ns, "node-b")
	eventually(t, 30*time.Second, "PE connected again", func() (bool, string) {
		p := &v1alpha1.ProcessingElement{}
		_ = k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: pe1}, p)
		return p.Status.Connectivity == v1alpha1.ConnectivityConnected && p.Status.PodLaunch == 2 && p.Status.NodeName == "node-b",
			fmt.Sprintf("%+v", p.Status)
	})
	if j := getJob(t, ns, "pipe"); j.Status.Phase != v1alpha1.JobSubmitted {
		t.Fatalf("job phase %q after the replacement", j.Status.Phase)
	}
}

func TestOperatorRestartMidSubmissionConverges(t *testing.T) {
	ns := namespace(t)
	stop := startOperator(t)
	createPipeline(t, ns, 6)
	// Stop the operator as soon as the chain has begun: some PEs exist,
	// perhaps some launch counts and pods.
	eventually(t, 30*time.Second, "first PE", func() (bool, string) {
		var l v1alpha1.ProcessingElementList
		_ = k8s.List(context.Background(), &l, client.InNamespace(ns))
		return len(l.Items) > 0, fmt.Sprintf("%d PEs", len(l.Items))
	})
	stop()
	before := len(pods(t, ns))
	defer startOperator(t)()
	j := submitted(t, ns, 6)
	t.Logf("operator stopped with %d of 6 pods created; converged to %s", before, j.Status.Phase)
	var l v1alpha1.ProcessingElementList
	if err := k8s.List(context.Background(), &l, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	for _, p := range l.Items {
		if p.Spec.LaunchCount != 1 {
			t.Errorf("PE %s launched %d times; a restart must not relaunch", p.Name, p.Spec.LaunchCount)
		}
	}
}

func TestSchemaRejectsInvalidJobs(t *testing.T) {
	ns := namespace(t)
	for name, mutate := range map[string]func(j *v1alpha1.Job){
		"unknown operator kind": func(j *v1alpha1.Job) { j.Spec.Application.Operators[1].Kind = "teleport" },
		"duplicate operator":    func(j *v1alpha1.Job) { j.Spec.Application.Operators[1].Name = "op0" },
		"empty graph":           func(j *v1alpha1.Job) { j.Spec.Application.Operators = nil; j.Spec.Application.Streams = nil },
		"bad operator name":     func(j *v1alpha1.Job) { j.Spec.Application.Operators[0].Name = "Op_0" },
		"absurd rate": func(j *v1alpha1.Job) {
			j.Spec.Application.Operators[0].Params = &v1alpha1.OperatorParams{Rate: ptr(int64(1) << 40)}
		},
		"target without count": func(j *v1alpha1.Job) { j.Spec.Fusion.Mode = v1alpha1.FusionTarget },
		"outputs on a map": func(j *v1alpha1.Job) {
			j.Spec.Application.Operators[1].Params = &v1alpha1.OperatorParams{Outputs: ptr(int32(3))}
		},
	} {
		t.Run(name, func(t *testing.T) {
			j := wiringtest.PipelineJob(ns, "bad", 3)
			j.UID, j.Generation = "", 0
			mutate(j)
			err := k8s.Create(context.Background(), j)
			if !apierrors.IsInvalid(err) {
				t.Fatalf("create: %v, want Invalid from the API server", err)
			}
			t.Logf("refused: %v", err)
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestSemanticallyInvalidJobIsMarkedAndCreatesNothing(t *testing.T) {
	defer startOperator(t)()
	ns := namespace(t)
	j := wiringtest.PipelineJob(ns, "cyclic", 3)
	j.UID, j.Generation = "", 0
	j.Spec.Application.Operators[1].Kind = v1alpha1.KindUnion
	j.Spec.Application.Streams = append(j.Spec.Application.Streams,
		v1alpha1.Stream{From: v1alpha1.Endpoint{Operator: "op2"}, To: v1alpha1.Endpoint{Operator: "op1", Port: 1}})
	j.Spec.Application.Operators[2].Kind = v1alpha1.KindSplit
	j.Spec.Application.Streams = append(j.Spec.Application.Streams,
		v1alpha1.Stream{From: v1alpha1.Endpoint{Operator: "op2", Port: 1}, To: v1alpha1.Endpoint{Operator: "op1", Port: 1}})
	if err := k8s.Create(context.Background(), j); err != nil {
		t.Fatal(err)
	}
	got := waitPhase(t, ns, "cyclic", v1alpha1.JobInvalid, 30*time.Second)
	c := meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionValid)
	if c == nil || c.Status != metav1.ConditionFalse || !strings.Contains(c.Message, "cycle") {
		t.Fatalf("Valid condition %+v, want False naming the cycle", c)
	}
	time.Sleep(time.Second) // give a wrong controller the time to create something
	var pes v1alpha1.ProcessingElementList
	if err := k8s.List(context.Background(), &pes, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	if len(pes.Items) != 0 || len(pods(t, ns)) != 0 {
		t.Fatalf("an invalid job created %d PEs", len(pes.Items))
	}
}

func TestJobDeletionRemovesEveryDependent(t *testing.T) {
	if !haveGC {
		t.Skip("no kube-controller-manager: nothing collects garbage")
	}
	for _, policy := range []metav1.DeletionPropagation{metav1.DeletePropagationBackground, metav1.DeletePropagationForeground} {
		t.Run(string(policy), func(t *testing.T) {
			defer startOperator(t)()
			ns := namespace(t)
			createPipeline(t, ns, 3)
			j := submitted(t, ns, 3)
			if err := k8s.Delete(context.Background(), j, client.PropagationPolicy(policy)); err != nil {
				t.Fatal(err)
			}
			eventually(t, 60*time.Second, "every dependent gone", func() (bool, string) {
				var pes v1alpha1.ProcessingElementList
				var cms corev1.ConfigMapList
				var svcs corev1.ServiceList
				var jobs v1alpha1.JobList
				ctx := context.Background()
				for _, l := range []client.ObjectList{&pes, &svcs, &jobs} {
					_ = k8s.List(ctx, l, client.InNamespace(ns))
				}
				_ = k8s.List(ctx, &cms, client.InNamespace(ns), client.HasLabels{v1alpha1.LabelJob})
				// The garbage collector deletes bound pods gracefully; the
				// kubelet would finish that once the container stopped.
				for _, p := range pods(t, ns) {
					if p.DeletionTimestamp != nil {
						_ = k8s.Delete(ctx, &p, client.GracePeriodSeconds(0))
					}
				}
				left := len(pes.Items) + len(cms.Items) + len(svcs.Items) + len(jobs.Items) + len(pods(t, ns))
				return left == 0, fmt.Sprintf("%d jobs, %d PEs, %d ConfigMaps, %d Services, %d pods",
					len(jobs.Items), len(pes.Items), len(cms.Items), len(svcs.Items), len(pods(t, ns)))
			})
		})
	}
}

func TestUnschedulableJobFailsAndRetryRecreatesChildren(t *testing.T) {
	if !haveGC {
		t.Skip("no kube-controller-manager: foreground deletion never completes")
	}
	defer startOperator(t)()
	ns := namespace(t)
	j := wiringtest.PipelineJob(ns, "pipe", 3)
	j.UID, j.Generation = "", 0
	j.Spec.SubmissionTimeout = &metav1.Duration{Duration: 3 * time.Second}
	if err := k8s.Create(context.Background(), j); err != nil {
		t.Fatal(err)
	}
	waitPods(t, ns, 3)
	ctx := context.Background()
	msg := "0/3 nodes are available: 3 Insufficient cpu."
	for _, p := range pods(t, ns) {
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse,
			Reason: corev1.PodReasonUnschedulable, Message: msg}}
		if err := k8s.Status().Update(ctx, &p); err != nil {
			t.Fatal(err)
		}
	}
	failed := waitPhase(t, ns, "pipe", v1alpha1.JobFailed, 30*time.Second)
	c := meta.FindStatusCondition(failed.Status.Conditions, v1alpha1.ConditionSubmitted)
	if c == nil || c.Reason != corev1.PodReasonUnschedulable || !strings.Contains(c.Message, msg) {
		t.Fatalf("Submitted condition %+v, want the scheduler's reason", c)
	}
	oldPE := &v1alpha1.ProcessingElement{}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: app.PEName("pipe", 0)}, oldPE); err != nil {
		t.Fatal(err)
	}
	failed.Spec.Retry = 1
	failed.Spec.SubmissionTimeout = &metav1.Duration{Duration: time.Minute}
	if err := k8s.Update(ctx, failed); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, "children re-created", func() (bool, string) {
		p := &v1alpha1.ProcessingElement{}
		err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: app.PEName("pipe", 0)}, p)
		return err == nil && p.UID != oldPE.UID && len(pods(t, ns)) == 3, fmt.Sprintf("PE: %v, %d pods", err, len(pods(t, ns)))
	})
	for _, p := range pods(t, ns) {
		if len(p.Status.Conditions) > 0 {
			t.Fatalf("pod %s is from the failed attempt", p.Name)
		}
	}
	kubelet(t, ns, "node-a")
	got := waitPhase(t, ns, "pipe", v1alpha1.JobSubmitted, 30*time.Second)
	if got.Status.Attempt != 1 {
		t.Fatalf("attempt %d, want 1", got.Status.Attempt)
	}
}
