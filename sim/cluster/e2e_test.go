package cluster

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/operator"
	"sluice.dev/sluice/platform/wiring"
	"sluice.dev/sluice/platform/wiring/wiringtest"
	"sluice.dev/sluice/sim/driver"
)

// The platform's own reconcilers, driven by sim/driver on this cluster,
// submit a job: the pods they create are scheduled, started, connected by
// the data plane and reported ready, so the Job reaches Submitted and
// tuples flow. Then a PE pod crashes (restartPolicy Never): the platform
// relaunches the PE and the flow resumes.
func TestPlatformSubmitsJobOnSimulatedCluster(t *testing.T) {
	c, err := New(21, Shape{Nodes: 3, CPU: "4", Memory: "8Gi", Images: []string{"sluice/pe:dev"}}, DefaultParams())
	if err != nil {
		t.Fatal(err)
	}
	m := driver.New(c.API(), driver.Options{Name: "sluice-operator", PEImage: "sluice/pe:dev", Cache: operator.CacheOptions()})
	m.Build(func(d wiring.Deps) []wiring.Controller { return wiring.Controllers(d, wiring.NewCoordinators(d)) })
	m.Start()

	j := wiringtest.PipelineJob("default", "pipe", 4)
	j.UID, j.Generation = "", 0
	rate := int64(1000)
	j.Spec.Application.Operators[0].Params = &v1alpha1.OperatorParams{Rate: &rate}
	if j.Spec.PE.Resources.Requests == nil {
		j.Spec.PE.Resources.Requests = corev1.ResourceList{}
	}
	j.Spec.PE.Resources.Requests[corev1.ResourceCPU] = resource.MustParse("250m")
	ctx := context.Background()
	if err := c.Client().Create(ctx, j); err != nil {
		t.Fatal(err)
	}
	submitted := func() bool {
		var got v1alpha1.Job
		return c.Client().Get(ctx, client.ObjectKeyFromObject(j), &got) == nil && got.Status.Phase == v1alpha1.JobSubmitted
	}
	if c.Engine().RunWhile(func() bool { return !submitted() }, 2*time.Minute) {
		var got v1alpha1.Job
		_ = c.Client().Get(ctx, client.ObjectKeyFromObject(j), &got)
		var pods corev1.PodList
		_ = c.Client().List(ctx, &pods)
		for _, p := range pods.Items {
			t.Logf("pod %s node %q phase %s conds %+v", p.Name, p.Spec.NodeName, p.Status.Phase, p.Status.Conditions)
		}
		t.Fatalf("job not Submitted after 2 min: phase %q conditions %+v", got.Status.Phase, got.Status.Conditions)
	}
	subAt := c.Engine().Now()
	t.Logf("Job Submitted at %v", subAt)
	c.RunFor(10 * time.Second)
	now := c.Engine().Now()
	if got := c.DataPlane().Delivered(now-5*time.Second, now) / 5; got < 950 || got > 1050 {
		t.Fatalf("%.0f tuples/s reach the sink, want 1000", got)
	}

	// Crash the middle PE's pod.
	var pods corev1.PodList
	_ = c.Client().List(ctx, &pods, client.MatchingLabels{v1alpha1.LabelPE: "pipe-pe-1"})
	if len(pods.Items) != 1 {
		t.Fatalf("%d pods of pipe-pe-1", len(pods.Items))
	}
	crash := c.Engine().Now()
	if err := c.KillContainer(client.ObjectKeyFromObject(&pods.Items[0]), "", 137); err != nil {
		t.Fatal(err)
	}
	c.RunFor(time.Minute)
	var resumed time.Duration
	for _, s := range c.DataPlane().Samples() {
		if s.At > crash+10*time.Millisecond {
			resumed = s.At
			break
		}
	}
	if resumed == 0 {
		t.Fatal("flow never resumed after the PE crash")
	}
	t.Logf("flow resumed %v after the crash", resumed-crash)
	// The kubelet restarted the PE in its pod (restartFailed): same launch,
	// one restart, connected.
	var pe v1alpha1.ProcessingElement
	if err := c.Client().Get(ctx, client.ObjectKey{Namespace: j.Namespace, Name: "pipe-pe-1"}, &pe); err != nil {
		t.Fatal(err)
	}
	if pe.Spec.LaunchCount != 1 || pe.Status.Restarts != 1 || pe.Status.Connectivity != v1alpha1.ConnectivityConnected {
		t.Fatalf("after the crash: launch %d, restarts %d, %s; want an in-place restart", pe.Spec.LaunchCount, pe.Status.Restarts, pe.Status.Connectivity)
	}
	now = c.Engine().Now()
	if got := c.DataPlane().Delivered(now-5*time.Second, now) / 5; got < 950 || got > 1050 {
		t.Fatalf("%.0f tuples/s after recovery, want 1000", got)
	}
}
