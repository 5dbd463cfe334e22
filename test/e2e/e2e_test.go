//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"sluice.dev/sluice/kindconfig"
	"sluice.dev/sluice/platform/api/v1alpha1"
)

const submitTimeout = 3 * time.Minute

// A four-PE pipeline becomes Submitted on a three-worker cluster, every PE
// runs in a pod of its own on a worker, and tuples reach the sink over TCP.
func TestPipelineSubmittedAndFlowing(t *testing.T) {
	c := cluster(t)
	ctx := context.Background()
	ns := namespace(t, c, "e2e-flow")
	if err := c.Client.Create(ctx, pipelineJob(ns, "pipe")); err != nil {
		t.Fatalf("creating Job: %v", err)
	}
	job := waitSubmitted(t, c, ns, "pipe", submitTimeout)
	if job.Status.PEs != 4 || job.Status.ConnectedPEs != 4 {
		t.Fatalf("Submitted Job reports %d PEs, %d connected; want 4 and 4", job.Status.PEs, job.Status.ConnectedPEs)
	}
	workers, err := c.Workers()
	if err != nil {
		t.Fatal(err)
	}
	nodes := map[string]bool{}
	for i := int32(0); i < 4; i++ {
		pe, err := getPE(ctx, c, ns, "pipe", i)
		if err != nil {
			t.Fatalf("PE %d: %v", i, err)
		}
		if pe.Status.Connectivity != v1alpha1.ConnectivityConnected {
			t.Errorf("PE %s connectivity %q, want Connected", pe.Name, pe.Status.Connectivity)
		}
		pods, err := pePods(ctx, c, ns, pe.Name)
		if err != nil {
			t.Fatal(err)
		}
		if len(pods) != 1 || pods[0].Name != pe.Status.PodName || pods[0].Status.Phase != corev1.PodRunning {
			t.Fatalf("PE %s: want exactly its pod %q running, have %d pods", pe.Name, pe.Status.PodName, len(pods))
		}
		if !slices.Contains(workers, pods[0].Spec.NodeName) {
			t.Errorf("pod %s on %q, not a worker %v", pods[0].Name, pods[0].Spec.NodeName, workers)
		}
		nodes[pods[0].Spec.NodeName] = true
	}
	t.Logf("4 PE pods on %d nodes", len(nodes))
	// Tuples reach the sink, and keep reaching it.
	first := waitSinkGrows(t, c, ns, "pipe", 0, time.Minute)
	second := waitSinkGrows(t, c, ns, "pipe", first, time.Minute)
	t.Logf("sink counted %.0f then %.0f tuples", first, second)
	// The map PE passed tuples on its TCP output (not only in-process).
	mp, _ := getPE(ctx, c, ns, "pipe", mapPE)
	out, err := c.PECounter(ctx, ns, mp.Status.PodName, "sluice_pe_tuples_out_total")
	if err != nil || out <= 0 {
		t.Fatalf("map PE wrote %v tuples to its stream (err %v), want > 0", out, err)
	}
}

// Deleting a PE's pod makes the platform relaunch it (launch count 2, a new
// pod under the same PE) and tuples flow through the new pod.
func TestPodDeletionRelaunches(t *testing.T) {
	c := cluster(t)
	ctx := context.Background()
	ns := namespace(t, c, "e2e-relaunch")
	if err := c.Client.Create(ctx, pipelineJob(ns, "pipe")); err != nil {
		t.Fatalf("creating Job: %v", err)
	}
	waitSubmitted(t, c, ns, "pipe", submitTimeout)
	before := waitSinkGrows(t, c, ns, "pipe", 0, time.Minute)
	pe, err := getPE(ctx, c, ns, "pipe", mapPE)
	if err != nil {
		t.Fatal(err)
	}
	if pe.Spec.LaunchCount != 1 || pe.Status.PodLaunch != 1 {
		t.Fatalf("before the fault: launch count %d, pod launch %d; want 1 and 1", pe.Spec.LaunchCount, pe.Status.PodLaunch)
	}
	oldPod := pe.Status.PodName
	if err := c.Client.Delete(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: oldPod}}); err != nil {
		t.Fatalf("deleting pod %s: %v", oldPod, err)
	}
	var newPod string
	waitFor(t, 2*time.Minute, "PE relaunched with launch count 2 and Connected", func(ctx context.Context) (bool, string) {
		p, err := getPE(ctx, c, ns, "pipe", mapPE)
		if err != nil {
			return false, err.Error()
		}
		newPod = p.Status.PodName
		return p.Spec.LaunchCount == 2 && p.Status.PodLaunch == 2 && p.Status.Connectivity == v1alpha1.ConnectivityConnected &&
				newPod != oldPod,
			fmt.Sprintf("launch=%d podLaunch=%d pod=%s connectivity=%s", p.Spec.LaunchCount, p.Status.PodLaunch, newPod, p.Status.Connectivity)
	})
	pods, err := pePods(ctx, c, ns, pe.Name)
	if err != nil {
		t.Fatal(err)
	}
	if len(pods) != 1 || pods[0].Name != newPod || pods[0].Labels[v1alpha1.LabelLaunch] != "2" {
		t.Fatalf("want only the new pod %s of launch 2 live, have %v", newPod, podNames(pods))
	}
	// Tuples go through the new process and reach the sink again.
	waitFor(t, time.Minute, "new map pod passing tuples", func(ctx context.Context) (bool, string) {
		v, err := c.PECounter(ctx, ns, newPod, "sluice_pe_tuples_out_total")
		if err != nil {
			return false, err.Error()
		}
		return v > 0, fmt.Sprintf("%.0f tuples out", v)
	})
	now, err := sinkCount(ctx, c, ns, "pipe")
	if err != nil {
		t.Fatal(err)
	}
	after := waitSinkGrows(t, c, ns, "pipe", now, time.Minute)
	waitSubmitted(t, c, ns, "pipe", time.Minute)
	t.Logf("pod %s replaced by %s; sink %.0f before the fault, %.0f after", oldPod, newPod, before, after)
}

// Deleting a Job leaves nothing behind: no PEs, pods, ConfigMaps or
// Services (the real garbage collector follows the ownerReferences).
func TestJobDeletionLeavesNothing(t *testing.T) {
	c := cluster(t)
	ctx := context.Background()
	ns := namespace(t, c, "e2e-gc")
	job := pipelineJob(ns, "pipe")
	if err := c.Client.Create(ctx, job); err != nil {
		t.Fatalf("creating Job: %v", err)
	}
	waitSubmitted(t, c, ns, "pipe", submitTimeout)
	present, err := leftovers(ctx, c, ns)
	if err != nil {
		t.Fatal(err)
	}
	// 1 Job, 4 PEs, 4 pods, 4 PE ConfigMaps + the port table, services of PEs with inputs.
	for _, kind := range []string{"Job/", "ProcessingElement/", "Pod/", "ConfigMap/", "Service/"} {
		if !slices.ContainsFunc(present, func(s string) bool { return strings.HasPrefix(s, kind) }) {
			t.Fatalf("before deletion there is no %s object: %v", strings.TrimSuffix(kind, "/"), present)
		}
	}
	t.Logf("before deletion: %d objects", len(present))
	if err := c.Client.Delete(ctx, job); err != nil {
		t.Fatalf("deleting Job: %v", err)
	}
	waitFor(t, 2*time.Minute, "everything of the Job gone", func(ctx context.Context) (bool, string) {
		left, err := leftovers(ctx, c, ns)
		if err != nil {
			return false, err.Error()
		}
		return len(left) == 0, strings.Join(left, " ")
	})
}

// The operator killed in the middle of a submission: its replacement
// resumes the causal chain from the API server's state, and the Job ends
// Submitted with one pod per PE, each launched once.
func TestOperatorKilledMidSubmission(t *testing.T) {
	c := cluster(t)
	ctx := context.Background()
	ns := namespace(t, c, "e2e-opkill")
	op, err := c.OperatorPod(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Client.Create(ctx, pipelineJob(ns, "pipe")); err != nil {
		t.Fatalf("creating Job: %v", err)
	}
	// Kill as soon as the first PE exists: the chain has started, and pods
	// need seconds to become ready, so the Job cannot be Submitted yet.
	waitFor(t, time.Minute, "first PE created", func(ctx context.Context) (bool, string) {
		var pes v1alpha1.ProcessingElementList
		if err := c.Client.List(ctx, &pes, client.InNamespace(ns)); err != nil {
			return false, err.Error()
		}
		return len(pes.Items) > 0, fmt.Sprintf("%d PEs", len(pes.Items))
	})
	if err := c.Client.Delete(ctx, op, client.GracePeriodSeconds(0)); err != nil {
		t.Fatalf("deleting operator pod: %v", err)
	}
	j, err := getJob(ctx, c, ns, "pipe")
	if err != nil {
		t.Fatal(err)
	}
	if meta.IsStatusConditionTrue(j.Status.Conditions, v1alpha1.ConditionSubmitted) {
		t.Fatalf("Job already Submitted when the operator was killed; the test did not hit mid-submission: %s", jobState(j))
	}
	var pods corev1.PodList
	_ = c.Client.List(ctx, &pods, client.InNamespace(ns))
	t.Logf("operator pod %s killed with the Job at %s and %d PE pods", op.Name, jobState(j), len(pods.Items))

	waitFor(t, 2*time.Minute, "a new operator pod", func(ctx context.Context) (bool, string) {
		p, err := c.OperatorPod(ctx)
		if err != nil {
			return false, err.Error()
		}
		return p.Name != op.Name && kindconfig.PodReady(p), p.Name
	})
	// The new replica waits out the dead leader's lease (15 s) first.
	job := waitSubmitted(t, c, ns, "pipe", submitTimeout)
	if job.Status.PEs != 4 || job.Status.ConnectedPEs != 4 {
		t.Fatalf("Job reports %d PEs, %d connected; want 4 and 4", job.Status.PEs, job.Status.ConnectedPEs)
	}
	for i := int32(0); i < 4; i++ {
		pe, err := getPE(ctx, c, ns, "pipe", i)
		if err != nil {
			t.Fatal(err)
		}
		pods, err := pePods(ctx, c, ns, pe.Name)
		if err != nil {
			t.Fatal(err)
		}
		if pe.Spec.LaunchCount != 1 || len(pods) != 1 {
			t.Errorf("PE %s: launch count %d with pods %v; want launch 1 and one pod", pe.Name, pe.Spec.LaunchCount, podNames(pods))
		}
	}
	waitSinkGrows(t, c, ns, "pipe", 0, time.Minute)
}

// Invalid Jobs are refused with their reason: by the API server when the
// schema can state the fault, by the job controller (Valid=False, phase
// Invalid, nothing created) when only the graph logic can.
func TestInvalidJobRefused(t *testing.T) {
	c := cluster(t)
	ctx := context.Background()
	ns := namespace(t, c, "e2e-invalid")

	t.Run("schema", func(t *testing.T) {
		job := pipelineJob(ns, "bad-kind")
		job.Spec.Application.Operators[1].Kind = "teleport"
		err := c.Client.Create(ctx, job)
		if !apierrors.IsInvalid(err) {
			t.Fatalf("creating a Job with operator kind teleport: got %v, want an Invalid error", err)
		}
		if !strings.Contains(err.Error(), "teleport") || !strings.Contains(err.Error(), "kind") {
			t.Fatalf("refusal does not name the field and value: %v", err)
		}
		t.Logf("API server: %v", err)
	})

	t.Run("graph", func(t *testing.T) {
		job := pipelineJob(ns, "cycle")
		// map -> aggregate -> map is a cycle, and the source's output goes nowhere.
		job.Spec.Application.Streams[0] = v1alpha1.Stream{
			From: v1alpha1.Endpoint{Operator: "per-key"}, To: v1alpha1.Endpoint{Operator: "work"}}
		if err := c.Client.Create(ctx, job); err != nil {
			t.Fatalf("creating Job: %v", err)
		}
		var reason string
		waitFor(t, time.Minute, "Job Invalid", func(ctx context.Context) (bool, string) {
			j, err := getJob(ctx, c, ns, "cycle")
			if err != nil {
				return false, err.Error()
			}
			cond := meta.FindStatusCondition(j.Status.Conditions, v1alpha1.ConditionValid)
			if cond != nil {
				reason = cond.Reason + ": " + cond.Message
			}
			return j.Status.Phase == v1alpha1.JobInvalid && cond != nil && cond.Status == "False", jobState(j)
		})
		if !strings.Contains(reason, "cycle") && !strings.Contains(reason, "src") {
			t.Errorf("Valid=False reason does not name the fault: %q", reason)
		}
		t.Logf("job controller: %s", reason)
		// Nothing was created for it; look again a little later, in case
		// creation raced with the status write.
		for range 2 {
			left, err := leftovers(ctx, c, ns)
			if err != nil {
				t.Fatal(err)
			}
			if len(left) != 1 || left[0] != "Job/cycle" {
				t.Fatalf("objects besides the invalid Job: %v", left)
			}
			time.Sleep(3 * time.Second)
		}
	})
}

func podNames(pods []corev1.Pod) []string {
	var out []string
	for _, p := range pods {
		out = append(out, p.Name)
	}
	return out
}
