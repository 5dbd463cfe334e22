// Package hostpool is the HostPool controller: the only writer of HostPool
// status. It counts the schedulable nodes each pool selects, so that a user
// (and the Job conductor's messages) can tell an empty pool at a glance.
package hostpool

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/conditions"
	"sluice.dev/sluice/platform/coordinator"
)

// Resync is how often a pool recounts its nodes; node events are not
// mapped to pools (a pool's selector is not an index).
const Resync = 30 * time.Second

// Reconciler is the HostPool controller.
type Reconciler struct {
	Client    client.Client
	Clock     clock.PassiveClock
	HostPools *coordinator.Coordinator[*v1alpha1.HostPool]
}

// Matches reports whether a node belongs to the pool and takes its PEs.
func Matches(pool *v1alpha1.HostPool, node *corev1.Node) bool {
	if node.Spec.Unschedulable || !labels.SelectorFromSet(pool.Spec.NodeSelector).Matches(labels.Set(node.Labels)) {
		return false
	}
	for _, t := range node.Spec.Taints {
		if t.Effect != corev1.TaintEffectNoSchedule && t.Effect != corev1.TaintEffectNoExecute {
			continue
		}
		if !(pool.Spec.Exclusive && t.Key == v1alpha1.TaintPool && t.Value == pool.Spec.Name) {
			return false
		}
	}
	return true
}

// Reconcile counts the pool's nodes.
func (r *Reconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	pool := &v1alpha1.HostPool{}
	if err := r.Client.Get(ctx, req.NamespacedName, pool); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	var nodes corev1.NodeList
	if err := r.Client.List(ctx, &nodes); err != nil {
		return reconcile.Result{}, err
	}
	n := int32(0)
	for i := range nodes.Items {
		if Matches(pool, &nodes.Items[i]) {
			n++
		}
	}
	gen, now := pool.Generation, r.Clock.Now()
	out, err := r.HostPools.Submit(ctx, req.NamespacedName, coordinator.Command[*v1alpha1.HostPool]{Name: "count nodes", Status: true,
		Apply: func(p *v1alpha1.HostPool) bool {
			cond := metav1.Condition{Type: "Ready", Status: metav1.ConditionTrue, Reason: "NodesSelected",
				Message: fmt.Sprintf("%d schedulable nodes", n), ObservedGeneration: gen}
			if n == 0 {
				cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, "NoNodes", "no schedulable node matches the pool"
			}
			changed := p.Status.Nodes != n || p.Status.ObservedGeneration != gen
			p.Status.Nodes, p.Status.ObservedGeneration = n, gen
			return conditions.Set(&p.Status.Conditions, cond, now) || changed
		}})
	if res := coordinator.Result(out); res.RequeueAfter > 0 {
		return res, err
	}
	return reconcile.Result{RequeueAfter: Resync}, err
}
