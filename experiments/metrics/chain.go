package metrics

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/watch"

	"sluice.dev/sluice/platform/api/v1alpha1"
)

// The submission's causal chain, step by step: each metric is the time
// from the Job's ADDED to the moment the watcher saw the last of the Job's
// objects reach the step (the Job's status.pes of them). Read against each
// other they say where a submission's time goes; a bare-pod baseline has
// the pod steps only, from its first pod's ADDED.
const (
	ChainValid       = "chain_valid"
	ChainPEs         = "chain_pes_created"
	ChainLaunched    = "chain_launched"
	ChainPodsCreated = "chain_pods_created"
	ChainScheduled   = "chain_scheduled"
	ChainRunning     = "chain_running"
	ChainReady       = "chain_ready"
	ChainConnected   = "chain_connected"
)

// ChainSteps are the chain's metrics in causal order (submission ends it).
var ChainSteps = []string{ChainValid, ChainPEs, ChainLaunched, ChainPodsCreated, ChainScheduled, ChainRunning, ChainReady, ChainConnected}

func init() {
	for _, i := range []Info{
		{ChainValid, Seconds, "Job valid", "Job ADDED -> Valid=True seen (validated and fused)"},
		{ChainPEs, Seconds, "PEs created", "Job ADDED -> the last of its PEs ADDED (ConfigMaps and Services are written before each)"},
		{ChainLaunched, Seconds, "PEs launched", "Job ADDED -> the last PE seen with launch count 1"},
		{ChainPodsCreated, Seconds, "pods created", "Job ADDED (or first pod ADDED) -> the last PE pod ADDED"},
		{ChainScheduled, Seconds, "pods scheduled", "-> the last PE pod scheduled"},
		{ChainRunning, Seconds, "pods running", "-> the last PE pod Running"},
		{ChainReady, Seconds, "pods ready", "-> the last PE pod Ready"},
		{ChainConnected, Seconds, "PEs connected", "Job ADDED -> the last PE status Connected"},
	} {
		catalogue[i.Name] = i
	}
}

// chain is the time of one step of the submission's causal chain.
func (tr *Trace) chain(step string) (time.Duration, bool) {
	var start time.Time
	want := 0
	valid := time.Time{}
	for _, e := range tr.Events {
		if !tr.isJob(e.Object) || e.Type == watch.Deleted {
			continue
		}
		if e.Type == watch.Added && start.IsZero() {
			start = e.Time
		}
		job := e.Object.(*v1alpha1.Job)
		want = max(want, int(job.Status.PEs))
		if valid.IsZero() && meta.IsStatusConditionTrue(job.Status.Conditions, v1alpha1.ConditionValid) {
			valid = e.Time
		}
	}
	if step == ChainValid {
		return sub(valid, start)
	}
	reached := map[string]time.Time{}
	for _, e := range tr.Events {
		if e.Type == watch.Deleted || !tr.ofJob(e.Object) {
			continue
		}
		name, ok := "", false
		switch o := e.Object.(type) {
		case *v1alpha1.ProcessingElement:
			name = o.Name
			switch step {
			case ChainPEs:
				ok = true
			case ChainLaunched:
				ok = o.Spec.LaunchCount >= 1
			case ChainConnected:
				ok = o.Status.Connectivity == v1alpha1.ConnectivityConnected
			}
		case *corev1.Pod:
			if o.Labels[v1alpha1.LabelRole] != v1alpha1.RolePEPod {
				continue
			}
			name = o.Name
			if start.IsZero() {
				start = e.Time // a baseline: no Job, timed from its first pod
			}
			switch step {
			case ChainPodsCreated:
				ok = true
			case ChainScheduled:
				ok = o.Spec.NodeName != "" || podCondition(o, corev1.PodScheduled)
			case ChainRunning:
				ok = o.Status.Phase == corev1.PodRunning
			case ChainReady:
				ok = podCondition(o, corev1.PodReady)
			}
		}
		if ok {
			if _, seen := reached[name]; !seen {
				reached[name] = e.Time
			}
		}
	}
	if want == 0 {
		want = tr.podCount()
	}
	if want == 0 || len(reached) < want {
		return 0, false
	}
	var last time.Time
	for _, t := range reached {
		if t.After(last) {
			last = t
		}
	}
	return sub(last, start)
}

// podCount is the number of distinct PE pods of the trace (a baseline's N).
func (tr *Trace) podCount() int {
	seen := map[string]bool{}
	for _, e := range tr.Events {
		if pod, ok := e.Object.(*corev1.Pod); ok && tr.ofJob(pod) && pod.Labels[v1alpha1.LabelRole] == v1alpha1.RolePEPod {
			seen[pod.Name] = true
		}
	}
	return len(seen)
}

func sub(t, start time.Time) (time.Duration, bool) {
	if t.IsZero() || start.IsZero() || t.Before(start) {
		return 0, false
	}
	return t.Sub(start), true
}
