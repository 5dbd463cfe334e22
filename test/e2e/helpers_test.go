//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"sluice.dev/sluice/kindconfig"
	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/app"
)

// sinkMetric counts the tuples the sink operator took in.
const sinkMetric = "sluice_pe_operator_tuples_in_total"

// namespace creates a namespace of its own for the test and deletes it at
// the end.
func namespace(t *testing.T, c *kindconfig.Cluster, prefix string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: prefix + "-" + rand.String(5)}}
	if err := c.Client.Create(context.Background(), ns); err != nil {
		t.Fatalf("creating namespace: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			dump(t, c, ns.Name)
		}
		_ = c.Client.Delete(context.Background(), ns)
	})
	return ns.Name
}

// pipelineJob is a four-PE pipeline (source -> map -> aggregate -> sink,
// one PE per operator) whose source never ends, so that tuples keep
// flowing for as long as a test looks.
func pipelineJob(ns, name string) *v1alpha1.Job {
	return &v1alpha1.Job{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1alpha1.JobSpec{
			Application: v1alpha1.Application{
				Operators: []v1alpha1.Operator{
					{Name: "src", Kind: v1alpha1.KindSource, Params: &v1alpha1.OperatorParams{
						Rate: ptr.To[int64](500), TupleSize: ptr.To[int32](64), Keys: ptr.To[int64](16)}},
					{Name: "work", Kind: v1alpha1.KindMap, Params: &v1alpha1.OperatorParams{Work: ptr.To[int32](1)}},
					{Name: "per-key", Kind: v1alpha1.KindAggregate, Params: &v1alpha1.OperatorParams{
						WindowMillis: ptr.To[int64](200), Function: "count"}},
					{Name: "sink", Kind: v1alpha1.KindSink},
				},
				Streams: []v1alpha1.Stream{
					{From: v1alpha1.Endpoint{Operator: "src"}, To: v1alpha1.Endpoint{Operator: "work"}},
					{From: v1alpha1.Endpoint{Operator: "work"}, To: v1alpha1.Endpoint{Operator: "per-key"}},
					{From: v1alpha1.Endpoint{Operator: "per-key"}, To: v1alpha1.Endpoint{Operator: "sink"}},
				},
			},
			Fusion: v1alpha1.Fusion{Mode: v1alpha1.FusionPerOperator},
			// Stated in full: a Go client always sends the three booleans,
			// so the CRD's defaults (true/false/true) never apply to it.
			PE: v1alpha1.PETemplate{RestartPolicy: &v1alpha1.PERestartPolicy{RestartFailed: true, RestartDeleted: true}},
		},
	}
}

// sinkPE is the index of the sink's PE in pipelineJob; mapPE the map's.
const (
	mapPE  = 1
	sinkPE = 3
)

// waitFor polls cond every 500ms until it holds or timeout passes; the
// failure names what was last seen.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func(ctx context.Context) (bool, string)) {
	t.Helper()
	var last string
	err := wait.PollUntilContextTimeout(context.Background(), 500*time.Millisecond, timeout, true,
		func(ctx context.Context) (bool, error) {
			ok, s := cond(ctx)
			last = s
			return ok, nil
		})
	if err != nil {
		t.Fatalf("%s: not within %s; last seen: %s", what, timeout, last)
	}
}

func getJob(ctx context.Context, c *kindconfig.Cluster, ns, name string) (*v1alpha1.Job, error) {
	var j v1alpha1.Job
	err := c.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &j)
	return &j, err
}

func jobState(j *v1alpha1.Job) string {
	var conds []string
	for _, c := range j.Status.Conditions {
		conds = append(conds, fmt.Sprintf("%s=%s(%s: %s)", c.Type, c.Status, c.Reason, c.Message))
	}
	return fmt.Sprintf("phase=%q pes=%d connected=%d conditions=%v", j.Status.Phase, j.Status.PEs, j.Status.ConnectedPEs, conds)
}

// waitSubmitted waits until the Job's Submitted condition is True.
func waitSubmitted(t *testing.T, c *kindconfig.Cluster, ns, name string, timeout time.Duration) *v1alpha1.Job {
	t.Helper()
	var job *v1alpha1.Job
	waitFor(t, timeout, "Job "+name+" Submitted", func(ctx context.Context) (bool, string) {
		j, err := getJob(ctx, c, ns, name)
		if err != nil {
			return false, err.Error()
		}
		job = j
		return meta.IsStatusConditionTrue(j.Status.Conditions, v1alpha1.ConditionSubmitted) &&
			j.Status.Phase == v1alpha1.JobSubmitted, jobState(j)
	})
	return job
}

func getPE(ctx context.Context, c *kindconfig.Cluster, ns, job string, index int32) (*v1alpha1.ProcessingElement, error) {
	var pe v1alpha1.ProcessingElement
	err := c.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: app.PEName(job, index)}, &pe)
	return &pe, err
}

// pePods lists the live (not terminating) pods of one PE.
func pePods(ctx context.Context, c *kindconfig.Cluster, ns, pe string) ([]corev1.Pod, error) {
	var pods corev1.PodList
	if err := c.Client.List(ctx, &pods, client.InNamespace(ns), client.MatchingLabels{v1alpha1.LabelPE: pe}); err != nil {
		return nil, err
	}
	var out []corev1.Pod
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil {
			out = append(out, p)
		}
	}
	return out, nil
}

// sinkCount reads the sink's received-tuple counter from the sink PE's
// current pod.
func sinkCount(ctx context.Context, c *kindconfig.Cluster, ns, job string) (float64, error) {
	pe, err := getPE(ctx, c, ns, job, sinkPE)
	if err != nil {
		return 0, err
	}
	if pe.Status.PodName == "" {
		return 0, fmt.Errorf("sink PE has no pod")
	}
	return c.PECounter(ctx, ns, pe.Status.PodName, sinkMetric, `operator="sink"`)
}

// waitSinkGrows waits until the sink has counted more than from tuples.
func waitSinkGrows(t *testing.T, c *kindconfig.Cluster, ns, job string, from float64, timeout time.Duration) float64 {
	t.Helper()
	var n float64
	waitFor(t, timeout, fmt.Sprintf("sink of %s counting more than %.0f tuples", job, from), func(ctx context.Context) (bool, string) {
		v, err := sinkCount(ctx, c, ns, job)
		if err != nil {
			return false, err.Error()
		}
		n = v
		return v > from, fmt.Sprintf("%.0f tuples", v)
	})
	return n
}

// leftovers lists what is in a namespace besides its root CA ConfigMap:
// Jobs, PEs, HostPools, pods, ConfigMaps, Services.
func leftovers(ctx context.Context, c *kindconfig.Cluster, ns string) ([]string, error) {
	var out []string
	lists := []struct {
		kind string
		list client.ObjectList
	}{
		{"Job", &v1alpha1.JobList{}}, {"ProcessingElement", &v1alpha1.ProcessingElementList{}},
		{"HostPool", &v1alpha1.HostPoolList{}}, {"Pod", &corev1.PodList{}},
		{"ConfigMap", &corev1.ConfigMapList{}}, {"Service", &corev1.ServiceList{}},
	}
	for _, l := range lists {
		if err := c.Client.List(ctx, l.list, client.InNamespace(ns)); err != nil {
			return nil, err
		}
		items, err := meta.ExtractList(l.list)
		if err != nil {
			return nil, err
		}
		for _, it := range items {
			o := it.(client.Object)
			if l.kind == "ConfigMap" && o.GetName() == "kube-root-ca.crt" {
				continue
			}
			out = append(out, l.kind+"/"+o.GetName())
		}
	}
	return out, nil
}

// dump logs the state of a namespace and the operator's log tail when a
// test failed.
func dump(t *testing.T, c *kindconfig.Cluster, ns string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var jobs v1alpha1.JobList
	if c.Client.List(ctx, &jobs, client.InNamespace(ns)) == nil {
		for _, j := range jobs.Items {
			t.Logf("dump: Job %s: %s", j.Name, jobState(&j))
		}
	}
	var pes v1alpha1.ProcessingElementList
	if c.Client.List(ctx, &pes, client.InNamespace(ns)) == nil {
		for _, p := range pes.Items {
			t.Logf("dump: PE %s launch=%d status=%+v", p.Name, p.Spec.LaunchCount, p.Status)
		}
	}
	var pods corev1.PodList
	if c.Client.List(ctx, &pods, client.InNamespace(ns)) == nil {
		for _, p := range pods.Items {
			t.Logf("dump: pod %s node=%s phase=%s ready=%v deleting=%v", p.Name, p.Spec.NodeName, p.Status.Phase,
				kindconfig.PodReady(&p), p.DeletionTimestamp != nil)
		}
	}
	if op, err := c.OperatorPod(ctx); err == nil {
		b, err := c.Kube.CoreV1().Pods(op.Namespace).GetLogs(op.Name, &corev1.PodLogOptions{TailLines: ptr.To[int64](40)}).DoRaw(ctx)
		if err == nil {
			t.Logf("dump: operator log tail:\n%s", strings.TrimSpace(string(b)))
		}
	}
}
