package scale

import (
	"context"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/operator"
	"sluice.dev/sluice/platform/wiring"
	"sluice.dev/sluice/platform/wiring/wiringtest"
	"sluice.dev/sluice/sim/apiserver"
	"sluice.dev/sluice/sim/cluster"
	"sluice.dev/sluice/sim/driver"
)

// submit runs one n-PE pipeline Job on a simulated cluster of nodes nodes
// until it is Submitted and returns the virtual time that took.
func submit(tb testing.TB, nodes, n int) time.Duration {
	tb.Helper()
	c, err := cluster.New(1, cluster.Shape{Nodes: nodes, CPU: "16", Memory: "64Gi", Images: []string{"sluice-pe:test"}}, cluster.DefaultParams())
	if err != nil {
		tb.Fatal(err)
	}
	m := driver.New(c.API(), driver.Options{Name: "sluice-operator", PEImage: "sluice-pe:test", Cache: operator.CacheOptions(),
		QPS: operator.ClientQPS, Burst: operator.ClientBurst})
	m.Build(func(d wiring.Deps) []wiring.Controller { return wiring.Controllers(d, wiring.NewCoordinators(d)) })
	m.Start()
	j := wiringtest.PipelineJob("default", "big", n)
	j.UID, j.Generation = "", 0
	j.Spec.PE.Resources.Requests = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")}
	j.Spec.SubmissionTimeout = nil
	// Submission, not throughput, is measured: a slow source keeps the
	// data-plane model from dominating the run.
	rate := int64(1)
	j.Spec.Application.Operators[0].Params = &v1alpha1.OperatorParams{Rate: &rate}
	ctx := context.Background()
	// Learn of Submitted from a watch, as the experiment runner does: reading
	// a 10,000-operator Job after every event would cost more than the run.
	submitted := false
	c.API().Watch(&v1alpha1.Job{}, func(ev apiserver.WatchEvent) {
		if got, ok := ev.Object.(*v1alpha1.Job); ok && got.Status.Phase == v1alpha1.JobSubmitted {
			submitted = true
		}
	})
	if err := c.Client().Create(ctx, j); err != nil {
		tb.Fatal(err)
	}
	start := c.Engine().Now()
	if c.Engine().RunWhile(func() bool { return !submitted }, 4*time.Hour) {
		var got v1alpha1.Job
		_ = c.Client().Get(ctx, client.ObjectKeyFromObject(j), &got)
		tb.Fatalf("not Submitted after 4 virtual hours: %s, %d/%d connected", got.Status.Phase, got.Status.ConnectedPEs, got.Status.PEs)
	}
	return c.Engine().Now() - start
}

// cpuTime is the process's user plus system CPU time: on a shared, loaded
// machine it tracks the simulator's work better than wall time does.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func maxRSS() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Maxrss) / (1 << 20) // KiB -> GiB
}

// benchSubmit runs one n-PE Job on nodes nodes per iteration and reports
// virtual submission time, wall and CPU seconds and the process's peak RSS.
func benchSubmit(b *testing.B, nodes, n int) {
	for i := 0; i < b.N; i++ {
		start, cpu := time.Now(), cpuTime()
		virtual := submit(b, nodes, n)
		b.ReportMetric(time.Since(start).Seconds(), "wall-s")
		b.ReportMetric((cpuTime() - cpu).Seconds(), "cpu-s")
		b.ReportMetric(virtual.Seconds(), "virtual-s")
	}
	b.ReportMetric(maxRSS(), "peak-rss-GiB")
}

// BenchmarkSubmit10kPEsOn1kNodes is the scale target: at most 60 s
// of wall time and 4 GiB.
func BenchmarkSubmit10kPEsOn1kNodes(b *testing.B) { benchSubmit(b, 1000, 10000) }

// The smaller sizes give the scaling curve (PEs and nodes grow together).
func BenchmarkSubmit1kPEsOn100Nodes(b *testing.B) { benchSubmit(b, 100, 1000) }
func BenchmarkSubmit2kPEsOn200Nodes(b *testing.B) { benchSubmit(b, 200, 2000) }
func BenchmarkSubmit5kPEsOn500Nodes(b *testing.B) { benchSubmit(b, 500, 5000) }

// TestSubmit500PEsOn100Nodes keeps the scale path in the test suite at a
// size that runs in seconds.
func TestSubmit500PEsOn100Nodes(t *testing.T) {
	if v := submit(t, 100, 500); v <= 0 {
		t.Fatalf("virtual submission time %v", v)
	}
}
