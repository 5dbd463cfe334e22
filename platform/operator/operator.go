// Package operator runs the platform's reconcilers in a controller-runtime
// manager: it turns each wiring.Controller into a controller with the same
// watches. The simulator drives the same descriptors without this package.
package operator

import (
	"fmt"
	"sync"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/selection"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/wiring"
)

// The operator's permissions, generated into config/rbac by controller-gen.
//
// +kubebuilder:rbac:groups=streams.sluice.dev,resources=streamsjobs;streamspes;streamshostpools;streamsconsistentregions;streamsparallelregions;streamsexports;streamsimports,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=streams.sluice.dev,resources=streamsjobs/status;streamspes/status;streamshostpools/status;streamsconsistentregions/status;streamsparallelregions/status;streamsexports/status;streamsimports/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=serviceaccounts,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=roles;rolebindings,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=pods;configmaps;services,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=nodes,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;list;watch;create;update;patch;delete

// Client-side rate limits of the operator's API client. controller-runtime's
// defaults (20 QPS, burst 30) cap a submission at about three PEs a second
// (six writes per PE); the API server's priority and fairness protects it
// from a busy operator. The simulator's driver uses the same values.
const (
	ClientQPS   = 100
	ClientBurst = 200
)

// Scheme returns a scheme with the built-in kinds and the platform's kinds.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		panic(err)
	}
	if err := v1alpha1.AddToScheme(s); err != nil {
		panic(err)
	}
	return s
}

// CacheOptions limits the manager's cache of built-in kinds to the objects
// the platform generates: a cluster's other pods, ConfigMaps and Services
// are none of its business and would only cost memory.
func CacheOptions() cache.Options {
	req, err := labels.NewRequirement(v1alpha1.LabelJob, selection.Exists, nil)
	if err != nil {
		panic(err)
	}
	ours := labels.NewSelector().Add(*req)
	return cache.Options{ByObject: map[client.Object]cache.ByObject{
		&corev1.Pod{}:       {Label: ours},
		&corev1.ConfigMap{}: {Label: ours},
		&corev1.Service{}:   {Label: ours},
		// PE access objects of Jobs with consistent regions.
		&corev1.ServiceAccount{}: {Label: ours},
		&rbacv1.Role{}:           {Label: ours},
		&rbacv1.RoleBinding{}:    {Label: ours},
	}}
}

// Setup registers every platform reconciler with mgr and returns the
// coordinators (their write counters are useful to tests and benchmarks).
func Setup(mgr manager.Manager, peImage string) (*wiring.Coordinators, error) {
	deps := wiring.Deps{
		Client:   mgr.GetClient(),
		Clock:    clock.RealClock{},
		Recorder: mgr.GetEventRecorderFor("sluice-operator"),
		PEImage:  peImage,
	}
	co := wiring.NewCoordinators(deps)
	if err := registerRegionMetrics(mgr.GetClient()); err != nil {
		return nil, err
	}
	for _, c := range wiring.Controllers(deps, co) {
		b := builder.ControllerManagedBy(mgr).Named(c.Name).For(c.For).
			WithOptions(controller.Options{MaxConcurrentReconciles: max(c.Workers, 1)})
		for _, w := range c.Watches {
			m := w.Map
			if m == nil {
				m = wiring.Self
			}
			b = b.Watches(w.Object, handler.EnqueueRequestsFromMapFunc(handler.MapFunc(m)))
		}
		if err := b.Complete(c.Reconciler); err != nil {
			return nil, fmt.Errorf("controller %s: %w", c.Name, err)
		}
	}
	return co, nil
}

var (
	metricsMu sync.Mutex
	// collector is the registered RegionCollector: the latest manager's
	// (tests start several managers in one process, one after another).
	collector *RegionCollector
)

func registerRegionMetrics(r client.Reader) error {
	metricsMu.Lock()
	defer metricsMu.Unlock()
	if collector != nil {
		ctrlmetrics.Registry.Unregister(collector)
	}
	collector = NewRegionCollector(r)
	if err := ctrlmetrics.Registry.Register(collector); err != nil {
		return fmt.Errorf("region metrics: %w", err)
	}
	return nil
}
