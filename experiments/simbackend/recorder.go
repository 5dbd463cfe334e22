package simbackend

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"sluice.dev/sluice/experiments/metrics"
	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/sim/apiserver"
	"sluice.dev/sluice/sim/clock"
)

// recorder is the experiment's watcher: it receives the API server's watch
// events like any other client (after the watch delay) and stamps each with
// the virtual time of receipt, which is what the kind backend does with
// wall time.
type recorder struct {
	clk     *clock.Clock
	events  []metrics.Event
	watcher *apiserver.Watcher
	// job is the trial's Job; the fields below follow its progress.
	job         *v1alpha1.Job
	submittedAt time.Time
	failed      bool
	live        map[string]bool
	incarnation map[string]metrics.Incarnation
	faults      []*peFault
}

func newRecorder(api *apiserver.Server, job *v1alpha1.Job) *recorder {
	r := &recorder{clk: api.Clock(), job: job, live: map[string]bool{}, incarnation: map[string]metrics.Incarnation{}}
	r.watcher = api.WatchAll(func(ev apiserver.WatchEvent) {
		if !recorded(ev.Object) {
			return
		}
		// The watcher's copy is ours to keep.
		e := metrics.Event{Time: r.clk.Now(), Type: ev.Type, Object: ev.Object}
		r.events = append(r.events, e)
		r.observeJob(e)
	})
	return r
}

// recorded says which kinds metrics read: the platform's objects and what
// it generates, not nodes or leases (their heartbeats would dominate).
func recorded(o client.Object) bool {
	switch o.(type) {
	case *v1alpha1.Job, *v1alpha1.ProcessingElement, *v1alpha1.HostPool, *v1alpha1.ConsistentRegion,
		*corev1.Pod, *corev1.Service, *corev1.ConfigMap:
		return true
	}
	return false
}
