// Package pe is the ProcessingElement controller: the only writer of PEs.
// It owns the PE coordinator, through which the pod conductor raises launch
// counts, and it reflects the pod of the current launch into the PE's
// status. Connectivity arrives here through Kubernetes itself: the PE
// runtime's readiness endpoint drives the pod's Ready condition.
package pe

import (
	"context"
	"encoding/json"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/app"
	"sluice.dev/sluice/platform/conditions"
	"sluice.dev/sluice/platform/coordinator"
)

// Reconciler is the PE controller.
type Reconciler struct {
	Client client.Client
	Clock  clock.PassiveClock
	PEs    *coordinator.Coordinator[*v1alpha1.ProcessingElement]
}

// Observed is what a PE's status should say about the pod of its launch.
type Observed struct {
	Launch       int32
	PodName      string
	Phase        corev1.PodPhase
	Node         string
	Connectivity v1alpha1.Connectivity
	// Restarts is the PE container's in-place restart count.
	Restarts int32
	// Unschedulable is the scheduler's message when it cannot place the pod.
	Unschedulable string
	// Region is the consistent-region progress the pod's process reported.
	Region *v1alpha1.RegionProgress
}

// Observe derives the status fields from the pod of the current launch
// (nil when there is none in the cache).
func Observe(pe *v1alpha1.ProcessingElement, pod *corev1.Pod) Observed {
	if pod == nil {
		o := Observed{Launch: pe.Status.PodLaunch, PodName: pe.Status.PodName, Connectivity: v1alpha1.ConnectivityUnknown,
			Restarts: pe.Status.Restarts}
		if pe.Status.PodLaunch == pe.Spec.LaunchCount && pe.Status.PodName != "" {
			o.Connectivity = v1alpha1.ConnectivityDisconnected // the pod we saw is gone
		}
		return o
	}
	o := Observed{Launch: pe.Spec.LaunchCount, PodName: pod.Name, Phase: pod.Status.Phase, Node: pod.Spec.NodeName,
		Connectivity: v1alpha1.ConnectivityDisconnected}
	// A pod started from an older configuration is about to be replaced
	// (the pod conductor's StepReconfigure): its connections are the old
	// plan's, so it does not make the PE connected.
	if Connected(pod) && pod.Annotations[v1alpha1.AnnotationConfigHash] == pe.Spec.ConfigHash {
		o.Connectivity = v1alpha1.ConnectivityConnected
	}
	o.Unschedulable = UnschedulableMessage(pod)
	o.Region = RegionProgress(pod)
	for _, c := range pod.Status.ContainerStatuses {
		if c.Name == v1alpha1.PEContainerName {
			o.Restarts = c.RestartCount
		}
	}
	return o
}

// RegionProgress is the progress a PE process wrote on its pod, or nil when
// it wrote none (or something unreadable: a process that cannot report is
// treated as one that has not).
func RegionProgress(pod *corev1.Pod) *v1alpha1.RegionProgress {
	raw, ok := pod.Annotations[v1alpha1.AnnotationRegionProgress]
	if !ok {
		return nil
	}
	p := &v1alpha1.RegionProgress{}
	if err := json.Unmarshal([]byte(raw), p); err != nil {
		return nil
	}
	return p
}

// UnschedulableMessage is the scheduler's reason for not placing a pod, or "".
func UnschedulableMessage(pod *corev1.Pod) string {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
			if c.Message == "" {
				return "unschedulable"
			}
			return c.Message
		}
	}
	return ""
}

// ConditionScheduled is the PE condition that carries the scheduler's verdict.
const ConditionScheduled = "Scheduled"

// IsConnected reports whether a PE's status says its current launch is
// connected. A status written before the last spec change (a new launch or
// configuration) says nothing of the current one.
func IsConnected(p *v1alpha1.ProcessingElement) bool {
	return p.Spec.LaunchCount > 0 && p.Status.PodLaunch == p.Spec.LaunchCount &&
		p.Status.ObservedGeneration == p.Generation &&
		p.Status.Connectivity == v1alpha1.ConnectivityConnected
}

// Unschedulable returns the scheduler's message recorded on a PE, or "".
func Unschedulable(p *v1alpha1.ProcessingElement) string {
	for _, c := range p.Status.Conditions {
		if c.Type == ConditionScheduled && c.Status == metav1.ConditionFalse {
			return c.Message
		}
	}
	return ""
}

// Connected reports whether a PE pod runs with every connection up: it is
// Running, not being deleted, and Ready (the runtime's readiness is its
// connectivity).
func Connected(pod *corev1.Pod) bool {
	if pod == nil || pod.DeletionTimestamp != nil || pod.Status.Phase != corev1.PodRunning {
		return false
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// OwnedBy reports whether pe is the controller of pod. A pod of the same
// name can outlive its PE (a Job re-created or retried): it is not ours.
func OwnedBy(pod *corev1.Pod, pe *v1alpha1.ProcessingElement) bool {
	ref := metav1.GetControllerOf(pod)
	return ref != nil && ref.UID == pe.UID
}

// CurrentPod returns the cached pod of the PE's current launch, or nil.
func CurrentPod(ctx context.Context, c client.Client, pe *v1alpha1.ProcessingElement) (*corev1.Pod, error) {
	if pe.Spec.LaunchCount == 0 {
		return nil, nil
	}
	pod := &corev1.Pod{}
	err := c.Get(ctx, client.ObjectKey{Namespace: pe.Namespace, Name: app.PodName(pe.Name, pe.Spec.LaunchCount)}, pod)
	if err != nil {
		return nil, client.IgnoreNotFound(err)
	}
	if !OwnedBy(pod, pe) {
		return nil, nil // a predecessor's; the pod controller removes it
	}
	return pod, nil
}

// Reconcile writes the PE's status when its pod changed.
func (r *Reconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	pe := &v1alpha1.ProcessingElement{}
	if err := r.Client.Get(ctx, req.NamespacedName, pe); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	if pe.DeletionTimestamp != nil {
		return reconcile.Result{}, nil
	}
	pod, err := CurrentPod(ctx, r.Client, pe)
	if err != nil {
		return reconcile.Result{}, err
	}
	// Before the first pod there is nothing to report.
	if pod == nil && pe.Status.PodName == "" {
		return reconcile.Result{}, nil
	}
	// A pod that is created but not yet scheduled says nothing worth a write.
	if pod != nil && pod.Spec.NodeName == "" && (pod.Status.Phase == corev1.PodPending || pod.Status.Phase == "") &&
		pe.Status.PodLaunch != pe.Spec.LaunchCount && UnschedulableMessage(pod) == "" {
		return reconcile.Result{}, nil
	}
	out, err := r.PEs.Submit(ctx, req.NamespacedName, SetStatus(Observe(pe, pod), pe.Generation, r.Clock.Now()))
	return coordinator.Result(out), err
}

// SetStatus is the PE coordinator command that records an observation.
func SetStatus(o Observed, generation int64, now time.Time) coordinator.Command[*v1alpha1.ProcessingElement] {
	return coordinator.Command[*v1alpha1.ProcessingElement]{Name: "set status", Status: true,
		Apply: func(pe *v1alpha1.ProcessingElement) bool {
			s := &pe.Status
			changed := s.PodLaunch != o.Launch || s.PodName != o.PodName || s.PodPhase != o.Phase ||
				s.NodeName != o.Node || s.Connectivity != o.Connectivity || s.Restarts != o.Restarts || s.ObservedGeneration != generation ||
				!equality.Semantic.DeepEqual(s.Region, o.Region)
			s.PodLaunch, s.PodName, s.PodPhase, s.NodeName, s.Connectivity, s.ObservedGeneration =
				o.Launch, o.PodName, o.Phase, o.Node, o.Connectivity, generation
			s.Region = o.Region.DeepCopy()
			s.Restarts = o.Restarts
			cond := metav1.Condition{Type: "Connected", Status: metav1.ConditionFalse, Reason: string(o.Connectivity),
				ObservedGeneration: generation, Message: "pod " + o.PodName}
			if o.Connectivity == v1alpha1.ConnectivityConnected {
				cond.Status = metav1.ConditionTrue
			}
			if o.PodName == "" {
				cond.Message = "no pod yet"
			}
			changed = conditions.Set(&s.Conditions, cond, now) || changed
			sched := metav1.Condition{Type: ConditionScheduled, Status: metav1.ConditionTrue, Reason: "Scheduled",
				ObservedGeneration: generation, Message: "on node " + o.Node}
			switch {
			case o.Unschedulable != "":
				sched.Status, sched.Reason, sched.Message = metav1.ConditionFalse, corev1.PodReasonUnschedulable, o.Unschedulable
			case o.Node == "":
				sched.Status, sched.Reason, sched.Message = metav1.ConditionUnknown, "NotScheduled", "no node yet"
			}
			return conditions.Set(&s.Conditions, sched, now) || changed
		}}
}

// IncrementLaunch is the PE coordinator command that launches the PE
// again. It names the launch count it replaces, so that it is idempotent:
// once the count has moved past from, the command is done.
func IncrementLaunch(from int32) coordinator.Command[*v1alpha1.ProcessingElement] {
	return coordinator.Command[*v1alpha1.ProcessingElement]{Name: "increment launch count",
		Apply: func(pe *v1alpha1.ProcessingElement) bool {
			if pe.Spec.LaunchCount != from {
				return false
			}
			pe.Spec.LaunchCount = from + 1
			return true
		}}
}
