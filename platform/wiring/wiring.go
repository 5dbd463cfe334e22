// Package wiring describes the platform's reconcilers as data: what each one
// reconciles and which watched events become its requests. The operator
// binary turns the descriptors into controller-runtime controllers; the
// simulator drives the very same descriptors in virtual time. Nothing here
// knows which of the two is running it.
package wiring

import (
	"context"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// MapFunc turns a watched object into the requests it causes. It must be a
// pure function of the object (it may not read the API).
type MapFunc func(ctx context.Context, obj client.Object) []reconcile.Request

// Watch is one kind a reconciler reacts to.
type Watch struct {
	// Object is a prototype of the watched kind (for example &corev1.Pod{}).
	Object client.Object
	// Map turns an event's object into requests; nil means the object's own key.
	Map MapFunc
}

// Controller is one reconciler and its watches.
type Controller struct {
	// Name is unique among the platform's reconcilers (metrics, logs, traces).
	Name string
	// For is the primary kind: its events enqueue the object's own key.
	For client.Object
	// Watches are further kinds whose events enqueue mapped requests.
	Watches []Watch
	// Reconciler is the logic. It is deterministic over its client and clock.
	Reconciler reconcile.Reconciler
	// Workers is the number of concurrent reconciles (controller-runtime's
	// MaxConcurrentReconciles); 0 means 1.
	Workers int
}

// Deps is what every reconciler is built from: nothing else reaches them.
type Deps struct {
	// Client reads from a cache of watched kinds and writes to the API server.
	Client client.Client
	// Clock is the only source of time.
	Clock clock.PassiveClock
	// Recorder emits Kubernetes Events.
	Recorder record.EventRecorder
	// PEImage is the default PE runtime image for Jobs that name none.
	PEImage string
}

// Self maps an object to its own key.
func Self(_ context.Context, obj client.Object) []reconcile.Request {
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: obj.GetNamespace(), Name: obj.GetName()}}}
}

// ByLabel maps an object to the object named by one of its labels, in the
// object's namespace; no label, no request.
func ByLabel(label string) MapFunc {
	return func(_ context.Context, obj client.Object) []reconcile.Request {
		name := obj.GetLabels()[label]
		if name == "" {
			return nil
		}
		return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: obj.GetNamespace(), Name: name}}}
	}
}
