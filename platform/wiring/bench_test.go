package wiring_test

import (
	"runtime"
	"testing"
	"time"

	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/wiring/wiringtest"
)

// BenchmarkSubmit1000PEs submits a 1,000-PE Job through every reconciler
// over the fake client, with a stand-in kubelet starting the pods, and
// reports the platform's API writes per PE and CPU time per PE: cpu-ms/PE is
// the process CPU of the reconcile loop including the fake API server's
// work (JSON round trips on every call); reconciler-cpu-ms/PE subtracts the
// time spent inside the fake client, leaving the reconcilers' own cost. The
// stand-in kubelet's work is not counted.
func BenchmarkSubmit1000PEs(b *testing.B) {
	n := benchPEs
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var writes uint64
	var cpu, inClient time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		j := wiringtest.PipelineJob("default", "big", n)
		h := wiringtest.New(b, j)
		h.ClientCPU = 0
		b.StartTimer()
		start := wiringtest.ThreadCPU()
		h.Run(b, 100*n)
		cpu += wiringtest.ThreadCPU() - start
		inClient += h.ClientCPU
		b.StopTimer()
		h.Kubelet(b, "default", "big", "node-1")
		h.ClientCPU = 0
		b.StartTimer()
		start = wiringtest.ThreadCPU()
		h.Run(b, 100*n)
		cpu += wiringtest.ThreadCPU() - start
		inClient += h.ClientCPU
		writes += h.Coord.Writes()
		b.StopTimer()
		got := &v1alpha1.Job{}
		h.Get(b, "default", "big", got)
		if got.Status.Phase != v1alpha1.JobSubmitted {
			b.Fatalf("phase %q, want Submitted", got.Status.Phase)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(writes)/float64(b.N*n), "writes/PE")
	b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N*n), "cpu-ms/PE")
	b.ReportMetric(float64((cpu-inClient).Microseconds())/1000/float64(b.N*n), "reconciler-cpu-ms/PE")
}

// benchPEs is the Job size of the benchmark; 1,000 as the issue asks.
var benchPEs = 1000
