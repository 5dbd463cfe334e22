// Package podconductor is the pod conductor: a reconciler per PE that
// watches PEs, their pods, ConfigMaps and HostPools, keeps no state and owns
// nothing. It walks a PE toward "its current launch has a pod" and asks the
// owners for each step:
//
//	launch count 0, config and pools present -> PE coordinator: increment launch count
//	no pod for the current launch             -> pod coordinator: create it
//	that pod failed / completed / deleted     -> PE coordinator: increment launch count
//	                                             (per the PE's restart policy)
//	that pod runs an old configuration        -> PE coordinator: increment launch count
//
// Each step is caused by the watch event of the one before.
package podconductor

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/tools/record"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/app"
	"sluice.dev/sluice/platform/controllers/pe"
	"sluice.dev/sluice/platform/coordinator"
	"sluice.dev/sluice/platform/render"
)

// missingDependencyRetry is how soon a PE waiting for a HostPool looks
// again; HostPool events are not mapped to PEs.
const missingDependencyRetry = time.Second

// Reconciler is the pod conductor.
type Reconciler struct {
	Client   client.Client
	Recorder record.EventRecorder
	PEs      *coordinator.Coordinator[*v1alpha1.ProcessingElement]
	Pods     *coordinator.Coordinator[*corev1.Pod]
	// Image is the default PE image.
	Image string
}

// Step is what the conductor decided for a PE, for tests and traces.
type Step string

const (
	StepNone         Step = "none"
	StepWaitConfig   Step = "wait-config"
	StepLaunch       Step = "launch"
	StepCreatePod    Step = "create-pod"
	StepRelaunch     Step = "relaunch"
	StepPodCompleted Step = "pod-completed"
	StepReconfigure  Step = "reconfigure"
)

// Decide is the state machine: what to do next for a PE, given the pod of
// its current launch (nil if the cache has none) and whether its config is
// present. It is pure.
func Decide(p *v1alpha1.ProcessingElement, pod *corev1.Pod, configReady bool) Step {
	policy := p.Spec.Template.EffectiveRestartPolicy()
	if p.Spec.LaunchCount == 0 {
		if !configReady {
			return StepWaitConfig
		}
		return StepLaunch
	}
	if pod == nil {
		// A pod we observed for this launch is gone: it was deleted.
		if p.Status.PodLaunch == p.Spec.LaunchCount && p.Status.PodName != "" {
			if policy.RestartDeleted {
				return StepRelaunch
			}
			return StepNone
		}
		if !configReady {
			return StepWaitConfig
		}
		return StepCreatePod
	}
	// How the pod ended decides before whether it is being deleted: a failed
	// pod that is then evicted or garbage-collected still failed.
	switch {
	case pod.Status.Phase == corev1.PodFailed:
		if policy.RestartFailed {
			return StepRelaunch
		}
	case pod.Status.Phase == corev1.PodSucceeded:
		if policy.RestartCompleted {
			return StepRelaunch
		}
		return StepPodCompleted
	case pod.DeletionTimestamp != nil:
		if policy.RestartDeleted {
			return StepRelaunch
		}
	case pod.Annotations[v1alpha1.AnnotationConfigHash] != p.Spec.ConfigHash:
		// The PE's configuration changed (a parallel region's width): a new
		// launch starts from the new one.
		return StepReconfigure
	}
	return StepNone
}

// Reconcile takes the next step for one PE.
func (r *Reconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	p := &v1alpha1.ProcessingElement{}
	if err := r.Client.Get(ctx, req.NamespacedName, p); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	if p.DeletionTimestamp != nil {
		return reconcile.Result{}, nil
	}
	pod, err := pe.CurrentPod(ctx, r.Client, p)
	if err != nil {
		return reconcile.Result{}, err
	}
	var pools []*v1alpha1.HostPool
	configReady := true
	if pod == nil {
		pools, configReady, err = r.dependencies(ctx, p)
		if err != nil {
			return reconcile.Result{}, err
		}
	}
	out := coordinator.Done
	switch Decide(p, pod, configReady) {
	case StepWaitConfig:
		return reconcile.Result{RequeueAfter: missingDependencyRetry}, nil
	case StepLaunch:
		out, err = r.PEs.Submit(ctx, req.NamespacedName, pe.IncrementLaunch(0))
	case StepRelaunch:
		out, err = r.PEs.Submit(ctx, req.NamespacedName, pe.IncrementLaunch(p.Spec.LaunchCount))
		if err == nil && r.Recorder != nil {
			r.Recorder.Eventf(p, corev1.EventTypeNormal, "Relaunch", "pod of launch %d ended; launching again", p.Spec.LaunchCount)
		}
	case StepReconfigure:
		out, err = r.PEs.Submit(ctx, req.NamespacedName, pe.IncrementLaunch(p.Spec.LaunchCount))
		if err == nil && out == coordinator.Written && r.Recorder != nil {
			r.Recorder.Eventf(p, corev1.EventTypeNormal, "Reconfigure", "configuration changed; launch %d replaces the pod", p.Spec.LaunchCount+1)
		}
	case StepCreatePod:
		out, err = r.Pods.Create(ctx, render.Pod(p, pools, r.Image))
	}
	return coordinator.Result(out), err
}

// dependencies reports whether the PE's ConfigMap and host pools exist,
// and returns the pools.
func (r *Reconciler) dependencies(ctx context.Context, p *v1alpha1.ProcessingElement) ([]*v1alpha1.HostPool, bool, error) {
	cm := &corev1.ConfigMap{}
	if err := r.Client.Get(ctx, client.ObjectKey{Namespace: p.Namespace, Name: p.Name}, cm); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, false, nil
		}
		return nil, false, err
	}
	pools := make([]*v1alpha1.HostPool, 0, len(p.Spec.Placement.HostPools))
	for _, name := range p.Spec.Placement.HostPools {
		pool := &v1alpha1.HostPool{}
		key := client.ObjectKey{Namespace: p.Namespace, Name: app.HostPoolName(p.Spec.JobName, name)}
		if err := r.Client.Get(ctx, key, pool); err != nil {
			if apierrors.IsNotFound(err) {
				return nil, false, nil
			}
			return nil, false, err
		}
		pools = append(pools, pool)
	}
	return pools, true, nil
}
