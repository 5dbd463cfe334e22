// Package pod is the PE pod controller: the only writer of PE pods. It owns
// the pod coordinator, through which the pod conductor creates the pod of a
// PE's current launch, and it removes pods whose launch has been superseded
// or whose PE is no longer their owner.
//
// It reconciles one pod at a time (requests are pod keys), so that its cost
// does not grow with the size of the Job: a pod's own events wake it, and a
// PE's events wake the pod of the PE's previous launch (see PreviousLaunch).
package pod

import (
	"context"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/app"
	"sluice.dev/sluice/platform/controllers/pe"
	"sluice.dev/sluice/platform/coordinator"
)

// Reconciler is the pod controller.
type Reconciler struct {
	Client client.Client
	Pods   *coordinator.Coordinator[*corev1.Pod]
}

// Stale reports whether pod belongs to a launch before the PE's current one.
func Stale(pe *v1alpha1.ProcessingElement, pod *corev1.Pod) bool {
	n, err := strconv.Atoi(pod.Labels[v1alpha1.LabelLaunch])
	return err != nil || int32(n) < pe.Spec.LaunchCount
}

// PreviousLaunch maps a PE to the pod of its previous launch: when the
// launch count rises, that pod is the one to remove.
func PreviousLaunch(_ context.Context, obj client.Object) []reconcile.Request {
	pe, ok := obj.(*v1alpha1.ProcessingElement)
	if !ok || pe.Spec.LaunchCount < 2 {
		return nil
	}
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: pe.Namespace,
		Name: app.PodName(pe.Name, pe.Spec.LaunchCount-1)}}}
}

// Reconcile deletes one pod if its launch is superseded or its PE is not
// its owner (a pod left by an earlier PE of the same name). A pod whose PE
// is gone is left to the garbage collector.
func (r *Reconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	p := &corev1.Pod{}
	if err := r.Client.Get(ctx, req.NamespacedName, p); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	name := p.Labels[v1alpha1.LabelPE]
	if p.DeletionTimestamp != nil || name == "" || p.Labels[v1alpha1.LabelRole] != v1alpha1.RolePEPod {
		return reconcile.Result{}, nil
	}
	owner := &v1alpha1.ProcessingElement{}
	if err := r.Client.Get(ctx, types.NamespacedName{Namespace: p.Namespace, Name: name}, owner); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	if Stale(owner, p) || !pe.OwnedBy(p, owner) {
		out, err := r.Pods.Delete(ctx, p)
		return coordinator.Result(out), err
	}
	return reconcile.Result{}, nil
}
