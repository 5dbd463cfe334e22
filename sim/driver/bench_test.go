package driver

import (
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"sluice.dev/sluice/platform/wiring"
)

// BenchmarkReconcileThroughput measures wall-clock reconciles per second of
// the whole loop (watch delivery, cache, queue, a cached Get and an Update
// through the API server model) with the writer reconciler, unlimited QPS.
func BenchmarkReconcileThroughput(b *testing.B) {
	v := newEnv(b, 0, 0)
	v.m = New(v.srv, Options{Name: "op", Params: v.m.o.Params, QPS: 1e9, Burst: 1 << 30})
	v.m.Add(wiring.Controller{Name: "w", For: &corev1.ConfigMap{}, Reconciler: &writer{c: v.m.Client()}, Workers: 4})
	v.m.Start()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		v.kc.Create(ctx, cm(fmt.Sprint("c", i)))
	}
	v.e.RunUntil(v.e.Now() + time.Hour)
	b.StopTimer()
	n := v.m.Stats()["w"].Reconciles
	if n < uint64(b.N) {
		b.Fatalf("%d reconciles for %d objects", n, b.N)
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "reconciles/s")
	b.ReportMetric(float64(v.e.Events())/b.Elapsed().Seconds(), "events/s")
}
