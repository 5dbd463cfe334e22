// Package pod is the PE pod controller: the only writer of PE pods. It owns
// the pod coordinator, through which the pod conductor creates the pod of a
// PE's current launch, and it removes pods of launches that have been
// superseded.
package pod

import (
	"context"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/coordinator"
)

// Reconciler is the pod controller; requests are keyed by PE.
type Reconciler struct {
	Client client.Client
	Pods   *coordinator.Coordinator[*corev1.Pod]
}

// Stale reports whether pod belongs to a launch before the PE's current one.
func Stale(pe *v1alpha1.ProcessingElement, pod *corev1.Pod) bool {
	n, err := strconv.Atoi(pod.Labels[v1alpha1.LabelLaunch])
	return err != nil || int32(n) < pe.Spec.LaunchCount
}

// Reconcile deletes the pods of superseded launches of a PE.
func (r *Reconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	pe := &v1alpha1.ProcessingElement{}
	if err := r.Client.Get(ctx, req.NamespacedName, pe); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	var pods corev1.PodList
	if err := r.Client.List(ctx, &pods, client.InNamespace(pe.Namespace),
		client.MatchingLabels{v1alpha1.LabelPE: pe.Name, v1alpha1.LabelRole: v1alpha1.RolePEPod}); err != nil {
		return reconcile.Result{}, err
	}
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.DeletionTimestamp == nil && Stale(pe, p) {
			if _, err := r.Pods.Delete(ctx, p); err != nil {
				return reconcile.Result{}, err
			}
		}
	}
	return reconcile.Result{}, nil
}
