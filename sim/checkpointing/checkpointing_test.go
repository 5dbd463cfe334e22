package checkpointing_test

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/app"
	"sluice.dev/sluice/platform/operator"
	"sluice.dev/sluice/platform/render"
	"sluice.dev/sluice/platform/wiring"
	"sluice.dev/sluice/sim/checkpointing"
	"sluice.dev/sluice/sim/cluster"
	"sluice.dev/sluice/sim/driver"
	"sluice.dev/sluice/sim/gc"
)

const ns = "default"

// regionJob is src -> agg -> sink in one region, a PE each. count > 0
// makes the source stop after count tuples (an idle data plane).
func regionJob(name string, keys, count int64, edit func(*v1alpha1.ConsistentRegionDef)) *v1alpha1.Job {
	j := &v1alpha1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	src := &v1alpha1.OperatorParams{Rate: ptr.To[int64](1000), Keys: ptr.To(keys)}
	if count > 0 {
		src.Count = ptr.To(count)
	}
	j.Spec.Application.Operators = []v1alpha1.Operator{
		{Name: "src", Kind: v1alpha1.KindSource, Params: src},
		{Name: "agg", Kind: v1alpha1.KindAggregate, Params: &v1alpha1.OperatorParams{WindowMillis: ptr.To[int64](3600000)}},
		{Name: "sink", Kind: v1alpha1.KindSink},
	}
	j.Spec.Application.Streams = []v1alpha1.Stream{
		{From: v1alpha1.Endpoint{Operator: "src"}, To: v1alpha1.Endpoint{Operator: "agg"}},
		{From: v1alpha1.Endpoint{Operator: "agg"}, To: v1alpha1.Endpoint{Operator: "sink"}},
	}
	def := v1alpha1.ConsistentRegionDef{Name: "main", Operators: []string{"src", "agg", "sink"},
		Period: &metav1.Duration{Duration: 5 * time.Second}}
	if edit != nil {
		edit(&def)
	}
	j.Spec.Application.ConsistentRegions = []v1alpha1.ConsistentRegionDef{def}
	j.Spec.CheckpointStore = &v1alpha1.CheckpointStore{Type: v1alpha1.StoreFilesystem, Path: "/ckpt"}
	j.Spec.Fusion.Mode = v1alpha1.FusionPerOperator
	j.Spec.PE.RestartPolicy = &v1alpha1.PERestartPolicy{RestartFailed: true, RestartDeleted: true}
	j.Spec.PE.Resources.Requests = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("250m")}
	return j
}

type sim struct {
	t   *testing.T
	c   *cluster.Cluster
	job *v1alpha1.Job
}

// start builds a 3-node cluster with the platform and the garbage
// collector (jitter 0 unless told), creates the Job and runs until its
// region is Healthy.
func start(t *testing.T, seed uint64, job *v1alpha1.Job, jitter bool) *sim {
	t.Helper()
	p := cluster.DefaultParams()
	if !jitter {
		p.Checkpointing.Jitter = 0
	}
	c, err := cluster.New(seed, cluster.Shape{Nodes: 3, CPU: "4", Memory: "8Gi", Images: []string{"sluice/pe:dev"}}, p)
	if err != nil {
		t.Fatal(err)
	}
	gc.New(c.API(), gc.DefaultParams()).Start()
	m := driver.New(c.API(), driver.Options{Name: "sluice-operator", PEImage: "sluice/pe:dev",
		QPS: operator.ClientQPS, Burst: operator.ClientBurst, Cache: operator.CacheOptions()})
	m.Build(func(d wiring.Deps) []wiring.Controller { return wiring.Controllers(d, wiring.NewCoordinators(d)) })
	m.Start()
	s := &sim{t: t, c: c, job: job}
	if err := c.Client().Create(context.Background(), job); err != nil {
		t.Fatal(err)
	}
	s.until(2*time.Minute, "region Healthy", func(cr *v1alpha1.ConsistentRegion) bool {
		return cr.Status.State == v1alpha1.RegionHealthy
	})
	return s
}

func (s *sim) region() *v1alpha1.ConsistentRegion {
	cr := &v1alpha1.ConsistentRegion{}
	key := types.NamespacedName{Namespace: ns, Name: s.job.Name + "-main"}
	if err := s.c.Client().Get(context.Background(), key, cr); err != nil {
		return nil
	}
	return cr
}

// until runs virtual time until cond holds for the region.
func (s *sim) until(limit time.Duration, what string, cond func(*v1alpha1.ConsistentRegion) bool) *v1alpha1.ConsistentRegion {
	s.t.Helper()
	e := s.c.Engine()
	if e.RunWhile(func() bool { cr := s.region(); return cr == nil || !cond(cr) }, e.Now()+limit) {
		cr := s.region()
		if cr == nil {
			s.t.Fatalf("%s: no region after %v", what, limit)
		}
		s.t.Fatalf("%s: not within %v; status %+v", what, limit, cr.Status)
	}
	return s.region()
}

func (s *sim) pe(i int32) string { return app.PEName(s.job.Name, i) }

func (s *sim) podOf(pe string) types.NamespacedName {
	s.t.Helper()
	p := &v1alpha1.ProcessingElement{}
	if err := s.c.Client().Get(context.Background(), types.NamespacedName{Namespace: ns, Name: pe}, p); err != nil {
		s.t.Fatal(err)
	}
	return types.NamespacedName{Namespace: ns, Name: p.Status.PodName}
}

func (s *sim) records(kind checkpointing.Kind, pe string) []checkpointing.Record {
	var out []checkpointing.Record
	for _, r := range s.c.Checkpointing().Records() {
		if r.Kind == kind && r.PE == pe {
			out = append(out, r)
		}
	}
	return out
}

func bytesAt(n int64, bw float64) time.Duration {
	return time.Duration(float64(n) / bw * float64(time.Second))
}

// The region of a Job submitted on the simulated cluster aligns its PEs on
// epoch 1, then checkpoints once per period, with the modelled state size.
func TestRegionCheckpointsWithThePeriod(t *testing.T) {
	const keys = 2000
	s := start(t, 1, regionJob("ck", keys, 0, nil), false)
	cr := s.region()
	if cr.Status.Epoch != 1 || cr.Status.Resets != 0 || cr.Status.LastResetDuration == nil {
		t.Fatalf("after initialisation %+v", cr.Status)
	}
	var times []time.Time
	for seq := int64(1); seq <= 4; seq++ {
		cr = s.until(30*time.Second, "checkpoint", func(cr *v1alpha1.ConsistentRegion) bool { return cr.Status.LastCompletedSeq >= seq })
		if cr.Status.LastCompletedSeq != seq {
			t.Fatalf("checkpoint %d skipped: %+v", seq, cr.Status)
		}
		times = append(times, cr.Status.LastCompletedTime.Time)
	}
	period := 5 * time.Second
	for i := 1; i < len(times); i++ {
		// The next drain starts a period after the last completion and
		// takes some milliseconds.
		if gap := times[i].Sub(times[i-1]); gap < period || gap > period+time.Second {
			t.Errorf("checkpoints %d and %d are %v apart, want a period (%v) plus the drain", i, i+1, gap, period)
		}
	}
	p := s.c.Checkpointing().Params()
	want := 3*p.OperatorBytes + keys*p.BytesPerKey
	if cr.Status.CheckpointBytes != want || cr.Status.Checkpoints != 4 || cr.Status.Resets != 0 || cr.Status.Epoch != 1 {
		t.Fatalf("status %+v, want %d checkpoint bytes", cr.Status, want)
	}
	if got := s.c.Checkpointing().StateBytesOf(ns, s.pe(1)); got != p.OperatorBytes+keys*p.BytesPerKey {
		t.Fatalf("aggregate PE state %d bytes", got)
	}
}

// drainOf runs a Job whose source has stopped (an idle data plane, so no
// backlog) until its first checkpoint and returns the aggregate PE's drain
// record, the formula's value for it and the region's drain duration.
func drainOf(t *testing.T, keys int64) (checkpointing.Record, time.Duration, time.Duration) {
	s := start(t, 7, regionJob("dr", keys, 100, nil), false)
	src, agg := s.podOf(s.pe(0)), s.podOf(s.pe(1))
	cr := s.until(30*time.Second, "first checkpoint", func(cr *v1alpha1.ConsistentRegion) bool { return cr.Status.LastCompletedSeq >= 1 })
	recs := s.records(checkpointing.Drain, s.pe(1))
	if len(recs) != 1 || recs[0].Seq != 1 {
		t.Fatalf("drain records of the aggregate %+v", recs)
	}
	p := s.c.Checkpointing().Params()
	srcBytes, aggBytes := p.OperatorBytes, p.OperatorBytes+keys*p.BytesPerKey
	// Marker: the source snapshots and forwards it over one hop; then the
	// aggregate snapshots, writes and reports.
	want := bytesAt(srcBytes, p.EncodeBandwidth) + s.c.Network().Path(src, agg).Mean() +
		bytesAt(aggBytes, p.EncodeBandwidth) +
		p.FilesystemPutLatency.D() + bytesAt(aggBytes, p.FilesystemWriteBandwidth) +
		s.c.Params().APIServer.RequestLatency
	return recs[0], want, cr.Status.LastDrainDuration.Duration
}

// Drain time follows the model's formula exactly and grows with the state.
func TestDrainTimeGrowsWithState(t *testing.T) {
	small, wantSmall, regionSmall := drainOf(t, 100)
	big, wantBig, regionBig := drainOf(t, 480000) // 30 MB
	if small.Delay != wantSmall || big.Delay != wantBig {
		t.Fatalf("drain delays %v and %v, formula %v and %v", small.Delay, big.Delay, wantSmall, wantBig)
	}
	if big.Bytes != small.Bytes+(480000-100)*cluster.DefaultParams().Checkpointing.BytesPerKey {
		t.Fatalf("checkpoint bytes %d and %d", small.Bytes, big.Bytes)
	}
	// 30 MB at 150 MB/s encode and 400 MB/s write: some 270 ms more.
	if d := big.Delay - small.Delay; d < 250*time.Millisecond || d > 300*time.Millisecond {
		t.Fatalf("30 MB more state adds %v to the drain", d)
	}
	// The region's drain (conductor to conductor) contains the PE's.
	if regionSmall < small.Delay || regionBig < big.Delay || regionBig-regionSmall < big.Delay-small.Delay-50*time.Millisecond {
		t.Fatalf("region drain durations %v and %v for PE drains %v and %v", regionSmall, regionBig, small.Delay, big.Delay)
	}
	t.Logf("aggregate PE drain: %v (%d B), %v (%d B); region drain %v, %v", small.Delay, small.Bytes, big.Delay, big.Bytes, regionSmall, regionBig)
}

// Deleting the aggregate's pod resets the region: every PE restores the
// last checkpoint, the replacement pod's new process too once it runs, and
// the reset's duration covers the pod's replacement.
func TestPodDeletionResets(t *testing.T) {
	const keys = 8000000 // 496 MB: a restore of some 6.5 s
	s := start(t, 3, regionJob("rs", keys, 0, nil), false)
	cr := s.until(30*time.Second, "two checkpoints", func(cr *v1alpha1.ConsistentRegion) bool { return cr.Status.LastCompletedSeq >= 2 })
	old := s.podOf(s.pe(1))
	if err := s.c.DeletePod(old, nil); err != nil {
		t.Fatal(err)
	}
	deleted := s.c.Clock().Now()
	epoch := cr.Status.Epoch
	cr = s.until(2*time.Minute, "reset done", func(cr *v1alpha1.ConsistentRegion) bool {
		return cr.Status.State == v1alpha1.RegionHealthy && cr.Status.Epoch > epoch
	})
	if cr.Status.Resets != 1 || cr.Status.Epoch != epoch+1 || cr.Status.RestoreSeq < 2 || cr.Status.ConsecutiveResets != 1 {
		t.Fatalf("after the reset %+v", cr.Status)
	}
	repl := s.podOf(s.pe(1))
	if repl == old {
		t.Fatalf("pod %s was not replaced", old)
	}
	var resets []checkpointing.Record
	for _, r := range s.records(checkpointing.Reset, s.pe(1)) {
		if r.Epoch == epoch+1 {
			resets = append(resets, r)
		}
	}
	if len(resets) != 1 || resets[0].Pod != repl || resets[0].Restore != cr.Status.RestoreSeq {
		t.Fatalf("aggregate resets to epoch %d: %+v (replacement %s)", epoch+1, resets, repl)
	}
	// The restore reads the state back, decodes it and reconnects to the sink.
	p := s.c.Checkpointing().Params()
	bytes := p.OperatorBytes + keys*p.BytesPerKey
	want := p.FilesystemGetLatency.D() + bytesAt(bytes, p.FilesystemReadBandwidth) + bytesAt(bytes, p.DecodeBandwidth) +
		s.c.Network().ConnectTime(repl, s.podOf(s.pe(2))) + s.c.Params().APIServer.RequestLatency
	if r := resets[0]; r.Bytes != bytes || r.Delay != want {
		t.Fatalf("reset record %+v, want %d bytes in %v", r, bytes, want)
	}
	// The reset began after the deletion and lasted at least until the
	// new process reported: it includes starting the replacement pod.
	began := cr.Status.StateSince.Add(-cr.Status.LastResetDuration.Duration)
	reported := s.c.Clock().Epoch().Add(resets[0].At)
	if began.Before(deleted) || began.Add(cr.Status.LastResetDuration.Duration).Before(reported) || cr.Status.LastResetDuration.Duration < resets[0].Delay {
		t.Fatalf("reset %v from %v; deleted at %v, replacement reported at %v", cr.Status.LastResetDuration, began, deleted, reported)
	}
	// The replacement is not ready (connected) before it restored.
	pod := &corev1.Pod{}
	if err := s.c.Client().Get(context.Background(), repl, pod); err != nil {
		t.Fatal(err)
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady && (c.Status != corev1.ConditionTrue || c.LastTransitionTime.Time.Before(reported.Truncate(time.Second))) {
			t.Fatalf("replacement ready %s at %v, restored at %v", c.Status, c.LastTransitionTime, reported)
		}
	}
	// And checkpoints go on in the new epoch.
	seq := cr.Status.LastCompletedSeq
	cr = s.until(30*time.Second, "checkpoint after the reset", func(cr *v1alpha1.ConsistentRegion) bool { return cr.Status.LastCompletedSeq > seq })
	if cr.Status.ConsecutiveResets != 0 || cr.Status.Epoch != epoch+1 {
		t.Fatalf("after a checkpoint %+v", cr.Status)
	}
	t.Logf("pod deleted at %v; reset took %v (PE restore %v)", deleted, cr.Status.LastResetDuration.Duration, resets[0].Delay)
}

// A PE that stops answering makes the drain time out into a reset that
// times out again and again until the region fails; one that answers again
// in time lets the region recover.
func TestStalledPEResetsThenFails(t *testing.T) {
	edit := func(d *v1alpha1.ConsistentRegionDef) {
		d.DrainTimeout = &metav1.Duration{Duration: 4 * time.Second}
		d.ResetTimeout = &metav1.Duration{Duration: 3 * time.Second}
		d.MaxConsecutiveResets = 3
	}
	s := start(t, 5, regionJob("st", 1000, 0, edit), false)
	s.until(30*time.Second, "one checkpoint", func(cr *v1alpha1.ConsistentRegion) bool { return cr.Status.LastCompletedSeq >= 1 })
	model := s.c.Checkpointing()
	model.Stall(ns, s.pe(1), true)
	cr := s.until(30*time.Second, "drain timeout", func(cr *v1alpha1.ConsistentRegion) bool { return cr.Status.Resets == 1 })
	if cr.Status.State != v1alpha1.RegionResetting || cr.Status.LastCompletedSeq != 1 {
		t.Fatalf("after the drain timeout %+v", cr.Status)
	}
	cr = s.until(30*time.Second, "reset timeout", func(cr *v1alpha1.ConsistentRegion) bool { return cr.Status.Resets == 2 })
	if cr.Status.State != v1alpha1.RegionResetting || cr.Status.ConsecutiveResets != 2 {
		t.Fatalf("after a reset timeout %+v", cr.Status)
	}
	// It answers again: the current reset completes, checkpoints resume.
	model.Stall(ns, s.pe(1), false)
	cr = s.until(30*time.Second, "recovered", func(cr *v1alpha1.ConsistentRegion) bool { return cr.Status.LastCompletedSeq >= 2 })
	if cr.Status.Resets != 2 || cr.Status.ConsecutiveResets != 0 {
		t.Fatalf("after recovery %+v", cr.Status)
	}
	// Stalled for good: drain timeout, then resets until the limit.
	model.Stall(ns, s.pe(1), true)
	cr = s.until(time.Minute, "failed", func(cr *v1alpha1.ConsistentRegion) bool { return cr.Status.State == v1alpha1.RegionFailed })
	if cr.Status.Resets != 5 || cr.Status.ConsecutiveResets != 3 {
		t.Fatalf("failed region %+v", cr.Status)
	}
	c := meta.FindStatusCondition(cr.Status.Conditions, "Healthy")
	if c == nil || c.Status != metav1.ConditionFalse || c.Reason != "TooManyResets" {
		t.Fatalf("condition %+v", c)
	}
	// A failed region stays failed; the model no longer acts for it.
	n := len(model.Records())
	s.c.RunFor(30 * time.Second)
	if cr = s.region(); cr.Status.State != v1alpha1.RegionFailed || len(model.Records()) != n {
		t.Fatalf("after failing: %+v, %d new records", cr.Status, len(model.Records())-n)
	}
}

// The objects the platform makes for a Job with a region (the region, the
// PEs' service account, role and binding) exist in the simulated API
// server and go with the Job.
func TestRegionObjectsCollected(t *testing.T) {
	s := start(t, 9, regionJob("gc", 10, 0, nil), false)
	ctx := context.Background()
	name := render.PEAccessName(s.job.Name)
	objs := map[client.Object]types.NamespacedName{
		&corev1.ServiceAccount{}:     {Namespace: ns, Name: name},
		&rbacv1.Role{}:               {Namespace: ns, Name: name},
		&rbacv1.RoleBinding{}:        {Namespace: ns, Name: name},
		&v1alpha1.ConsistentRegion{}: {Namespace: ns, Name: s.job.Name + "-main"},
	}
	for o, k := range objs {
		if err := s.c.Client().Get(ctx, k, o); err != nil {
			t.Fatalf("%T %s: %v", o, k, err)
		}
	}
	var pods corev1.PodList
	if err := s.c.Client().List(ctx, &pods, client.InNamespace(ns)); err != nil || len(pods.Items) != 3 {
		t.Fatalf("%d pods: %v", len(pods.Items), err)
	}
	for _, p := range pods.Items {
		if p.Spec.ServiceAccountName != name {
			t.Fatalf("pod %s runs as %q", p.Name, p.Spec.ServiceAccountName)
		}
	}
	if err := s.c.Client().Delete(ctx, &v1alpha1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: s.job.Name}}); err != nil {
		t.Fatal(err)
	}
	s.c.RunFor(2 * time.Minute)
	for o, k := range objs {
		if err := s.c.Client().Get(ctx, k, o); !apierrors.IsNotFound(err) {
			t.Errorf("%T %s after the Job's deletion: %v", o, k, err)
		}
	}
}

func (s *sim) sourceSamples(pe string) []checkpointing.Sample {
	var out []checkpointing.Sample
	for _, x := range s.c.Checkpointing().SourceSamples() {
		if x.PE == pe {
			out = append(out, x)
		}
	}
	return out
}

// After a reset the source emits again, at its rate, what it had emitted
// since the restored checkpoint: the catch-up takes as long as the source
// ran between that checkpoint's drain and the reset.
func TestReplayCatchesUp(t *testing.T) {
	s := start(t, 4, regionJob("rp", 1000, 0, nil), false)
	e := s.c.Engine()
	cr := s.until(30*time.Second, "two checkpoints", func(cr *v1alpha1.ConsistentRegion) bool {
		return cr.Status.LastCompletedSeq >= 2 && cr.Status.State == v1alpha1.RegionHealthy
	})
	seq := cr.Status.LastCompletedSeq
	// The drain of seq began at StateSince - LastDrainDuration.
	drained := cr.Status.StateSince.Add(-cr.Status.LastDrainDuration.Duration)
	e.RunUntil(e.Now() + 2*time.Second)
	if err := s.c.DeletePod(s.podOf(s.pe(1)), nil); err != nil {
		t.Fatal(err)
	}
	epoch := cr.Status.Epoch
	cr = s.until(time.Minute, "resetting", func(cr *v1alpha1.ConsistentRegion) bool { return cr.Status.State == v1alpha1.RegionResetting })
	resetAt := cr.Status.StateSince.Time
	cr = s.until(2*time.Minute, "reset done", func(cr *v1alpha1.ConsistentRegion) bool {
		return cr.Status.State == v1alpha1.RegionHealthy && cr.Status.Epoch > epoch
	})
	if cr.Status.RestoreSeq != seq {
		t.Fatalf("restored %d, want %d", cr.Status.RestoreSeq, seq)
	}
	healthy := cr.Status.StateSince.Time
	// Ran from the drain of seq (less the drain itself) to the reset.
	ran := resetAt.Sub(drained) - cr.Status.LastDrainDuration.Duration
	e.RunUntil(e.Now() + 20*time.Second)
	replays := s.records(checkpointing.Replay, s.pe(0))
	if len(replays) != 1 {
		t.Fatalf("source replays %+v, want one", replays)
	}
	// The source saw the drain and the reset a watch delay after the
	// region's writer, and Healthy likewise: allow 50 ms either side.
	if d := replays[0].Delay - ran; d < -50*time.Millisecond || d > 50*time.Millisecond {
		t.Fatalf("catch-up took %v; the source ran %v between checkpoint %d and the reset", replays[0].Delay, ran, seq)
	}
	caught := s.c.Clock().Epoch().Add(replays[0].At)
	if caught.Sub(healthy) < replays[0].Delay-50*time.Millisecond {
		t.Fatalf("caught up at %v, only %v after the region was Healthy at %v", caught, caught.Sub(healthy), healthy)
	}
	// The counter never goes down (replays count again) and grows at the
	// source's rate (1000/s) while running.
	smp := s.sourceSamples(s.pe(0))
	for i := 1; i < len(smp); i++ {
		a, b := smp[i-1], smp[i]
		if a.Pod != b.Pod {
			continue
		}
		rate := (b.Emitted - a.Emitted) / (b.At - a.At).Seconds()
		if b.Emitted < a.Emitted || (b.At > a.At && rate > 1000.001) {
			t.Fatalf("counter %v -> %v over %v", a.Emitted, b.Emitted, b.At-a.At)
		}
	}
	t.Logf("source ran %v after checkpoint %d; caught up %v after the reset's end", ran, seq, replays[0].Delay)
}

// A source faster than the region's PEs can take is held to their
// throughput: the slowest PE's CPU over regionTupleCost.
func TestSourceHeldToThroughput(t *testing.T) {
	job := regionJob("tp", 1000, 0, nil)
	job.Spec.Application.Operators[0].Params.Rate = ptr.To[int64](10_000_000)
	s := start(t, 5, job, false)
	s.c.Engine().RunUntil(s.c.Engine().Now() + 3*time.Second)
	smp := s.sourceSamples(s.pe(0))
	if len(smp) < 2 {
		t.Fatalf("samples %+v", smp)
	}
	a, b := smp[len(smp)-2], smp[len(smp)-1]
	got := (b.Emitted - a.Emitted) / (b.At - a.At).Seconds()
	// 250m CPU (the request; no limit) over regionTupleCost.
	want := 0.25 / s.c.Checkpointing().Params().RegionTupleCost.D().Seconds()
	if got < want*0.999 || got > want*1.001 {
		t.Fatalf("source emits %.0f tuples/s, want %.0f", got, want)
	}
}
