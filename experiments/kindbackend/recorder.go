package kindbackend

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"sluice.dev/sluice/experiments/metrics"
	"sluice.dev/sluice/platform/api/v1alpha1"
)

// recorder is the experiment's watcher on a real API server: one watch per
// kind the metrics read, in the trial's namespace, every event stamped with
// the wall time at which it was received (clusterloader2's "watch" time).
type recorder struct {
	clk clock.PassiveClock
	ns  string
	job string

	mu     sync.Mutex
	events []metrics.Event
	// Progress of the trial, for its stop conditions.
	submittedAt time.Time
	failed      bool
	live        map[string]bool
	pes         map[string]*v1alpha1.ProcessingElement
	pods        map[string]*corev1.Pod
	faults      []*peFault
	changed     chan struct{}
}

// peFault follows one fault's PE until it is connected again in a later
// incarnation (the recovery_connected definition).
type peFault struct {
	pe          string
	at          metrics.Incarnation
	reconnected time.Time
}

// watchedKinds are the lists watched: the platform's objects and what it
// generates (as the sim backend records them). ConsistentRegions carry the
// region metrics: their status holds the drain and reset durations the
// platform measured.
func watchedKinds() []client.ObjectList {
	return []client.ObjectList{&v1alpha1.JobList{}, &v1alpha1.ProcessingElementList{}, &v1alpha1.HostPoolList{},
		&v1alpha1.ConsistentRegionList{}, &corev1.PodList{}, &corev1.ServiceList{}, &corev1.ConfigMapList{}}
}

// startRecorder opens the watches and returns once every watch is
// established, so that nothing created afterwards is missed.
func startRecorder(ctx context.Context, wc client.WithWatch, clk clock.PassiveClock, ns, job string) (*recorder, error) {
	r := &recorder{clk: clk, ns: ns, job: job, live: map[string]bool{}, pes: map[string]*v1alpha1.ProcessingElement{},
		pods: map[string]*corev1.Pod{}, changed: make(chan struct{}, 1)}
	for _, l := range watchedKinds() {
		w, err := wc.Watch(ctx, l, client.InNamespace(ns))
		if err != nil {
			return nil, fmt.Errorf("watching %T: %w", l, err)
		}
		go r.follow(ctx, wc, l, w)
	}
	return r, nil
}

// follow receives one watch's events, re-opening it from the last seen
// resource version if the server ends it.
func (r *recorder) follow(ctx context.Context, wc client.WithWatch, l client.ObjectList, w watch.Interface) {
	rv := ""
	for {
		for ev := range w.ResultChan() {
			if ev.Type == watch.Error || ev.Type == watch.Bookmark {
				continue
			}
			o, ok := ev.Object.(client.Object)
			if !ok {
				continue
			}
			rv = o.GetResourceVersion()
			r.record(metrics.Event{Time: r.clk.Now(), Type: ev.Type, Object: o})
		}
		w.Stop()
		if ctx.Err() != nil {
			return
		}
		var err error
		for {
			w, err = wc.Watch(ctx, l.DeepCopyObject().(client.ObjectList), client.InNamespace(r.ns),
				&client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: rv}})
			if err == nil || ctx.Err() != nil {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if ctx.Err() != nil {
			return
		}
	}
}

func (r *recorder) record(e metrics.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
	o := e.Object
	k := fmt.Sprintf("%T/%s", o, o.GetName())
	if e.Type == watch.Deleted {
		delete(r.live, k)
	} else {
		r.live[k] = true
	}
	switch x := o.(type) {
	case *v1alpha1.Job:
		if x.Name == r.job && e.Type != watch.Deleted {
			if r.submittedAt.IsZero() && meta.IsStatusConditionTrue(x.Status.Conditions, v1alpha1.ConditionSubmitted) {
				r.submittedAt = e.Time
			}
			r.failed = x.Status.Phase == v1alpha1.JobFailed || x.Status.Phase == v1alpha1.JobInvalid
		}
	case *v1alpha1.ProcessingElement:
		if e.Type == watch.Deleted {
			delete(r.pes, x.Name)
			break
		}
		r.pes[x.Name] = x
		for _, f := range r.faults {
			if f.pe == x.Name && f.reconnected.IsZero() && metrics.Recovered(x, f.at) {
				f.reconnected = e.Time
			}
		}
	case *corev1.Pod:
		if e.Type == watch.Deleted {
			delete(r.pods, x.Name)
		} else {
			r.pods[x.Name] = x
		}
	}
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

// faultOn starts following a PE hit by a fault now.
func (r *recorder) faultOn(pe string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var at metrics.Incarnation
	if p := r.pes[pe]; p != nil {
		at = metrics.IncarnationOf(p)
	}
	r.faults = append(r.faults, &peFault{pe: pe, at: at})
}

func (r *recorder) pe(name string) *v1alpha1.ProcessingElement {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pes[name]
}

func (r *recorder) pod(name string) *corev1.Pod {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pods[name]
}

// livePods returns the pods seen and not deleted.
func (r *recorder) livePods() []*corev1.Pod {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*corev1.Pod, 0, len(r.pods))
	for _, p := range r.pods {
		out = append(out, p)
	}
	return out
}

func (r *recorder) state() (submitted time.Time, failed bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.submittedAt, r.failed
}

// reconnectedAll says every fault's PE is connected again, and when the
// last one was.
func (r *recorder) reconnectedAll() (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var last time.Time
	for _, f := range r.faults {
		if f.reconnected.IsZero() {
			return time.Time{}, false
		}
		if f.reconnected.After(last) {
			last = f.reconnected
		}
	}
	return last, len(r.faults) > 0
}

func (r *recorder) allGone() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k := range r.live {
		// The namespace's root CA ConfigMap is not the Job's.
		if k != "*v1.ConfigMap/kube-root-ca.crt" {
			return false
		}
	}
	return true
}

// snapshot copies the events seen so far.
func (r *recorder) snapshot() []metrics.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]metrics.Event(nil), r.events...)
}
