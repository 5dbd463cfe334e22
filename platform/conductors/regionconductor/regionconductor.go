// Package regionconductor runs consistent regions: for each ConsistentRegion
// it gathers what the region's PEs reported (through their PE status, which
// the PE controller copies from the pods) and walks the region's state
// machine (platform/region) through the ConsistentRegion coordinator. It
// keeps no state of its own: a restarted operator resumes a drain or a reset
// from the region's status.
package regionconductor

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/controllers/pe"
	"sluice.dev/sluice/platform/coordinator"
	"sluice.dev/sluice/platform/region"
)

// Reconciler is the region conductor.
type Reconciler struct {
	Client   client.Client
	Clock    clock.PassiveClock
	Recorder record.EventRecorder
	Regions  *coordinator.Coordinator[*v1alpha1.ConsistentRegion]
}

// Reconcile takes one step of a region's state machine.
func (r *Reconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	cr := &v1alpha1.ConsistentRegion{}
	if err := r.Client.Get(ctx, req.NamespacedName, cr); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	if cr.DeletionTimestamp != nil {
		return reconcile.Result{}, nil
	}
	var list v1alpha1.ProcessingElementList
	if err := r.Client.List(ctx, &list, client.InNamespace(cr.Namespace), client.MatchingLabels{v1alpha1.LabelRegion: cr.Name}); err != nil {
		return reconcile.Result{}, err
	}
	pes := Observe(list.Items)
	now := r.Clock.Now()
	d := region.Next(region.Observation{Spec: cr.Spec, Status: cr.Status, PEs: pes, Now: now})
	if !d.Changed {
		return requeue(d.RequeueAfter), nil
	}
	gen := cr.Generation
	out, err := r.Regions.Submit(ctx, req.NamespacedName, coordinator.Command[*v1alpha1.ConsistentRegion]{
		Name: "step region", Status: true,
		Apply: func(c *v1alpha1.ConsistentRegion) bool {
			// Decided again on the object being written, so that the command
			// is idempotent against what the coordinator observes.
			d := region.Next(region.Observation{Spec: c.Spec, Status: c.Status, PEs: pes, Now: now})
			if !d.Changed && c.Status.ObservedGeneration == gen {
				return false
			}
			c.Status = d.Status
			c.Status.ObservedGeneration = gen
			return true
		}})
	if err != nil || out != coordinator.Written {
		return coordinator.Result(out), err
	}
	if d.Event != nil && r.Recorder != nil {
		kind := corev1.EventTypeNormal
		if d.Event.Warning {
			kind = corev1.EventTypeWarning
		}
		r.Recorder.Event(cr, kind, d.Event.Reason, d.Event.Message)
	}
	return requeue(d.RequeueAfter), nil
}

// Observe turns a region's PE objects into what the state machine reads. A
// PE's progress counts only if it was reported by the pod of its current
// launch.
func Observe(items []v1alpha1.ProcessingElement) []region.PE {
	out := make([]region.PE, 0, len(items))
	for i := range items {
		p := &items[i]
		obs := region.PE{Name: p.Name, Connected: pe.IsConnected(p)}
		if p.Status.PodLaunch == p.Spec.LaunchCount && p.Status.Region != nil {
			obs.Progress = p.Status.Region.DeepCopy()
		}
		out = append(out, obs)
	}
	return out
}

func requeue(after time.Duration) reconcile.Result {
	if after <= 0 {
		return reconcile.Result{}
	}
	return reconcile.Result{RequeueAfter: after}
}
