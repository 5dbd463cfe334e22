package kindbackend

import (
	"math"
	"os"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/yaml"

	"sluice.dev/sluice/experiments/metrics"
	"sluice.dev/sluice/experiments/spec"
	"sluice.dev/sluice/platform/api/v1alpha1"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func at(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }

func pod(name string, ready, deleting bool) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns"}}
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: st}}
	if deleting {
		p.DeletionTimestamp = &metav1.Time{Time: t0}
	}
	return p
}

func ev(s float64, typ watch.EventType, p *corev1.Pod) metrics.Event {
	return metrics.Event{Time: at(s), Type: typ, Object: p}
}

func TestAllReady(t *testing.T) {
	events := []metrics.Event{
		ev(1, watch.Added, pod("a", false, false)),
		ev(1.5, watch.Added, pod("b", false, false)),
		ev(3, watch.Modified, pod("a", true, false)),
		ev(3.5, watch.Modified, pod("a", true, false)),
		ev(4, watch.Modified, pod("b", true, false)),
	}
	if d, ok := allReady(events, 2); !ok || d != 3*time.Second {
		t.Errorf("allReady(2) = %v %v, want 3s", d, ok)
	}
	if _, ok := allReady(events, 3); ok {
		t.Error("three pods counted ready out of two")
	}
}

func TestBaselineRecovery(t *testing.T) {
	events := []metrics.Event{
		ev(0, watch.Added, pod("d-1", true, false)),
		ev(10.2, watch.Modified, pod("d-1", true, true)),
		ev(10.3, watch.Added, pod("d-2", false, false)),
		// The terminating pod is still Ready for a while: not a recovery.
		ev(10.5, watch.Modified, pod("d-1", true, true)),
		ev(12.0, watch.Modified, pod("d-2", true, false)),
	}
	if d, ok := detected(events, at(10), "d-1"); !ok || d != 200*time.Millisecond {
		t.Errorf("detected = %v %v, want 200ms", d, ok)
	}
	tm, p, ok := recovered(events, at(10), "d-1", spec.DeletePod)
	if !ok || p != "d-2" || !tm.Equal(at(12)) {
		t.Errorf("recovered = %v %s %v, want d-2 at 12s", tm, p, ok)
	}
	// A killed container restarts in the same pod.
	kill := []metrics.Event{
		ev(0, watch.Added, pod("d-1", true, false)),
		ev(11, watch.Modified, pod("d-1", false, false)),
		ev(13, watch.Modified, pod("d-1", true, false)),
	}
	tm, p, ok = recovered(kill, at(10), "d-1", spec.KillContainer)
	if !ok || p != "d-1" || !tm.Equal(at(13)) {
		t.Errorf("recovered after kill = %v %s %v, want d-1 at 13s", tm, p, ok)
	}
	if _, _, ok := recovered(kill[:2], at(10), "d-1", spec.KillContainer); ok {
		t.Error("recovered without a Ready event after the fault")
	}
}

func TestSamplerCountsAndLatency(t *testing.T) {
	s := newSampler(&Backend{}, "ns", nil, nil)
	scrape := func(n, b1, b2, inf float64) []byte {
		return []byte("sluice_pe_operator_tuples_in_total{operator=\"sink\"} " + f(n) + "\n" +
			"sluice_pe_sink_latency_seconds_bucket{operator=\"sink\",le=\"0.001\"} " + f(b1) + "\n" +
			"sluice_pe_sink_latency_seconds_bucket{operator=\"sink\",le=\"0.002\"} " + f(b2) + "\n" +
			"sluice_pe_sink_latency_seconds_bucket{operator=\"sink\",le=\"+Inf\"} " + f(inf) + "\n")
	}
	s.add(at(1), "p/sink", scrape(10, 5, 9, 10), "sink")
	s.add(at(2), "p/sink", scrape(30, 15, 27, 30), "sink")
	// Increments: 10 in (0,1ms], 8 in (1ms,2ms], 2 above 2ms. Each bucket's
	// tuples are spread evenly over its range; above the last bound they
	// sit at that bound.
	weight := map[[2]float64]float64{} // bucket range -> weight
	sum := map[[2]float64]float64{}
	for _, x := range s.samples() {
		if x.Name != metrics.TupleLatency {
			continue
		}
		var k [2]float64
		switch {
		case x.Value > 0 && x.Value < 0.001:
			k = [2]float64{0, 0.001}
		case x.Value > 0.001 && x.Value < 0.002:
			k = [2]float64{0.001, 0.002}
		case x.Value == 0.002:
			k = [2]float64{0.002, 0.002}
		default:
			t.Fatalf("latency sample %v outside every bucket", x.Value)
		}
		weight[k] += x.Weight
		sum[k] += x.Value * x.Weight
	}
	for k, w := range map[[2]float64]float64{{0, 0.001}: 10, {0.001, 0.002}: 8, {0.002, 0.002}: 2} {
		if math.Abs(weight[k]-w) > 1e-9 {
			t.Errorf("bucket %v: weight %v, want %v", k, weight[k], w)
		}
		if mean := sum[k] / weight[k]; math.Abs(mean-(k[0]+k[1])/2) > 1e-12 {
			t.Errorf("bucket %v: mean %v, want its middle", k, mean)
		}
	}
	// Through the shared quantile: the 10th of 20 tuples is near the top
	// of the first bucket (1ms by interpolation), not at its bound.
	tr := &metrics.Trace{Actions: []metrics.Action{{Time: at(0.5), Kind: metrics.ActionObserve, PE: -1}},
		Samples: s.samples(), End: at(3)}
	rows, err := tr.Compute([]string{metrics.TupleLatencyP50, metrics.TupleLatencyP99})
	if err != nil || len(rows) != 2 {
		t.Fatalf("Compute: %v %v", rows, err)
	}
	if p50 := rows[0].Value; p50 < 0.9 || p50 >= 1 {
		t.Errorf("p50 %v ms, want just under 1 ms", p50)
	}
	if p99 := rows[1].Value; p99 != 2 {
		t.Errorf("p99 %v ms, want 2 ms (the last finite bound)", p99)
	}
	if !s.grewAfter(at(1.5)) || s.grewAfter(at(2)) {
		t.Error("grewAfter: want growth after 1.5s and none after 2s")
	}
}

func f(v float64) string { return metricsFormat(v) }

func TestSinkOperators(t *testing.T) {
	job, _, err := selfContained("ns", v1alpha1.PETemplate{})
	if err != nil {
		t.Fatal(err)
	}
	got := sinkOperators(job)
	if len(got) != 1 || len(got["bl-pe-0"]) != 1 || got["bl-pe-0"][0] != "sink" {
		t.Errorf("sinkOperators = %v", got)
	}
}

func metricsFormat(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }

// Sources are sampled for replay_duration only inside consistent regions.
func TestRegionSources(t *testing.T) {
	data, err := os.ReadFile("../../workloads/region-1k-filesystem.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var job v1alpha1.Job
	if err := yaml.UnmarshalStrict(data, &job); err != nil {
		t.Fatal(err)
	}
	got := regionSources(&job)
	if len(got) != 1 || len(got["region-1k-filesystem-pe-0"]) != 1 || got["region-1k-filesystem-pe-0"][0] != "src" {
		t.Errorf("regionSources(region pipeline) = %v", got)
	}
	plain, _, err := selfContained("ns", v1alpha1.PETemplate{})
	if err != nil {
		t.Fatal(err)
	}
	if got := regionSources(plain); len(got) != 0 {
		t.Errorf("regionSources(no region) = %v", got)
	}
}

// A hostPath checkpoint store confines the trial to one worker; S3 and a
// claim do not.
func TestHostPathStore(t *testing.T) {
	load := func(name string) *v1alpha1.Job {
		data, err := os.ReadFile("../../workloads/" + name)
		if err != nil {
			t.Fatal(err)
		}
		var job v1alpha1.Job
		if err := yaml.UnmarshalStrict(data, &job); err != nil {
			t.Fatal(err)
		}
		return &job
	}
	fs, s3 := load("region-64k-filesystem.yaml"), load("region-64k-s3.yaml")
	if !hostPathStore(fs) || hostPathStore(s3) {
		t.Fatalf("hostPathStore: filesystem %v, s3 %v", hostPathStore(fs), hostPathStore(s3))
	}
	fs.Spec.CheckpointStore.ClaimName = "ckpt"
	if hostPathStore(fs) {
		t.Fatal("a filesystem store on a claim counted as hostPath")
	}
	if got := surplusWorkers([]string{"w", "w2", "w3"}, 1); len(got) != 2 || got[0] != "w2" {
		t.Fatalf("surplus workers for one: %v", got)
	}
}
