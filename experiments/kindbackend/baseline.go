package kindbackend

import (
	"context"
	"fmt"
	"slices"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"sluice.dev/sluice/experiments/metrics"
	"sluice.dev/sluice/experiments/results"
	"sluice.dev/sluice/experiments/spec"
	"sluice.dev/sluice/kindconfig"
	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/app"
	"sluice.dev/sluice/platform/render"
)

// baselineJob is the name of the self-contained application whose PE pod
// the baseline runs without the platform.
const baselineJob = "bl"

// selfContained is a one-PE application (a source fused with its sink)
// with the trial's PE template: its pod needs no other PE to be ready, so
// it is what plain Kubernetes can start without any coordination.
func selfContained(ns string, tmpl v1alpha1.PETemplate) (*v1alpha1.Job, *app.Plan, error) {
	job := &v1alpha1.Job{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: baselineJob},
		Spec: v1alpha1.JobSpec{
			Application: v1alpha1.Application{
				Operators: []v1alpha1.Operator{
					{Name: "src", Kind: v1alpha1.KindSource, Params: &v1alpha1.OperatorParams{
						Rate: ptr.To[int64](200), TupleSize: ptr.To[int32](64), Keys: ptr.To[int64](16)}},
					{Name: "sink", Kind: v1alpha1.KindSink},
				},
				Streams: []v1alpha1.Stream{{From: v1alpha1.Endpoint{Operator: "src"}, To: v1alpha1.Endpoint{Operator: "sink"}}},
			},
			Fusion: v1alpha1.Fusion{Mode: v1alpha1.FusionManual, Groups: []v1alpha1.FusionGroup{{Operators: []string{"src", "sink"}}}},
			PE:     tmpl,
		},
	}
	plan, errs := app.Build(ns, job.Name, &job.Spec)
	if len(errs) > 0 {
		return nil, nil, errs.ToAggregate()
	}
	if len(plan.PEs) != 1 {
		return nil, nil, fmt.Errorf("self-contained application fused into %d PEs", len(plan.PEs))
	}
	return job, plan, nil
}

// orphan drops owner references: no Job or PE object exists in a baseline.
func orphan(o client.Object) client.Object {
	o.SetOwnerReferences(nil)
	return o
}

func (b *Backend) runBaseline(ctx context.Context, t spec.Trial, ns string, stopped map[string]bool) ([]results.Row, error) {
	sc := t.Scenario
	job, plan, err := selfContained(ns, sc.Job.Spec.PE)
	if err != nil {
		return nil, err
	}
	// The ConfigMaps exist before timing starts (the platform creates its
	// own as part of submission).
	for _, o := range []client.Object{render.PortTable(job, plan), render.PEConfig(job, &plan.PEs[0])} {
		if err := b.Cluster.Client.Create(ctx, orphan(o)); err != nil {
			return nil, fmt.Errorf("creating %s: %w", o.GetName(), err)
		}
	}
	pe := render.ProcessingElement(job, &plan.PEs[0])
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	rec, err := startRecorder(wctx, b.wc, b.clk, ns, job.Name)
	if err != nil {
		return nil, err
	}
	if len(sc.Faults) == 0 {
		return b.barePods(ctx, sc, rec, pe, stopWatch)
	}
	return b.deploymentRecovery(ctx, sc, rec, pe, stopped, stopWatch)
}

// barePods creates as many PE pods as the trial's Job has PEs, directly,
// and measures first pod ADDED -> last pod Ready (the baseline's
// "submission"), plus the per-pod phases by the shared definitions.
func (b *Backend) barePods(ctx context.Context, sc spec.Scenario, rec *recorder, pe *v1alpha1.ProcessingElement,
	stopWatch func()) ([]results.Row, error) {
	n := sc.PEs
	for i := 1; i <= n; i++ {
		p := pe.DeepCopy()
		p.Spec.LaunchCount = int32(i)
		pod := render.Pod(p, nil, kindconfig.PEImage)
		if err := b.Cluster.Client.Create(ctx, orphan(pod)); err != nil {
			return nil, fmt.Errorf("creating pod %d: %w", i, err)
		}
	}
	for ctx.Err() == nil {
		ready := 0
		for _, p := range rec.livePods() {
			if kindconfig.PodReady(p) {
				ready++
			}
		}
		if ready >= n {
			break
		}
		if p := completedPod(rec.livePods(), baselineJob); p != nil {
			// restartPolicy Never: an ended pod never becomes Ready.
			return nil, fmt.Errorf("bare pod %s ended Succeeded before all %d were Ready (%s)", p.Name, n, lastTermination(p))
		}
		select {
		case <-ctx.Done():
		case <-rec.changed:
		case <-b.clk.After(250 * time.Millisecond):
		}
	}
	stopWatch()
	events := rec.snapshot()
	tr := &metrics.Trace{Namespace: pe.Namespace, Job: baselineJob, Events: events, End: b.clk.Now()}
	var rows []results.Row
	for _, m := range sc.Metrics {
		if m == metrics.Submission {
			if d, ok := allReady(events, n); ok {
				rows = append(rows, results.Row{Metric: m, Value: d.Seconds(), Unit: metrics.Seconds})
			}
			continue
		}
		r, err := tr.Compute([]string{m})
		if err != nil {
			return nil, err
		}
		rows = append(rows, r...)
	}
	return rows, nil
}

// allReady: first pod ADDED -> the watch event that made the n-th pod Ready.
func allReady(events []metrics.Event, n int) (time.Duration, bool) {
	var first time.Time
	ready := map[string]bool{}
	for _, e := range events {
		pod, ok := e.Object.(*corev1.Pod)
		if !ok || e.Type == watch.Deleted {
			continue
		}
		if first.IsZero() && e.Type == watch.Added {
			first = e.Time
		}
		if kindconfig.PodReady(pod) && !ready[pod.Name] {
			ready[pod.Name] = true
			if len(ready) == n && !first.IsZero() {
				return e.Time.Sub(first), true
			}
		}
	}
	return 0, false
}

// deploymentRecovery runs the same PE pod in a one-replica Deployment,
// applies the trial's pod faults to its pod and measures, with the
// definitions of the PE metrics: fault -> the pod seen not ready
// (fault_detected), -> a live pod of the Deployment seen Ready again
// (recovery_connected), -> its sink counting tuples (recovery_flowing).
func (b *Backend) deploymentRecovery(ctx context.Context, sc spec.Scenario, rec *recorder, pe *v1alpha1.ProcessingElement,
	stopped map[string]bool, stopWatch func()) ([]results.Row, error) {
	p := pe.DeepCopy()
	pod := render.Pod(p, nil, kindconfig.PEImage)
	pod.Spec.RestartPolicy = corev1.RestartPolicyAlways
	labels := map[string]string{v1alpha1.LabelJob: baselineJob, v1alpha1.LabelRole: v1alpha1.RolePEPod, v1alpha1.LabelPE: pe.Name}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: pe.Namespace, Name: baselineJob},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: pod.Spec},
		},
	}
	if err := b.Cluster.Client.Create(ctx, dep); err != nil {
		return nil, fmt.Errorf("creating Deployment: %w", err)
	}
	readyPod := func() *corev1.Pod {
		for _, p := range rec.livePods() {
			if p.DeletionTimestamp == nil && kindconfig.PodReady(p) {
				return p
			}
		}
		return nil
	}
	for readyPod() == nil {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("baseline Deployment pod not ready: %w", ctx.Err())
		case <-rec.changed:
		case <-b.clk.After(250 * time.Millisecond):
		}
	}
	anchor := b.clk.Now()
	faults := slices.Clone(sc.Faults)
	slices.SortStableFunc(faults, func(a, c spec.ResolvedFault) int { return int(a.At - c.At) })
	type hit struct {
		at   time.Time
		pod  string
		kind spec.Action
	}
	var hits []hit
	last := time.Duration(0)
	for _, f := range faults {
		last = max(last, f.At)
		if err := sleepUntil(ctx, b.clk, anchor.Add(f.At)); err != nil {
			return nil, err
		}
		switch f.Action {
		case spec.DeletePod, spec.KillContainer, spec.StopNode:
			target := readyPod()
			if target == nil {
				return nil, fmt.Errorf("no ready pod for fault %s", f.Action)
			}
			at, err := b.hitPod(ctx, f.Action, f.Node, target, stopped)
			if err != nil {
				return nil, err
			}
			b.logf("baseline fault %s on %s", f.Action, target.Name)
			hits = append(hits, hit{at, target.Name, f.Action})
		case spec.StartNode:
			node, err := b.nodeOf(f.Node, nil)
			if err != nil {
				return nil, err
			}
			if _, err := b.startNode(ctx, node, stopped); err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("fault %s has no baseline on kind", f.Action)
		}
	}
	// Follow the last hit until a pod is ready again and its sink counts.
	end := anchor.Add(last + sc.Observe)
	var flowingAt time.Time
	for b.clk.Now().Before(end) && ctx.Err() == nil && len(hits) > 0 {
		h := hits[len(hits)-1]
		if _, rp, ok := recovered(rec.snapshot(), h.at, h.pod, h.kind); ok {
			sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			v, err := b.Cluster.PECounter(sctx, pe.Namespace, rp, "sluice_pe_operator_tuples_in_total", `operator="sink"`)
			cancel()
			if err == nil && v > 0 {
				flowingAt = b.clk.Now()
				break
			}
		}
		select {
		case <-ctx.Done():
		case <-b.clk.After(250 * time.Millisecond):
		}
	}
	stopWatch()
	events := rec.snapshot()
	var rows []results.Row
	subject := pe.Name
	for _, h := range hits {
		for _, m := range sc.Metrics {
			var d time.Duration
			ok := false
			switch m {
			case metrics.FaultDetected:
				d, ok = detected(events, h.at, h.pod)
			case metrics.RecoveryConnected, metrics.RecoveryPodReady:
				// A bare pod has no operator: Ready is both.
				var t time.Time
				t, _, ok = recovered(events, h.at, h.pod, h.kind)
				d = t.Sub(h.at)
			case metrics.RecoveryFlowing:
				ok = !flowingAt.IsZero() && h == hits[len(hits)-1]
				d = flowingAt.Sub(h.at)
			}
			if ok {
				info, _ := metrics.Lookup(m)
				rows = append(rows, results.Row{Metric: m, Subject: subject, Value: d.Seconds(), Unit: info.Unit})
			}
		}
	}
	return rows, nil
}

// detected: the fault's pod seen deleted, terminating or not ready.
func detected(events []metrics.Event, at time.Time, name string) (time.Duration, bool) {
	for _, e := range events {
		pod, ok := e.Object.(*corev1.Pod)
		if !ok || pod.Name != name || !e.Time.After(at) {
			continue
		}
		if e.Type == watch.Deleted || pod.DeletionTimestamp != nil || !kindconfig.PodReady(pod) {
			return e.Time.Sub(at), true
		}
	}
	return 0, false
}

// recovered: after the fault was detected, the first event of a live pod
// Ready (the same pod restarted in place after killContainer, else another).
func recovered(events []metrics.Event, at time.Time, name string, kind spec.Action) (time.Time, string, bool) {
	d, ok := detected(events, at, name)
	if !ok {
		return time.Time{}, "", false
	}
	from := at.Add(d)
	for _, e := range events {
		pod, ok := e.Object.(*corev1.Pod)
		if !ok || e.Time.Before(from) || e.Type == watch.Deleted || pod.DeletionTimestamp != nil || !kindconfig.PodReady(pod) {
			continue
		}
		if pod.Name == name && kind != spec.KillContainer {
			continue
		}
		return e.Time, pod.Name, true
	}
	return time.Time{}, "", false
}
