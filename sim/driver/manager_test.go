package driver

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1alpha1 "sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/wiring"
	"sluice.dev/sluice/sim/apiserver"
	"sluice.dev/sluice/sim/clock"
	"sluice.dev/sluice/sim/engine"
)

var ctx = context.Background()

func testScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(s)
	_ = v1alpha1.AddToScheme(s)
	return s
}

type env struct {
	e   *engine.Engine
	srv *apiserver.Server
	kc  client.Client // direct client, the test's kubectl
	m   *Manager
	rec []Record
}

// newEnv builds a server with exact timings: 10ms per request, 2ms watch
// delay, no jitter, and a manager with the given CPU cost per reconcile.
func newEnv(t testing.TB, cpu time.Duration, cores int) *env {
	t.Helper()
	e := engine.New(1)
	clk := clock.New(e, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	ap := apiserver.DefaultParams()
	ap.ListLatencyPerObject = 0
	ap.RequestLatency, ap.RequestLatencyJitter, ap.WatchDelay = 10*time.Millisecond, 0, 2*time.Millisecond
	srv := apiserver.New(e, clk, testScheme(), ap)
	p := DefaultParams()
	p.ReconcileCPU, p.ReconcileCPUJitter, p.Cores = cpu, 0, cores
	v := &env{e: e, srv: srv, kc: srv.Client("kubectl")}
	v.m = New(srv, Options{Name: "op", Params: &p})
	v.m.OnReconcile = func(r Record) { v.rec = append(v.rec, r) }
	return v
}

// start starts the manager and runs past its cache sync (10ms), to t=1s.
func (v *env) start() time.Duration {
	v.m.Start()
	v.e.RunUntil(time.Second)
	return time.Second
}

func cm(name string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}}
}

// probe is a test reconciler: it counts calls per key, tracks how many run
// at once, and returns what its function says.
type probe struct {
	calls   map[string][]time.Duration
	e       *engine.Engine
	results func(key string, n int) (reconcile.Result, error)
}

func (p *probe) Reconcile(_ context.Context, r reconcile.Request) (reconcile.Result, error) {
	if p.calls == nil {
		p.calls = map[string][]time.Duration{}
	}
	k := r.Name
	p.calls[k] = append(p.calls[k], p.e.Now())
	if p.results != nil {
		return p.results(k, len(p.calls[k]))
	}
	return reconcile.Result{}, nil
}

func TestDedupWhileBusy(t *testing.T) {
	v := newEnv(t, 100*time.Millisecond, 0)
	pr := &probe{e: v.e}
	v.m.Add(wiring.Controller{Name: "p", For: &corev1.ConfigMap{}, Reconciler: pr})
	t0 := v.start()
	obj := cm("a")
	v.kc.Create(ctx, obj)
	v.e.RunUntil(t0 + 50*time.Millisecond) // first reconcile runs from 2ms to 102ms
	for i := 0; i < 5; i++ {
		obj.Data = map[string]string{"i": fmt.Sprint(i)}
		if err := v.kc.Update(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	v.e.RunUntil(t0 + time.Second)
	// Five updates while the key was processing collapse into one more reconcile.
	if got := pr.calls["a"]; len(got) != 2 || got[0] != t0+2*time.Millisecond || got[1] != t0+102*time.Millisecond {
		t.Fatalf("reconciles of a at %v, want [2ms 102ms]", got)
	}
}

func TestNoConcurrentReconcileOfOneKey(t *testing.T) {
	v := newEnv(t, 30*time.Millisecond, 0)
	pr := &probe{e: v.e}
	v.m.Add(wiring.Controller{Name: "p", For: &corev1.ConfigMap{}, Reconciler: pr, Workers: 4})
	v.m.Start()
	objs := []*corev1.ConfigMap{cm("a"), cm("b")}
	for _, o := range objs {
		v.kc.Create(ctx, o)
	}
	// Hammer both keys with updates every 7ms for 1s.
	for i := 1; i <= 140; i++ {
		i := i
		v.e.At(time.Duration(i)*7*time.Millisecond, func() {
			o := objs[i%2]
			o.Data = map[string]string{"i": fmt.Sprint(i)}
			v.kc.Update(ctx, o)
		})
	}
	v.e.RunUntil(2 * time.Second)
	byKey := map[string][]Record{}
	for _, r := range v.rec {
		byKey[r.Request.Name] = append(byKey[r.Request.Name], r)
	}
	overlapOtherKey := false
	for k, rs := range byKey {
		if len(rs) < 10 {
			t.Fatalf("key %s reconciled only %d times", k, len(rs))
		}
		for i := 1; i < len(rs); i++ {
			if rs[i].Start < rs[i-1].End {
				t.Fatalf("key %s: reconcile at %v started before the previous ended at %v", k, rs[i].Start, rs[i-1].End)
			}
		}
	}
	for _, a := range byKey["a"] {
		for _, b := range byKey["b"] {
			if a.Start < b.End && b.Start < a.End {
				overlapOtherKey = true
			}
		}
	}
	if !overlapOtherKey {
		t.Fatal("different keys never ran concurrently with 4 workers")
	}
}

func TestRetriesBackOff(t *testing.T) {
	v := newEnv(t, 0, 0)
	pr := &probe{e: v.e, results: func(_ string, n int) (reconcile.Result, error) {
		if n <= 4 {
			return reconcile.Result{}, errors.New("boom")
		}
		return reconcile.Result{}, nil
	}}
	v.m.Add(wiring.Controller{Name: "p", For: &corev1.ConfigMap{}, Reconciler: pr})
	t0 := v.start()
	v.kc.Create(ctx, cm("a"))
	v.e.RunUntil(10 * time.Second)
	got := pr.calls["a"]
	want := []time.Duration{2, 7, 17, 37, 77} // ms: delays 5, 10, 20, 40
	if len(got) != len(want) {
		t.Fatalf("calls at %v", got)
	}
	for i := range want {
		if got[i] != t0+want[i]*time.Millisecond {
			t.Fatalf("calls at %v, want %v ms", got, want)
		}
	}
	if s := v.m.Stats()["p"]; s.Errors != 4 || s.Reconciles != 5 {
		t.Fatalf("stats %+v", s)
	}
	// A success resets the back-off: a later failure starts again at 5ms.
	pr.results = func(_ string, n int) (reconcile.Result, error) {
		if n == 6 {
			return reconcile.Result{}, errors.New("again")
		}
		return reconcile.Result{}, nil
	}
	obj := cm("a")
	v.kc.Get(ctx, client.ObjectKeyFromObject(obj), obj)
	obj.Data = map[string]string{"x": "y"}
	v.kc.Update(ctx, obj)
	v.e.RunUntil(20 * time.Second)
	got = pr.calls["a"]
	if len(got) != 7 || got[6]-got[5] != 5*time.Millisecond {
		t.Fatalf("after reset: %v", got)
	}
	// A terminal error is not retried.
	pr.results = func(string, int) (reconcile.Result, error) {
		return reconcile.Result{}, reconcile.TerminalError(errors.New("bad spec"))
	}
	v.kc.Create(ctx, cm("t"))
	v.e.RunUntil(30 * time.Second)
	if n := len(pr.calls["t"]); n != 1 {
		t.Fatalf("terminal error retried: %d calls", n)
	}
}

func TestRequeueAfterAndRequeue(t *testing.T) {
	v := newEnv(t, 0, 0)
	pr := &probe{e: v.e, results: func(k string, n int) (reconcile.Result, error) {
		if k == "timed" && n < 4 {
			return reconcile.Result{RequeueAfter: time.Second}, nil
		}
		if k == "again" && n < 3 {
			return reconcile.Result{Requeue: true}, nil
		}
		return reconcile.Result{}, nil
	}}
	v.m.Add(wiring.Controller{Name: "p", For: &corev1.ConfigMap{}, Reconciler: pr})
	v.start()
	v.kc.Create(ctx, cm("timed"))
	v.kc.Create(ctx, cm("again"))
	v.e.RunUntil(time.Minute)
	if got := fmt.Sprint(pr.calls["timed"]); got != "[1.002s 2.002s 3.002s 4.002s]" {
		t.Fatalf("RequeueAfter: %s", got)
	}
	if got := fmt.Sprint(pr.calls["again"]); got != "[1.002s 1.007s 1.017s]" {
		t.Fatalf("Requeue: %s", got)
	}
}

func TestWorkerCountAndCPU(t *testing.T) {
	for _, tc := range []struct {
		workers, cores int
		wantMax        int
		wantEnd        time.Duration
	}{
		{workers: 3, cores: 0, wantMax: 3, wantEnd: 2*time.Millisecond + 4*100*time.Millisecond},
		{workers: 1, cores: 0, wantMax: 1, wantEnd: 2*time.Millisecond + 10*100*time.Millisecond},
		// Three workers but one core: CPU is the bottleneck.
		{workers: 3, cores: 1, wantMax: 3, wantEnd: 2*time.Millisecond + 10*100*time.Millisecond},
	} {
		v := newEnv(t, 100*time.Millisecond, tc.cores)
		v.m.Add(wiring.Controller{Name: "p", For: &corev1.ConfigMap{}, Reconciler: &probe{e: v.e}, Workers: tc.workers})
		t0 := v.start()
		for i := 0; i < 10; i++ {
			v.kc.Create(ctx, cm(fmt.Sprint("c", i)))
		}
		v.e.RunUntil(time.Minute)
		if len(v.rec) != 10 {
			t.Fatalf("%+v: %d reconciles", tc, len(v.rec))
		}
		type ev struct {
			at time.Duration
			d  int
		}
		var evs []ev
		var end time.Duration
		for _, r := range v.rec {
			evs = append(evs, ev{r.Start, 1}, ev{r.End, -1})
			end = max(end, r.End)
		}
		sort.Slice(evs, func(i, j int) bool {
			if evs[i].at != evs[j].at {
				return evs[i].at < evs[j].at
			}
			return evs[i].d < evs[j].d
		})
		cur, peak := 0, 0
		for _, x := range evs {
			cur += x.d
			peak = max(peak, cur)
		}
		if peak != tc.wantMax || end != t0+tc.wantEnd {
			t.Fatalf("%+v: peak concurrency %d, last end %v", tc, peak, end)
		}
		// Queue time: the k-th reconcile waited for the ones before it.
		var maxQueued time.Duration
		for _, r := range v.rec {
			if r.Start-r.Queued != t0+2*time.Millisecond {
				t.Fatalf("%+v: request %s queued %v before its start %v: not from its creation event", tc, r.Request.Name, r.Queued, r.Start)
			}
			maxQueued = max(maxQueued, r.Queued)
		}
		if tc.cores == 0 && maxQueued != end-t0-2*time.Millisecond-100*time.Millisecond {
			t.Fatalf("%+v: longest queue wait %v", tc, maxQueued)
		}
	}
}

func TestReadsSeeCacheAfterWatchDelay(t *testing.T) {
	v := newEnv(t, 0, 0)
	// The cache is fed by watches: a write is visible to the manager's reads
	// only WatchDelay after it is committed.
	v.m.Add(wiring.Controller{Name: "p", For: &corev1.ConfigMap{}, Reconciler: &probe{e: v.e}})
	v.start()
	v.kc.Create(ctx, cm("x"))
	c := v.m.Client()
	if err := c.Get(ctx, client.ObjectKey{Namespace: "ns", Name: "x"}, &corev1.ConfigMap{}); err == nil {
		t.Fatal("cache saw a write before the watch delay")
	}
	v.e.RunUntil(time.Second + 2*time.Millisecond)
	if err := c.Get(ctx, client.ObjectKey{Namespace: "ns", Name: "x"}, &corev1.ConfigMap{}); err != nil {
		t.Fatalf("cache after the watch delay: %v", err)
	}
	var l corev1.ConfigMapList
	if err := c.List(ctx, &l, client.InNamespace("ns")); err != nil || len(l.Items) != 1 {
		t.Fatalf("cached list: %v %d", err, len(l.Items))
	}
}

func TestRestartRelists(t *testing.T) {
	v := newEnv(t, 0, 0)
	pr := &probe{e: v.e, results: func(string, int) (reconcile.Result, error) {
		return reconcile.Result{RequeueAfter: time.Hour}, nil // pending work that a crash loses
	}}
	v.m.Add(wiring.Controller{Name: "p", For: &corev1.ConfigMap{}, Reconciler: pr})
	v.kc.Create(ctx, cm("before"))
	v.m.Start()
	v.e.RunUntil(time.Second)
	if len(pr.calls["before"]) != 1 {
		t.Fatalf("initial list not reconciled: %v", pr.calls)
	}
	v.m.Stop()
	v.kc.Create(ctx, cm("during"))
	v.e.RunUntil(2 * time.Second)
	if len(pr.calls["during"]) != 0 {
		t.Fatal("stopped manager reconciled")
	}
	v.m.Start()
	restartAt := v.e.Now()
	v.e.RunUntil(3 * time.Second)
	// Both objects reconciled after the list (10ms) completes.
	for _, k := range []string{"before", "during"} {
		got := pr.calls[k]
		if len(got) == 0 || got[len(got)-1] != restartAt+10*time.Millisecond {
			t.Fatalf("%s after restart: %v (restart at %v)", k, got, restartAt)
		}
	}
	if v.m.SyncedAt() != restartAt+10*time.Millisecond {
		t.Fatalf("SyncedAt %v", v.m.SyncedAt())
	}
	// The hour-long requeue of the first process was lost with it.
	v.e.RunUntil(2 * time.Hour)
	if n := len(pr.calls["before"]); n != 3 {
		t.Fatalf("before reconciled %d times, want 3 (initial, restart, one requeue of the new process)", n)
	}
}

func TestCrashDropsInflightCompletion(t *testing.T) {
	v := newEnv(t, time.Second, 0)
	pr := &probe{e: v.e}
	v.m.Add(wiring.Controller{Name: "p", For: &corev1.ConfigMap{}, Reconciler: pr})
	t0 := v.start()
	v.kc.Create(ctx, cm("a"))
	v.e.RunUntil(t0 + 500*time.Millisecond) // reconcile started at 2ms, ends at 1.002s
	v.m.Stop()
	v.e.RunUntil(5 * time.Second)
	if len(pr.calls["a"]) != 1 {
		t.Fatalf("reconcile did not start before the crash: %v", pr.calls)
	}
	if got := v.m.Stats()["p"].Reconciles; got != 0 {
		t.Fatalf("completion of a crashed reconcile counted: %d", got)
	}
}

// writer updates its ConfigMap once per reconcile.
type writer struct{ c client.Client }

func (w *writer) Reconcile(ctx context.Context, r reconcile.Request) (reconcile.Result, error) {
	var o corev1.ConfigMap
	if err := w.c.Get(ctx, r.NamespacedName, &o); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	if o.Data["done"] == "yes" {
		return reconcile.Result{}, nil
	}
	o.Data = map[string]string{"done": "yes"}
	return reconcile.Result{}, w.c.Update(ctx, &o)
}

func TestWorkersWaitForRateLimitTokens(t *testing.T) {
	v := newEnv(t, 0, 0)
	v.m.Add(wiring.Controller{Name: "w", For: &corev1.ConfigMap{}, Reconciler: &writer{c: v.m.Client()}, Workers: 20})
	for i := 0; i < 100; i++ {
		v.kc.Create(ctx, cm(fmt.Sprint("c", i)))
	}
	v.m.Start()
	v.e.RunUntil(time.Minute)
	var last time.Duration
	writes := 0
	for _, r := range v.rec {
		if r.QPSWait > 50*time.Millisecond {
			t.Fatalf("a reconcile waited %v for tokens: workers booked the connection ahead", r.QPSWait)
		}
		if r.Requests > 0 {
			writes++
			last = max(last, r.End)
		}
	}
	if writes != 100 {
		t.Fatalf("%d reconciles wrote, want 100", writes)
	}
	// 1 list + 100 updates at 20/s after a burst of 30: the last ends near 3.55s.
	if last < 3500*time.Millisecond || last > 3700*time.Millisecond {
		t.Fatalf("last write ended at %v", last)
	}
}
