package metrics

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"sluice.dev/sluice/experiments/results"
	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/app"
)

// Event is one watch event, stamped when the watcher received it.
type Event struct {
	Time   time.Time
	Type   watch.EventType
	Object client.Object
}

// Action is something the harness did to the cluster.
type Action struct {
	Time time.Time
	Kind ActionKind
	// PE is the PE index a fault acted on, or -1.
	PE int
	// Node a node fault acted on.
	Node string
}

// ActionKind names harness actions: the fault actions of experiment
// definitions plus the ones below.
type ActionKind string

const (
	// ActionObserve starts the data-plane observation window.
	ActionObserve ActionKind = "observe"
	// ActionDeleteJob is the deletion of the Job (the spec's deleteJob fault).
	ActionDeleteJob ActionKind = "deleteJob"
)

// Sample is one data-plane measurement.
type Sample struct {
	Time time.Time
	Name string
	// Subject is the operator or PE the sample is about.
	Subject string
	Value   float64
	// Weight is how many observations the sample stands for (a batch of
	// tuples with one latency); 0 means 1.
	Weight float64
}

// Data-plane sample names.
const (
	// SinkTuples is a sink's cumulative count of received tuples.
	SinkTuples = "sink_tuples"
	// TupleLatency is one tuple's source-to-sink latency, in seconds.
	TupleLatency = "tuple_latency"
	// SourceTuples is a region source's cumulative count of emitted tuples
	// (per process, replays included).
	SourceTuples = "source_tuples"
)

// Trace is everything observed in one trial.
type Trace struct {
	// Job is the workload's Job: namespace and name.
	Namespace, Job string
	Events         []Event
	Actions        []Action
	Samples        []Sample
	// End is when observation stopped.
	End time.Time
	// DataPlane says the backend measured the sinks throughout: then no
	// sink sample means no tuple arrived (throughput 0), not "unmeasured".
	DataPlane bool
}

// Compute derives the named metrics from the trace, as rows with Metric,
// Subject, Value and Unit set, in the order of names (per-object rows by
// subject). A metric whose defining event never happened yields no row:
// for example no submission row when the Job never became Submitted.
func (tr *Trace) Compute(names []string) ([]results.Row, error) {
	tr.sort()
	var rows []results.Row
	for _, n := range names {
		info, ok := Lookup(n)
		if !ok {
			return nil, fmt.Errorf("unknown metric %q", n)
		}
		add := func(subject string, v float64) {
			rows = append(rows, results.Row{Metric: n, Subject: subject, Value: v, Unit: info.Unit})
		}
		switch n {
		case Submission:
			if d, ok := tr.submission(); ok {
				add("", secs(d))
			}
		case PodCreateToSchedule, PodScheduleToRun, PodRunToWatch, PodRunToReady, PodStartup:
			for _, p := range tr.podPhases() {
				if d, ok := p.phase(n); ok {
					add(p.name, secs(d))
				}
			}
		case ChainValid, ChainPEs, ChainLaunched, ChainPodsCreated, ChainScheduled, ChainRunning, ChainReady, ChainConnected:
			if d, ok := tr.chain(n); ok {
				add("", secs(d))
			}
		case PendingPods:
			add("", float64(tr.pendingPods()))
		case Throughput:
			if v, ok := tr.throughput(); ok {
				add("", v)
			}
		case TupleLatencyP50, TupleLatencyP99:
			q := 0.5
			if n == TupleLatencyP99 {
				q = 0.99
			}
			if v, ok := tr.latencyQuantile(q); ok {
				add("", math.Round(v*1e9)/1e6) // ms, to the nanosecond
			}
		case GCJob, GCDependents:
			if d, ok := tr.gc(n == GCJob); ok {
				add("", secs(d))
			}
		case CheckpointDuration:
			for _, r := range tr.checkpoints() {
				add(r.subject, secs(r.d))
			}
		case ResetDuration:
			for _, r := range tr.resets() {
				add(r.subject, secs(r.d))
			}
		case ReplayDuration:
			for _, r := range tr.replays() {
				add(r.subject, secs(r.d))
			}
		case RecoveryPodReady:
			for _, f := range tr.faults() {
				if d, ok := tr.podReadyAgain(f); ok {
					add(app.PEName(tr.Job, int32(f.PE)), secs(d))
				}
			}
		case FaultDetected, RecoveryConnected, RecoveryFlowing:
			for _, f := range tr.faults() {
				if d, ok := tr.recovery(f, n); ok {
					add(app.PEName(tr.Job, int32(f.PE)), secs(d))
				}
			}
		}
	}
	return rows, nil
}

// secs is d in seconds as the double nearest to its exact decimal value
// (Duration.Seconds adds two parts and can miss it: 1.4359562399999999).
func secs(d time.Duration) float64 { return float64(d) / 1e9 }

func (tr *Trace) sort() {
	slices.SortStableFunc(tr.Events, func(a, b Event) int { return a.Time.Compare(b.Time) })
	slices.SortStableFunc(tr.Actions, func(a, b Action) int { return a.Time.Compare(b.Time) })
	slices.SortStableFunc(tr.Samples, func(a, b Sample) int { return a.Time.Compare(b.Time) })
}

func (tr *Trace) isJob(o client.Object) bool {
	_, ok := o.(*v1alpha1.Job)
	return ok && o.GetNamespace() == tr.Namespace && o.GetName() == tr.Job
}

// ofJob says whether an object was generated for the Job (by its label).
func (tr *Trace) ofJob(o client.Object) bool {
	return o.GetNamespace() == tr.Namespace && o.GetLabels()[v1alpha1.LabelJob] == tr.Job
}

// submission: Job ADDED received -> first Job event with Submitted=True.
func (tr *Trace) submission() (time.Duration, bool) {
	var created time.Time
	for _, e := range tr.Events {
		if !tr.isJob(e.Object) {
			continue
		}
		if e.Type == watch.Added && created.IsZero() {
			created = e.Time
		}
		job := e.Object.(*v1alpha1.Job)
		if !created.IsZero() && e.Type != watch.Deleted && meta.IsStatusConditionTrue(job.Status.Conditions, v1alpha1.ConditionSubmitted) {
			return e.Time.Sub(created), true
		}
	}
	return 0, false
}

type podTimes struct {
	name                               string
	created, scheduled, running, ready time.Time
	// started is the latest container start in the pod status when it was
	// first seen Running.
	started    time.Time
	deleted    bool
	seenCreate bool
}

// phase returns one clusterloader2 phase of the pod, if both ends were seen.
func (p *podTimes) phase(metric string) (time.Duration, bool) {
	var from, to time.Time
	switch metric {
	case PodCreateToSchedule:
		from, to = p.created, p.scheduled
	case PodScheduleToRun:
		from, to = p.scheduled, p.running
	case PodRunToWatch:
		from, to = p.started, p.running
	case PodRunToReady:
		from, to = p.running, p.ready
	case PodStartup:
		from, to = p.created, p.ready
	}
	if !p.seenCreate || from.IsZero() || to.IsZero() {
		return 0, false
	}
	return to.Sub(from), true
}

// podPhases records, for each PE pod of the Job, when the watcher first saw
// it created, scheduled, running and ready. Pods are ordered by name.
func (tr *Trace) podPhases() []*podTimes {
	byName := map[string]*podTimes{}
	for _, e := range tr.Events {
		pod, ok := e.Object.(*corev1.Pod)
		if !ok || !tr.ofJob(pod) || pod.Labels[v1alpha1.LabelRole] != v1alpha1.RolePEPod {
			continue
		}
		p := byName[pod.Name]
		if p == nil {
			p = &podTimes{name: pod.Name}
			byName[pod.Name] = p
		}
		if e.Type == watch.Deleted {
			p.deleted = true
			continue
		}
		if e.Type == watch.Added && !p.seenCreate {
			p.seenCreate, p.created = true, e.Time
		}
		if p.scheduled.IsZero() && (pod.Spec.NodeName != "" || podCondition(pod, corev1.PodScheduled)) {
			p.scheduled = e.Time
		}
		if p.running.IsZero() && pod.Status.Phase == corev1.PodRunning {
			p.running = e.Time
			for _, cs := range pod.Status.ContainerStatuses {
				if r := cs.State.Running; r != nil && r.StartedAt.Time.After(p.started) {
					p.started = r.StartedAt.Time
				}
			}
		}
		if p.ready.IsZero() && podCondition(pod, corev1.PodReady) {
			p.ready = e.Time
		}
	}
	out := make([]*podTimes, 0, len(byName))
	for _, p := range byName {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

func podCondition(pod *corev1.Pod, t corev1.PodConditionType) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == t {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// pendingPods counts PE pods that exist at the end and were never scheduled.
func (tr *Trace) pendingPods() int {
	n := 0
	for _, p := range tr.podPhases() {
		if !p.deleted && p.scheduled.IsZero() {
			n++
		}
	}
	return n
}

// window is the data-plane observation window: from the last observe action
// to the end of the trace.
func (tr *Trace) window() (time.Time, time.Time, bool) {
	var start time.Time
	for _, a := range tr.Actions {
		if a.Kind == ActionObserve {
			start = a.Time
		}
	}
	if start.IsZero() || !tr.End.After(start) {
		return start, tr.End, false
	}
	return start, tr.End, true
}

// sinkTotal is the sum over sinks of the last SinkTuples sample at or
// before t.
func (tr *Trace) sinkTotal(t time.Time) float64 {
	last := map[string]float64{}
	for _, s := range tr.Samples {
		if s.Time.After(t) {
			break
		}
		if s.Name == SinkTuples {
			last[s.Subject] = s.Value
		}
	}
	total := 0.0
	for _, v := range last {
		total += v
	}
	return total
}

// throughput is the tuples received by all sinks in the window per second.
// Without any sink sample there is no value unless the trace says the data
// plane was measured (then it is 0).
func (tr *Trace) throughput() (float64, bool) {
	start, end, ok := tr.window()
	if !ok || (!tr.DataPlane && !slices.ContainsFunc(tr.Samples, func(s Sample) bool { return s.Name == SinkTuples })) {
		return 0, false
	}
	return (tr.sinkTotal(end) - tr.sinkTotal(start)) / end.Sub(start).Seconds(), true
}

// latencyQuantile is the weighted nearest-rank quantile of the tuple
// latencies sampled in the window, in seconds: the smallest latency such
// that at least a share q of the tuples were no slower.
func (tr *Trace) latencyQuantile(q float64) (float64, bool) {
	start, end, ok := tr.window()
	if !ok {
		return 0, false
	}
	type obs struct{ v, w float64 }
	var v []obs
	total := 0.0
	for _, s := range tr.Samples {
		if s.Name == TupleLatency && !s.Time.Before(start) && !s.Time.After(end) {
			w := s.Weight
			if w == 0 {
				w = 1
			}
			v = append(v, obs{s.Value, w})
			total += w
		}
	}
	if len(v) == 0 || total <= 0 {
		return 0, false
	}
	sort.SliceStable(v, func(i, j int) bool { return v[i].v < v[j].v })
	cum := 0.0
	for _, o := range v {
		cum += o.w
		if cum >= q*total-1e-9*total {
			return o.v, true
		}
	}
	return v[len(v)-1].v, true
}

// gc measures from the Job's deletion to the Job gone (jobOnly) or to the
// Job and every object generated for it gone. Objects still present at the
// end of the trace mean no measurement.
func (tr *Trace) gc(jobOnly bool) (time.Duration, bool) {
	var deleted time.Time
	for _, a := range tr.Actions {
		if a.Kind == ActionDeleteJob {
			deleted = a.Time
			break
		}
	}
	if deleted.IsZero() {
		return 0, false
	}
	type key struct{ kind, name string }
	live := map[key]bool{}
	var last time.Time
	for _, e := range tr.Events {
		o := e.Object
		if !tr.isJob(o) && (jobOnly || !tr.ofJob(o)) {
			continue
		}
		k := key{fmt.Sprintf("%T", o), o.GetName()}
		if e.Type == watch.Deleted {
			delete(live, k)
			if !e.Time.Before(deleted) && e.Time.After(last) {
				last = e.Time
			}
			continue
		}
		live[k] = true
	}
	if len(live) > 0 || last.IsZero() {
		return 0, false
	}
	return last.Sub(deleted), true
}

// faults are the actions that hit a PE (directly, or through its node).
func (tr *Trace) faults() []Action {
	var out []Action
	for _, a := range tr.Actions {
		if a.Kind != ActionObserve && a.Kind != ActionDeleteJob && a.PE >= 0 {
			out = append(out, a)
		}
	}
	return out
}

// recovery measures one fault on PE f.PE:
//   - fault_detected: first PE event after the fault that is not Connected;
//   - recovery_connected: first PE event after the fault that is Connected
//     in a later incarnation than at the fault (a pod of a higher launch
//     count, or the PE container restarted in place);
//   - recovery_flowing: after that reconnection, the first sink sample
//     above the sinks' total at the reconnection.
func (tr *Trace) recovery(f Action, metric string) (time.Duration, bool) {
	name := app.PEName(tr.Job, int32(f.PE))
	var atFault *Incarnation
	var reconnected time.Time
	for _, e := range tr.Events {
		pe, ok := e.Object.(*v1alpha1.ProcessingElement)
		if !ok || pe.Namespace != tr.Namespace || pe.Name != name || e.Type == watch.Deleted {
			continue
		}
		if !e.Time.After(f.Time) {
			i := IncarnationOf(pe)
			atFault = &i
			continue
		}
		if metric == FaultDetected && pe.Status.Connectivity != v1alpha1.ConnectivityConnected {
			return e.Time.Sub(f.Time), true
		}
		if atFault != nil && Recovered(pe, *atFault) {
			reconnected = e.Time
			break
		}
	}
	if metric == FaultDetected || reconnected.IsZero() {
		return 0, false
	}
	if metric == RecoveryConnected {
		return reconnected.Sub(f.Time), true
	}
	last := map[string]float64{}
	sum := func() float64 {
		t := 0.0
		for _, v := range last {
			t += v
		}
		return t
	}
	base := math.NaN()
	for _, s := range tr.Samples {
		if s.Name != SinkTuples {
			continue
		}
		if s.Time.After(reconnected) && math.IsNaN(base) {
			base = sum()
		}
		last[s.Subject] = s.Value
		if !math.IsNaN(base) && sum() > base {
			return s.Time.Sub(f.Time), true
		}
	}
	return 0, false
}

// podReadyAgain measures recovery_pod_ready for one fault on PE f.PE: the
// first event after the fault of a pod of the PE that is Ready and is not
// the run that failed: a pod not seen before the fault, or the same pod
// with its PE container restarted more often. Beside recovery_connected it
// splits a recovery into the kubelet's part and the platform's (the PE
// controller seeing the pod and writing the PE's status).
func (tr *Trace) podReadyAgain(f Action) (time.Duration, bool) {
	name := app.PEName(tr.Job, int32(f.PE))
	restartsAt := map[string]int32{} // pod UID -> restarts at the fault
	for _, e := range tr.Events {
		pod, ok := e.Object.(*corev1.Pod)
		if !ok || pod.Namespace != tr.Namespace || pod.Labels[v1alpha1.LabelPE] != name {
			continue
		}
		if !e.Time.After(f.Time) {
			restartsAt[string(pod.UID)] = peRestarts(pod)
			continue
		}
		if e.Type == watch.Deleted || pod.DeletionTimestamp != nil || !podCondition(pod, corev1.PodReady) {
			continue
		}
		if before, seen := restartsAt[string(pod.UID)]; !seen || peRestarts(pod) > before {
			return e.Time.Sub(f.Time), true
		}
	}
	return 0, false
}

// peRestarts is the restart count of a pod's PE container.
func peRestarts(pod *corev1.Pod) int32 {
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Name == v1alpha1.PEContainerName {
			return cs.RestartCount
		}
	}
	return 0
}

// Stamp is a helper for backends that build events from objects: it copies
// the object so later mutation by the caller cannot change the trace.
func Stamp(t time.Time, typ watch.EventType, obj client.Object) Event {
	return Event{Time: t, Type: typ, Object: obj.DeepCopyObject().(client.Object)}
}
