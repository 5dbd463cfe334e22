// Package broker matches Imports with Exports across the Jobs of a
// namespace, in the conductor style: it keeps no state, reads both kinds
// from the cache and tells each Import, through its coordinator, which
// exported streams it receives and where they are served. Importing PEs
// watch their Import and connect; a new or deleted Export reaches running
// importers this way, without a restart.
package broker

import (
	"context"
	"fmt"
	"sort"

	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/app"
	"sluice.dev/sluice/platform/conditions"
	"sluice.dev/sluice/platform/coordinator"
	"sluice.dev/sluice/platform/peconfig"
)

// RequestName is the request an Export event makes. Whatever the request's
// name (an Import's own, or this), the broker matches the request's whole
// namespace: matching is cheap against the cache and keeps the Exports'
// importer counts right too.
const RequestName = "streams-broker"

// ConditionMatched is the Import condition saying whether any export matched.
const ConditionMatched = "Matched"

// Reconciler is the broker.
type Reconciler struct {
	Client  client.Client
	Clock   clock.PassiveClock
	Imports *coordinator.Coordinator[*v1alpha1.Import]
	Exports *coordinator.Coordinator[*v1alpha1.Export]
}

// Namespace maps an Import or Export to its namespace's broker request.
func Namespace(_ context.Context, obj client.Object) []reconcile.Request {
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: obj.GetNamespace(), Name: RequestName}}}
}

// Match returns the exports an import receives, by export name.
func Match(im *v1alpha1.Import, exports []v1alpha1.Export) []v1alpha1.ImportedStream {
	sub := app.NewSubscriber(&im.Spec)
	var out []v1alpha1.ImportedStream
	for i := range exports {
		ex := &exports[i]
		if ex.DeletionTimestamp != nil || !sub.Receives(&ex.Spec) {
			continue
		}
		out = append(out, v1alpha1.ImportedStream{Export: ex.Name, JobName: ex.Spec.JobName,
			Host: peconfig.ServiceHost(ex.Spec.PE, ex.Namespace), Port: peconfig.TCPPort(ex.Spec.Port)})
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Export < out[b].Export })
	return out
}

// Reconcile matches every Import of a namespace.
func (r *Reconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	ns := client.InNamespace(req.Namespace)
	var imports v1alpha1.ImportList
	var exports v1alpha1.ExportList
	if err := r.Client.List(ctx, &imports, ns); err != nil {
		return reconcile.Result{}, err
	}
	if err := r.Client.List(ctx, &exports, ns); err != nil {
		return reconcile.Result{}, err
	}
	now := r.Clock.Now()
	var outs []coordinator.Outcome
	var firstErr error
	note := func(out coordinator.Outcome, err error) {
		outs = append(outs, out)
		if err != nil && firstErr == nil {
			firstErr = err
		}
	}
	importers := map[string]int32{}
	for i := range imports.Items {
		im := &imports.Items[i]
		if im.DeletionTimestamp != nil {
			continue
		}
		streams := Match(im, exports.Items)
		for _, s := range streams {
			importers[s.Export]++
		}
		gen := im.Generation
		note(r.Imports.Submit(ctx, client.ObjectKeyFromObject(im), coordinator.Command[*v1alpha1.Import]{
			Name: "set matched streams", Status: true, Apply: func(o *v1alpha1.Import) bool {
				changed := !equality.Semantic.DeepEqual(o.Status.Streams, streams) || o.Status.ObservedGeneration != gen
				o.Status.Streams, o.Status.ObservedGeneration = streams, gen
				cond := metav1.Condition{Type: ConditionMatched, Status: metav1.ConditionTrue, Reason: "Matched",
					Message: fmt.Sprintf("%d exported stream(s)", len(streams)), ObservedGeneration: gen}
				if len(streams) == 0 {
					cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, "NoExport", "no export matches yet"
				}
				return conditions.Set(&o.Status.Conditions, cond, now) || changed
			}}))
	}
	for i := range exports.Items {
		ex := &exports.Items[i]
		if ex.DeletionTimestamp != nil {
			continue
		}
		n := importers[ex.Name]
		note(r.Exports.Submit(ctx, client.ObjectKeyFromObject(ex), coordinator.Command[*v1alpha1.Export]{
			Name: "count importers", Status: true, Apply: func(o *v1alpha1.Export) bool {
				if o.Status.Importers == n {
					return false
				}
				o.Status.Importers = n
				return true
			}}))
	}
	return coordinator.Result(outs...), firstErr
}
