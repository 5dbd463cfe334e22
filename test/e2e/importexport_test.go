//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"sluice.dev/sluice/kindconfig"
	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/app"
)

const ieStream = "e2e-ticks"

// exportJob is src -> export (stream e2e-ticks), one PE each; the source
// never ends.
func exportJob(ns string) *v1alpha1.Job {
	return &v1alpha1.Job{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "exp"},
		Spec: v1alpha1.JobSpec{
			Application: v1alpha1.Application{
				Operators: []v1alpha1.Operator{
					{Name: "src", Kind: v1alpha1.KindSource, Params: &v1alpha1.OperatorParams{
						Rate: ptr.To[int64](300), TupleSize: ptr.To[int32](32), Keys: ptr.To[int64](8)}},
					{Name: "out", Kind: v1alpha1.KindExport, Params: &v1alpha1.OperatorParams{StreamName: ieStream}},
				},
				Streams: []v1alpha1.Stream{{From: v1alpha1.Endpoint{Operator: "src"}, To: v1alpha1.Endpoint{Operator: "out"}}},
			},
			Fusion: v1alpha1.Fusion{Mode: v1alpha1.FusionPerOperator},
			PE:     v1alpha1.PETemplate{RestartPolicy: &v1alpha1.PERestartPolicy{RestartFailed: true, RestartDeleted: true}},
		},
	}
}

// importJob is import (stream e2e-ticks) -> sink, one PE each.
func importJob(ns string) *v1alpha1.Job {
	return &v1alpha1.Job{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "imp"},
		Spec: v1alpha1.JobSpec{
			Application: v1alpha1.Application{
				Operators: []v1alpha1.Operator{
					{Name: "in", Kind: v1alpha1.KindImport, Params: &v1alpha1.OperatorParams{StreamName: ieStream}},
					{Name: "sink", Kind: v1alpha1.KindSink},
				},
				Streams: []v1alpha1.Stream{{From: v1alpha1.Endpoint{Operator: "in"}, To: v1alpha1.Endpoint{Operator: "sink"}}},
			},
			Fusion: v1alpha1.Fusion{Mode: v1alpha1.FusionPerOperator},
			PE:     v1alpha1.PETemplate{RestartPolicy: &v1alpha1.PERestartPolicy{RestartFailed: true, RestartDeleted: true}},
		},
	}
}

// importMetric sums an import metric of operator "in" on the importing PE's
// pod; a series not written yet counts as 0.
func importMetric(ctx context.Context, c *kindconfig.Cluster, ns, pod, metric string) (float64, error) {
	b, err := c.ScrapePod(ctx, ns, pod, int(v1alpha1.PEHealthPort), "/metrics")
	if err != nil {
		return 0, err
	}
	v, err := kindconfig.SumMetric(b, metric, `operator="in"`)
	if err != nil && strings.Contains(err.Error(), "no sample") {
		return 0, nil
	}
	return v, err
}

// Two Jobs connected by an Export and an Import: deleting the exporting
// Job and creating it again, the importer (same pod, never restarted)
// reconnects by itself, receives again, and counts the exporter's restart.
func TestImportReconnectsAfterExporterRecreated(t *testing.T) {
	c := cluster(t)
	ctx := context.Background()
	ns := namespace(t, c, "e2e-ie")
	if err := c.Client.Create(ctx, importJob(ns)); err != nil {
		t.Fatalf("creating importing Job: %v", err)
	}
	if err := c.Client.Create(ctx, exportJob(ns)); err != nil {
		t.Fatalf("creating exporting Job: %v", err)
	}
	waitSubmitted(t, c, ns, "imp", submitTimeout)
	waitSubmitted(t, c, ns, "exp", submitTimeout)
	in, err := getPE(ctx, c, ns, "imp", 0)
	if err != nil {
		t.Fatal(err)
	}
	pod := in.Status.PodName
	metric := func(name string) func(ctx context.Context) (float64, error) {
		return func(ctx context.Context) (float64, error) {
			return importMetric(ctx, c, ns, pod, "sluice_pe_import_"+name)
		}
	}
	tuples, connects, restarts, missing := metric("tuples_total"), metric("connects_total"), metric("origin_restarts_total"), metric("missing_total")
	var first float64
	waitFor(t, 2*time.Minute, "the import receiving", func(ctx context.Context) (bool, string) {
		v, err := tuples(ctx)
		if err != nil {
			return false, err.Error()
		}
		first = v
		return v > 0, fmt.Sprintf("%.0f tuples", v)
	})
	sinkBefore := waitSinkGrowsAt(t, c, ns, "imp", 1, 0, time.Minute)
	conn1, _ := connects(ctx)
	rs1, _ := restarts(ctx)

	// Delete the exporting Job and wait until it is gone with its Export.
	if err := c.Client.Delete(ctx, exportJob(ns), client.PropagationPolicy(metav1.DeletePropagationForeground)); err != nil {
		t.Fatalf("deleting the exporting Job: %v", err)
	}
	waitFor(t, 2*time.Minute, "the exporting Job, its PEs and its Export gone", func(ctx context.Context) (bool, string) {
		var j v1alpha1.Job
		jobErr := c.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "exp"}, &j)
		var ex v1alpha1.Export
		exErr := c.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: app.ExportResourceName("exp", "out")}, &ex)
		var pods corev1.PodList
		_ = c.Client.List(ctx, &pods, client.InNamespace(ns), client.MatchingLabels{v1alpha1.LabelJob: "exp"})
		return apierrors.IsNotFound(jobErr) && apierrors.IsNotFound(exErr) && len(pods.Items) == 0,
			fmt.Sprintf("job: %v, export: %v, %d pods", jobErr, exErr, len(pods.Items))
	})
	// Nothing arrives while the exporter is away.
	gone1, err := tuples(ctx)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	gone2, err := tuples(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if gone2 != gone1 {
		t.Fatalf("import received %.0f tuples with no exporter", gone2-gone1)
	}

	// Re-create it: the importer reconnects without a restart.
	if err := c.Client.Create(ctx, exportJob(ns)); err != nil {
		t.Fatalf("re-creating the exporting Job: %v", err)
	}
	waitSubmitted(t, c, ns, "exp", submitTimeout)
	var after float64
	waitFor(t, 2*time.Minute, "the import receiving from the new exporter", func(ctx context.Context) (bool, string) {
		v, err := tuples(ctx)
		if err != nil {
			return false, err.Error()
		}
		after = v
		return v > gone2, fmt.Sprintf("%.0f tuples (%.0f before)", v, gone2)
	})
	conn2, _ := connects(ctx)
	rs2, _ := restarts(ctx)
	miss, _ := missing(ctx)
	sinkAfter := waitSinkGrowsAt(t, c, ns, "imp", 1, sinkBefore, time.Minute)

	in2, err := getPE(ctx, c, ns, "imp", 0)
	if err != nil {
		t.Fatal(err)
	}
	var p corev1.Pod
	if err := c.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: pod}, &p); err != nil {
		t.Fatalf("the importing pod %s: %v", pod, err)
	}
	restartsOfContainer := int32(-1)
	if len(p.Status.ContainerStatuses) > 0 {
		restartsOfContainer = p.Status.ContainerStatuses[0].RestartCount
	}
	// missing: sequence numbers of the new exporter the importer never
	// got (what it sent before the importer reconnected).
	t.Logf("import: %.0f tuples before, %.0f when the exporter went, %.0f after; connects %.0f -> %.0f; exporter restarts seen %.0f -> %.0f; missing %.0f; sink %.0f -> %.0f",
		first, gone2, after, conn1, conn2, rs1, rs2, miss, sinkBefore, sinkAfter)
	if in2.Status.PodName != pod || in2.Spec.LaunchCount != 1 || restartsOfContainer != 0 {
		t.Errorf("the importer was restarted: pod %s -> %s, launch count %d, container restarts %d",
			pod, in2.Status.PodName, in2.Spec.LaunchCount, restartsOfContainer)
	}
	if conn2 <= conn1 {
		t.Errorf("import connects %.0f -> %.0f: no new connection to the re-created exporter", conn1, conn2)
	}
	// The new exporter process numbers its tuples in a new epoch: the
	// importer sees the origin restart.
	if rs2 <= rs1 {
		t.Errorf("import saw %.0f -> %.0f exporter restarts; want one more", rs1, rs2)
	}
}

// waitSinkGrowsAt is waitSinkGrows for a sink at PE index pe.
func waitSinkGrowsAt(t *testing.T, c *kindconfig.Cluster, ns, job string, pe int32, from float64, timeout time.Duration) float64 {
	t.Helper()
	var n float64
	waitFor(t, timeout, fmt.Sprintf("sink of %s counting more than %.0f tuples", job, from), func(ctx context.Context) (bool, string) {
		p, err := getPE(ctx, c, ns, job, pe)
		if err != nil {
			return false, err.Error()
		}
		if p.Status.PodName == "" {
			return false, "no sink pod"
		}
		v, err := c.PECounter(ctx, ns, p.Status.PodName, sinkMetric, `operator="sink"`)
		if err != nil {
			return false, err.Error()
		}
		n = v
		return v > from, fmt.Sprintf("%.0f tuples", v)
	})
	return n
}
