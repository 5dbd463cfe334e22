package gc

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/sim/apiserver"
	"sluice.dev/sluice/sim/clock"
	"sluice.dev/sluice/sim/engine"
)

var bg = context.Background()

type world struct {
	e       *engine.Engine
	srv     *apiserver.Server
	kc      client.Client
	g       *Collector
	gone    map[string]time.Duration // "Kind/name" -> deletion seen at
	job     *v1alpha1.Job
	pes     []*v1alpha1.ProcessingElement
	leaves  map[string][]string // pe -> configmap names
	objects int
}

func scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(s)
	_ = v1alpha1.AddToScheme(s)
	return s
}

func ownerRef(o client.Object, kind string) metav1.OwnerReference {
	t := true
	return metav1.OwnerReference{APIVersion: v1alpha1.GroupVersion.String(), Kind: kind, Name: o.GetName(), UID: o.GetUID(), Controller: &t, BlockOwnerDeletion: &t}
}

// newWorld makes Job -> pes ProcessingElements -> leaves ConfigMaps each,
// and starts the collector with the given QPS.
func newWorld(t *testing.T, pes, leaves int, qps float64) *world {
	t.Helper()
	e := engine.New(3)
	ap := apiserver.DefaultParams()
	ap.ListLatencyPerObject = 0
	ap.RequestLatency, ap.RequestLatencyJitter, ap.WatchDelay = 5*time.Millisecond, 0, 2*time.Millisecond
	srv := apiserver.New(e, clock.New(e, time.Unix(0, 0)), scheme(), ap)
	w := &world{e: e, srv: srv, kc: srv.Client("kubectl"), gone: map[string]time.Duration{}, leaves: map[string][]string{}}
	for _, proto := range []client.Object{&v1alpha1.Job{}, &v1alpha1.ProcessingElement{}, &corev1.ConfigMap{}} {
		kind := fmt.Sprintf("%T", proto)
		srv.Watch(proto, func(ev apiserver.WatchEvent) {
			if ev.Type == apiserver.Deleted {
				w.gone[kind+"/"+ev.Object.GetName()] = e.Now()
			}
		})
	}
	w.job = &v1alpha1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "j"}}
	must(t, w.kc.Create(bg, w.job))
	for i := 0; i < pes; i++ {
		pe := &v1alpha1.ProcessingElement{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: fmt.Sprint("pe", i),
			OwnerReferences: []metav1.OwnerReference{ownerRef(w.job, "Job")}}}
		must(t, w.kc.Create(bg, pe))
		w.pes = append(w.pes, pe)
		for j := 0; j < leaves; j++ {
			cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: fmt.Sprintf("pe%d-cm%d", i, j),
				OwnerReferences: []metav1.OwnerReference{ownerRef(pe, "ProcessingElement")}}}
			must(t, w.kc.Create(bg, cm))
			w.leaves[pe.Name] = append(w.leaves[pe.Name], cm.Name)
		}
	}
	w.objects = 1 + pes + pes*leaves
	p := DefaultParams()
	p.QPS = qps
	w.g = New(srv, p)
	w.g.Start()
	e.RunUntil(time.Second)
	if w.g.Stats().Deleted != 0 {
		t.Fatalf("collector deleted %d objects of a healthy tree", w.g.Stats().Deleted)
	}
	return w
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

const (
	jobK  = "*v1alpha1.Job/"
	peK   = "*v1alpha1.ProcessingElement/"
	leafK = "*v1.ConfigMap/"
)

// remaining counts stored objects of the tree's kinds.
func (w *world) remaining() int {
	return w.srv.Count(v1alpha1.GroupVersion.WithKind("Job")) + w.srv.Count(v1alpha1.GroupVersion.WithKind("ProcessingElement")) +
		w.srv.Count(corev1.SchemeGroupVersion.WithKind("ConfigMap"))
}

// runUntilEmpty runs until every object of the tree is gone from the store
// and its deletion has been seen on a watch (a write is applied to the store
// when the collector makes it but is visible only after the collector's
// accumulated request time, rate-limit waits included). It returns when the
// last deletion was seen.
func (w *world) runUntilEmpty(t *testing.T, limit time.Duration) time.Duration {
	t.Helper()
	if w.e.RunWhile(func() bool { return w.remaining() > 0 || len(w.gone) < w.objects }, limit) {
		t.Fatalf("%d objects left, %d deletions seen at %v (gc stats %+v)", w.remaining(), len(w.gone), w.e.Now(), w.g.Stats())
	}
	return w.e.Now()
}

func TestBackgroundCascade(t *testing.T) {
	w := newWorld(t, 10, 5, 20)
	t0, reqs0 := w.e.Now(), w.g.Requests()
	must(t, w.kc.Delete(bg, w.job, client.PropagationPolicy(metav1.DeletePropagationBackground)))
	w.runUntilEmpty(t, time.Minute)
	// Top-down: the owner goes first, each dependent after its owner.
	last := time.Duration(0)
	for _, pe := range w.pes {
		if w.gone[peK+pe.Name] <= w.gone[jobK+"j"] {
			t.Fatalf("%s gone at %v, not after the job at %v", pe.Name, w.gone[peK+pe.Name], w.gone[jobK+"j"])
		}
		for _, cm := range w.leaves[pe.Name] {
			if w.gone[leafK+cm] <= w.gone[peK+pe.Name] {
				t.Fatalf("%s gone at %v, before its owner %s at %v", cm, w.gone[leafK+cm], pe.Name, w.gone[peK+pe.Name])
			}
			last = max(last, w.gone[leafK+cm])
		}
	}
	if w.gone[jobK+"j"] != t0+2*time.Millisecond {
		t.Fatalf("background: job gone at %v, want at once (+watch delay)", w.gone[jobK+"j"])
	}
	// Throughput is bounded by the collector's client: burst 30, then 20/s.
	reqs := w.g.Requests() - reqs0
	if s := w.g.Stats(); s.Deleted != uint64(w.objects-1) {
		t.Fatalf("collector deleted %d, want %d", s.Deleted, w.objects-1)
	}
	minDur := time.Duration(float64(reqs-30) / 20 * float64(time.Second))
	if took := last - t0; took < minDur || took > minDur+2*time.Second {
		t.Fatalf("cascade of %d objects with %d requests took %v; rate limit implies at least %v", w.objects-1, reqs, took, minDur)
	}
	t.Logf("background: %d dependents, %d requests, %v", w.objects-1, reqs, last-t0)
}

func TestCascadeWithoutRateLimitIsLatencyBound(t *testing.T) {
	w := newWorld(t, 10, 5, 0) // QPS 0 = unlimited
	t0 := w.e.Now()
	must(t, w.kc.Delete(bg, w.job))
	end := w.runUntilEmpty(t, time.Minute)
	// Two levels, each a few requests of 5ms plus watch delays: well under 200ms.
	if end-t0 > 200*time.Millisecond {
		t.Fatalf("unlimited cascade took %v", end-t0)
	}
}

func TestForegroundCascade(t *testing.T) {
	w := newWorld(t, 6, 4, 20)
	t0 := w.e.Now()
	must(t, w.kc.Delete(bg, w.job, client.PropagationPolicy(metav1.DeletePropagationForeground)))
	// While dependents exist, the job stays with its finalizer and deletionTimestamp.
	w.e.RunUntil(t0 + 100*time.Millisecond)
	var j v1alpha1.Job
	must(t, w.kc.Get(bg, client.ObjectKeyFromObject(w.job), &j))
	if j.DeletionTimestamp == nil || len(j.Finalizers) != 1 || j.Finalizers[0] != apiserver.FinalizerForeground {
		t.Fatalf("job during foreground deletion: %v %v", j.DeletionTimestamp, j.Finalizers)
	}
	w.runUntilEmpty(t, time.Minute)
	// Bottom-up: every leaf before its PE, every PE before the job.
	for _, pe := range w.pes {
		for _, cm := range w.leaves[pe.Name] {
			if w.gone[leafK+cm] >= w.gone[peK+pe.Name] {
				t.Fatalf("%s gone at %v, not before its owner %s at %v", cm, w.gone[leafK+cm], pe.Name, w.gone[peK+pe.Name])
			}
		}
		if w.gone[peK+pe.Name] >= w.gone[jobK+"j"] {
			t.Fatalf("%s gone at %v, not before the job at %v", pe.Name, w.gone[peK+pe.Name], w.gone[jobK+"j"])
		}
	}
	if w.gone[jobK+"j"]-t0 < 500*time.Millisecond {
		t.Fatalf("foreground deletion of %d objects finished in %v: faster than the client's rate allows", w.objects, w.gone[jobK+"j"]-t0)
	}
	t.Logf("foreground: %d objects, %d requests, job gone after %v", w.objects, w.g.Requests(), w.gone[jobK+"j"]-t0)
}

func TestOrphan(t *testing.T) {
	w := newWorld(t, 3, 2, 20)
	must(t, w.kc.Delete(bg, w.job, client.PropagationPolicy(metav1.DeletePropagationOrphan)))
	w.e.RunUntil(w.e.Now() + 10*time.Second)
	if err := w.kc.Get(bg, client.ObjectKeyFromObject(w.job), &v1alpha1.Job{}); !apierrors.IsNotFound(err) {
		t.Fatalf("orphaning owner still there: %v", err)
	}
	for _, pe := range w.pes {
		var got v1alpha1.ProcessingElement
		must(t, w.kc.Get(bg, client.ObjectKeyFromObject(pe), &got))
		if len(got.OwnerReferences) != 0 {
			t.Fatalf("%s keeps owner refs %v", pe.Name, got.OwnerReferences)
		}
		for _, cm := range w.leaves[pe.Name] {
			var c corev1.ConfigMap
			must(t, w.kc.Get(bg, client.ObjectKey{Namespace: "ns", Name: cm}, &c))
			if len(c.OwnerReferences) != 1 || c.OwnerReferences[0].UID != pe.UID {
				t.Fatalf("%s lost its own owner: %v", cm, c.OwnerReferences)
			}
		}
	}
	if s := w.g.Stats(); s.Deleted != 0 || s.Orphaned != 3 {
		t.Fatalf("stats %+v", s)
	}
}

func TestSolidOwnerKeepsDependent(t *testing.T) {
	w := newWorld(t, 2, 0, 20)
	// A ConfigMap owned by both PEs survives the deletion of one of them and
	// loses the reference to it.
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "shared",
		OwnerReferences: []metav1.OwnerReference{ownerRef(w.pes[0], "ProcessingElement"), ownerRef(w.pes[1], "ProcessingElement")}}}
	must(t, w.kc.Create(bg, cm))
	// And one whose owner never existed is collected.
	orphanUID := metav1.OwnerReference{APIVersion: v1alpha1.GroupVersion.String(), Kind: "ProcessingElement", Name: "ghost", UID: "no-such-uid"}
	stray := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "stray", OwnerReferences: []metav1.OwnerReference{orphanUID}}}
	must(t, w.kc.Create(bg, stray))
	w.e.RunUntil(w.e.Now() + time.Second)
	must(t, w.kc.Delete(bg, w.pes[0]))
	w.e.RunUntil(w.e.Now() + 5*time.Second)
	var got corev1.ConfigMap
	must(t, w.kc.Get(bg, client.ObjectKeyFromObject(cm), &got))
	if len(got.OwnerReferences) != 1 || got.OwnerReferences[0].UID != w.pes[1].UID {
		t.Fatalf("shared dependent refs %v", got.OwnerReferences)
	}
	if err := w.kc.Get(bg, client.ObjectKeyFromObject(stray), &got); !apierrors.IsNotFound(err) {
		t.Fatalf("dependent of a never-existing owner not collected: %v", err)
	}
}

func TestRestartedCollectorFinishesCascade(t *testing.T) {
	w := newWorld(t, 5, 4, 20)
	must(t, w.kc.Delete(bg, w.job))
	w.e.RunUntil(w.e.Now() + 50*time.Millisecond)
	w.g.Stop() // kube-controller-manager crashes mid-cascade
	w.e.RunUntil(w.e.Now() + 10*time.Second)
	if w.remaining() == 0 {
		t.Fatal("cascade finished although the collector was stopped early")
	}
	stuck := w.remaining()
	w.e.RunUntil(w.e.Now() + 10*time.Second)
	if w.remaining() != stuck {
		t.Fatal("a stopped collector kept deleting")
	}
	w.g.Start() // rebuilds its graph from a fresh list
	w.runUntilEmpty(t, w.e.Now()+time.Minute)
}
