package apiserver

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/sim/clock"
	"sluice.dev/sluice/sim/engine"
)

var ctx = context.Background()

func testScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		panic(err)
	}
	if err := v1alpha1.AddToScheme(s); err != nil {
		panic(err)
	}
	return s
}

// fixed parameters so that timings in tests are exact.
func testParams() Params {
	p := DefaultParams()
	p.RequestLatency = 10 * time.Millisecond
	p.RequestLatencyJitter = 0
	p.WatchDelay = 3 * time.Millisecond
	p.ListLatencyPerObject = 0
	p.ClientQPS = 20
	p.ClientBurst = 30
	return p
}

func newServer(t testing.TB) (*engine.Engine, *Server) {
	e := engine.New(1)
	clk := clock.New(e, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	return e, New(e, clk, testScheme(), testParams())
}

func job(name string) *v1alpha1.Job {
	return &v1alpha1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}}
}

func TestEmbeddedParamsLoad(t *testing.T) {
	p, err := LoadParams()
	if err != nil {
		t.Fatal(err)
	}
	if p.ClientQPS != 20 || p.ClientBurst != 30 || p.RequestLatency <= 0 || p.WatchDelay <= 0 || p.DefaultPodGracePeriod != 30*time.Second {
		t.Fatalf("unexpected defaults %+v", p)
	}
}

func TestCreateSetsServerFields(t *testing.T) {
	e, s := newServer(t)
	c := s.Client("test")
	e.RunUntil(90 * time.Second)
	j := job("a")
	if err := c.Create(ctx, j); err != nil {
		t.Fatal(err)
	}
	if j.UID == "" || j.ResourceVersion != "1" || j.Generation != 1 {
		t.Fatalf("server fields not set: uid=%q rv=%q gen=%d", j.UID, j.ResourceVersion, j.Generation)
	}
	if want := s.Clock().Epoch().Add(90 * time.Second); !j.CreationTimestamp.Time.Equal(want) {
		t.Fatalf("creationTimestamp %v, want %v", j.CreationTimestamp, want)
	}
	if err := c.Create(ctx, job("a")); !apierrors.IsAlreadyExists(err) {
		t.Fatalf("second create: %v", err)
	}
	withRV := job("b")
	withRV.ResourceVersion = "5"
	if err := c.Create(ctx, withRV); !apierrors.IsBadRequest(err) {
		t.Fatalf("create with resourceVersion: %v", err)
	}
	if err := c.Create(ctx, &v1alpha1.Job{ObjectMeta: metav1.ObjectMeta{Name: "nons"}}); !apierrors.IsInvalid(err) {
		t.Fatalf("create without namespace: %v", err)
	}
	g1 := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", GenerateName: "cm-"}}
	g2 := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", GenerateName: "cm-"}}
	if err := c.Create(ctx, g1); err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, g2); err != nil {
		t.Fatal(err)
	}
	if len(g1.Name) != len("cm-")+5 || g1.Name == g2.Name || g1.Generation != 0 {
		t.Fatalf("generateName gave %q and %q (generation %d)", g1.Name, g2.Name, g1.Generation)
	}
	if g1.UID == j.UID {
		t.Fatal("uids not unique")
	}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", Namespace: "ignored"}}
	if err := c.Create(ctx, node); err != nil || node.Namespace != "" {
		t.Fatalf("cluster-scoped create: err=%v ns=%q", err, node.Namespace)
	}
	var got corev1.Node
	if err := c.Get(ctx, types.NamespacedName{Name: "n1"}, &got); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(ctx, types.NamespacedName{Namespace: "ns", Name: "zz"}, &v1alpha1.Job{}); !apierrors.IsNotFound(err) {
		t.Fatalf("get missing: %v", err)
	}
}

func TestGenerationAndStatusSubresource(t *testing.T) {
	_, s := newServer(t)
	c := s.Client("test")
	j := job("a")
	j.Spec.Retry = 1
	j.Status.Phase = "Dropped" // status on create is reset for kinds with a status subresource
	if err := c.Create(ctx, j); err != nil {
		t.Fatal(err)
	}
	if j.Status.Phase != "" {
		t.Fatalf("status kept on create: %q", j.Status.Phase)
	}
	// A write that changes nothing keeps the resourceVersion.
	rv := j.ResourceVersion
	if err := c.Update(ctx, j); err != nil || j.ResourceVersion != rv {
		t.Fatalf("no-op update: err=%v rv %s -> %s", err, rv, j.ResourceVersion)
	}

	// Metadata change: no generation bump.
	j.Labels = map[string]string{"x": "y"}
	if err := c.Update(ctx, j); err != nil {
		t.Fatal(err)
	}
	if j.Generation != 1 || j.Labels["x"] != "y" {
		t.Fatalf("label update: gen=%d labels=%v", j.Generation, j.Labels)
	}

	// Status change through the main resource is ignored; no bump.
	j.Status.PEs = 7
	if err := c.Update(ctx, j); err != nil {
		t.Fatal(err)
	}
	if j.Status.PEs != 0 || j.Generation != 1 {
		t.Fatalf("status via Update: pes=%d gen=%d (want ignored, 1)", j.Status.PEs, j.Generation)
	}

	// Spec change: bump.
	j.Spec.Retry = 2
	if err := c.Update(ctx, j); err != nil {
		t.Fatal(err)
	}
	if j.Generation != 2 {
		t.Fatalf("spec update: gen=%d, want 2", j.Generation)
	}

	// Status().Update ignores spec and metadata, changes status, no bump.
	j.Status.PEs = 3
	j.Spec.Retry = 9
	j.Labels["x"] = "changed"
	if err := c.Status().Update(ctx, j); err != nil {
		t.Fatal(err)
	}
	var got v1alpha1.Job
	if err := c.Get(ctx, client.ObjectKeyFromObject(j), &got); err != nil {
		t.Fatal(err)
	}
	if got.Status.PEs != 3 || got.Spec.Retry != 2 || got.Labels["x"] != "y" || got.Generation != 2 {
		t.Fatalf("after status update: pes=%d retry=%d label=%q gen=%d", got.Status.PEs, got.Spec.Retry, got.Labels["x"], got.Generation)
	}

	// A kind without status has no status subresource.
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "cm"}}
	if err := c.Create(ctx, cm); err != nil {
		t.Fatal(err)
	}
	if err := c.Status().Update(ctx, cm); !apierrors.IsNotFound(err) {
		t.Fatalf("status update of a ConfigMap: %v", err)
	}
}

func TestOptimisticConcurrency(t *testing.T) {
	_, s := newServer(t)
	c := s.Client("test")
	j := job("a")
	if err := c.Create(ctx, j); err != nil {
		t.Fatal(err)
	}
	stale := j.DeepCopy()
	j.Spec.Retry = 1
	if err := c.Update(ctx, j); err != nil {
		t.Fatal(err)
	}
	stale.Spec.Retry = 5
	if err := c.Update(ctx, stale); !apierrors.IsConflict(err) {
		t.Fatalf("stale update: %v", err)
	}
	if err := c.Status().Update(ctx, stale); !apierrors.IsConflict(err) {
		t.Fatalf("stale status update: %v", err)
	}
	// Unconditional update (no resourceVersion) is allowed, as for CRDs.
	stale.ResourceVersion = ""
	if err := c.Update(ctx, stale); err != nil {
		t.Fatal(err)
	}
	// Optimistic-lock merge patch from a stale base conflicts; plain merge does not.
	base := j.DeepCopy() // stale now
	p := j.DeepCopy()
	p.Spec.Retry = 8
	if err := c.Patch(ctx, p, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})); !apierrors.IsConflict(err) {
		t.Fatalf("optimistic patch: %v", err)
	}
	if err := c.Patch(ctx, p, client.MergeFrom(base)); err != nil {
		t.Fatal(err)
	}
	if p.Spec.Retry != 8 || p.Generation != 4 {
		t.Fatalf("merge patch result retry=%d gen=%d", p.Spec.Retry, p.Generation)
	}
	if got := s.Stats().Conflicts; got != 3 {
		t.Fatalf("conflicts counted %d, want 3", got)
	}
	// Delete precondition.
	rv := "1"
	if err := c.Delete(ctx, p, client.Preconditions{ResourceVersion: &rv}); !apierrors.IsConflict(err) {
		t.Fatalf("delete with stale precondition: %v", err)
	}
}

func TestFinalizersAndDeletionTimestamp(t *testing.T) {
	e, s := newServer(t)
	c := s.Client("test")
	j := job("a")
	j.Finalizers = []string{"x/one", "x/two"}
	if err := c.Create(ctx, j); err != nil {
		t.Fatal(err)
	}
	e.RunUntil(5 * time.Second)
	if err := c.Delete(ctx, j); err != nil {
		t.Fatal(err)
	}
	var got v1alpha1.Job
	if err := c.Get(ctx, client.ObjectKeyFromObject(j), &got); err != nil {
		t.Fatalf("object with finalizers vanished: %v", err)
	}
	if got.DeletionTimestamp == nil || !got.DeletionTimestamp.Time.Equal(s.Clock().Now()) || got.Generation != 2 {
		t.Fatalf("deletionTimestamp=%v generation=%d", got.DeletionTimestamp, got.Generation)
	}
	// No new finalizers on a deleting object.
	got.Finalizers = append(got.Finalizers, "x/three")
	if err := c.Update(ctx, &got); !apierrors.IsForbidden(err) {
		t.Fatalf("adding a finalizer while deleting: %v", err)
	}
	got.Finalizers = []string{"x/two"}
	if err := c.Update(ctx, &got); err != nil {
		t.Fatal(err)
	}
	got.Finalizers = nil
	if err := c.Update(ctx, &got); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(ctx, client.ObjectKeyFromObject(j), &got); !apierrors.IsNotFound(err) {
		t.Fatalf("removing the last finalizer did not delete: %v", err)
	}
}

func TestPropagationFinalizers(t *testing.T) {
	_, s := newServer(t)
	c := s.Client("test")
	for _, tc := range []struct {
		policy metav1.DeletionPropagation
		want   string
	}{{metav1.DeletePropagationForeground, FinalizerForeground}, {metav1.DeletePropagationOrphan, FinalizerOrphan}} {
		j := job("j-" + string(tc.policy))
		if err := c.Create(ctx, j); err != nil {
			t.Fatal(err)
		}
		if err := c.Delete(ctx, j, client.PropagationPolicy(tc.policy)); err != nil {
			t.Fatal(err)
		}
		var got v1alpha1.Job
		if err := c.Get(ctx, client.ObjectKeyFromObject(j), &got); err != nil {
			t.Fatalf("%s: %v", tc.policy, err)
		}
		if len(got.Finalizers) != 1 || got.Finalizers[0] != tc.want || got.DeletionTimestamp == nil {
			t.Fatalf("%s: finalizers %v deletionTimestamp %v", tc.policy, got.Finalizers, got.DeletionTimestamp)
		}
	}
	j := job("bg")
	if err := c.Create(ctx, j); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(ctx, j, client.PropagationPolicy(metav1.DeletePropagationBackground)); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(ctx, client.ObjectKeyFromObject(j), &v1alpha1.Job{}); !apierrors.IsNotFound(err) {
		t.Fatalf("background delete of an object without finalizers: %v", err)
	}
}

func TestPodBindingAndGracefulDeletion(t *testing.T) {
	e, s := newServer(t)
	c := s.Client("test")
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p"}}
	if err := c.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	if pod.Status.Phase != corev1.PodPending || pod.Status.QOSClass != corev1.PodQOSBestEffort {
		t.Fatalf("pod status on create: %+v", pod.Status)
	}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}, Status: corev1.NodeStatus{Phase: corev1.NodeRunning}}
	if err := c.Create(ctx, node); err != nil || node.Status.Phase != corev1.NodeRunning {
		t.Fatalf("node status not kept on create: %v %+v", err, node.Status)
	}
	if *pod.Spec.TerminationGracePeriodSeconds != 30 || pod.Generation != 0 {
		t.Fatalf("pod defaults: grace=%d generation=%d", *pod.Spec.TerminationGracePeriodSeconds, pod.Generation)
	}
	pod.Spec.NodeName = "n1"
	if err := c.Update(ctx, pod); !apierrors.IsInvalid(err) {
		t.Fatalf("setting nodeName by update: %v", err)
	}
	pod.Spec.NodeName = ""
	if err := c.SubResource("binding").Create(ctx, pod, &corev1.Binding{Target: corev1.ObjectReference{Name: "n1"}}); err != nil {
		t.Fatal(err)
	}
	if pod.Spec.NodeName != "n1" {
		t.Fatalf("bound pod nodeName %q", pod.Spec.NodeName)
	}
	if err := c.SubResource("binding").Create(ctx, pod, &corev1.Binding{Target: corev1.ObjectReference{Name: "n2"}}); !apierrors.IsConflict(err) {
		t.Fatalf("second binding: %v", err)
	}
	e.RunUntil(10 * time.Second)
	if err := c.Delete(ctx, pod); err != nil {
		t.Fatal(err)
	}
	var got corev1.Pod
	if err := c.Get(ctx, client.ObjectKeyFromObject(pod), &got); err != nil {
		t.Fatalf("bound pod deleted at once: %v", err)
	}
	if want := s.Clock().Now().Add(30 * time.Second); got.DeletionTimestamp == nil || !got.DeletionTimestamp.Time.Equal(want) {
		t.Fatalf("graceful deletionTimestamp %v, want %v", got.DeletionTimestamp, want)
	}
	if err := c.Delete(ctx, &got, client.GracePeriodSeconds(0)); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(ctx, client.ObjectKeyFromObject(pod), &got); !apierrors.IsNotFound(err) {
		t.Fatalf("grace-0 delete left the pod: %v", err)
	}
	// An unbound pod goes at once.
	p2 := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p2"}}
	c.Create(ctx, p2)
	if err := c.Delete(ctx, p2); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(ctx, client.ObjectKeyFromObject(p2), &got); !apierrors.IsNotFound(err) {
		t.Fatalf("unbound pod not deleted at once: %v", err)
	}
}

func TestListSelectors(t *testing.T) {
	_, s := newServer(t)
	c := s.Client("test")
	for i := 0; i < 6; i++ {
		ns := "a"
		if i%2 == 1 {
			ns = "b"
		}
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("p%d", 5-i),
			Labels: map[string]string{"job": fmt.Sprint(i % 3)}}}
		if err := c.Create(ctx, pod); err != nil {
			t.Fatal(err)
		}
		if i < 2 {
			c.SubResource("binding").Create(ctx, pod, &corev1.Binding{Target: corev1.ObjectReference{Name: "n1"}})
		}
	}
	names := func(l *corev1.PodList) (out []string) {
		for _, p := range l.Items {
			out = append(out, p.Namespace+"/"+p.Name)
		}
		return out
	}
	var l corev1.PodList
	if err := c.List(ctx, &l); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(names(&l)); got != "[a/p1 a/p3 a/p5 b/p0 b/p2 b/p4]" {
		t.Fatalf("list all: %s", got)
	}
	if l.ResourceVersion != fmt.Sprint(s.ResourceVersion()) {
		t.Fatalf("list rv %q", l.ResourceVersion)
	}
	c.List(ctx, &l, client.InNamespace("a"), client.MatchingLabels{"job": "0"})
	if got := fmt.Sprint(names(&l)); got != "[a/p5]" {
		t.Fatalf("namespace+label: %s", got)
	}
	c.List(ctx, &l, client.MatchingFields{"spec.nodeName": "n1"})
	if got := fmt.Sprint(names(&l)); got != "[a/p5 b/p4]" {
		t.Fatalf("field selector: %s", got)
	}
}

func TestWatchOrderAndDelay(t *testing.T) {
	e, s := newServer(t)
	type seen struct {
		at  time.Duration
		typ string
		rv  uint64
	}
	var got []seen
	s.Watch(&v1alpha1.Job{}, func(ev WatchEvent) {
		got = append(got, seen{e.Now(), string(ev.Type), ev.ResourceVersion})
		ev.Object.SetLabels(map[string]string{"mutated": "by-watcher"}) // must not leak
	})
	slow := s.NewClient(ClientOptions{User: "mgr", Latency: true})
	direct := s.Client("kubelet")

	// A reconcile at t=0 makes two writes: 10ms each.
	slow.Begin()
	slow.Create(ctx, job("a")) // visible at 10ms
	slow.Create(ctx, job("b")) // visible at 20ms
	sess := slow.End()
	if sess.Elapsed != 20*time.Millisecond || sess.Requests != 2 {
		t.Fatalf("session %+v", sess)
	}
	// A direct write of another object at the same instant is committed
	// first (no latency): watchers see it first although its revision is
	// higher, as a real etcd would have given it the lower revision.
	direct.Create(ctx, job("c"))
	// A direct write of b (revision 4) may not overtake the slow write of b
	// (revision 2): per object, events arrive in revision order.
	var b v1alpha1.Job
	direct.Get(ctx, types.NamespacedName{Namespace: "ns", Name: "b"}, &b)
	b.Labels = map[string]string{"x": "y"}
	direct.Update(ctx, &b)
	e.RunUntil(time.Second)
	want := []seen{{3 * time.Millisecond, "ADDED", 3}, {13 * time.Millisecond, "ADDED", 1}, {23 * time.Millisecond, "ADDED", 2}, {23 * time.Millisecond, "MODIFIED", 4}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("watch events\n got %v\nwant %v", got, want)
	}
	var j v1alpha1.Job
	direct.Get(ctx, types.NamespacedName{Namespace: "ns", Name: "a"}, &j)
	if j.Labels != nil {
		t.Fatal("a watcher's mutation reached the store")
	}
	// A no-op update is no event.
	got = nil
	direct.Update(ctx, &j)
	e.RunUntil(e.Now() + time.Second)
	if len(got) != 0 {
		t.Fatalf("no-op update produced events %v", got)
	}
	// Deletion is seen with the final state.
	direct.Delete(ctx, &j)
	e.RunUntil(3 * time.Second)
	if len(got) != 1 || got[0].typ != "DELETED" || got[0].at != 2*time.Second+3*time.Millisecond {
		t.Fatalf("delete event %v", got)
	}
}

func TestClientQPSInVirtualTime(t *testing.T) {
	e, s := newServer(t)
	p := testParams()
	p.RequestLatency = 0
	s.p = p
	c := s.NewClient(ClientOptions{User: "mgr", Limited: true}) // 20 QPS, burst 30
	c.Begin()
	for i := 0; i < 50; i++ {
		if err := c.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: fmt.Sprint("cm", i)}}); err != nil {
			t.Fatal(err)
		}
	}
	sess := c.End()
	// 30 from the burst, then 20 more at 20/s: the 50th waits 1s.
	if sess.QPSWait != time.Second || sess.Elapsed != time.Second {
		t.Fatalf("50 requests: %+v, want 1s of waiting", sess)
	}
	// After 0.5s idle past the last token, 10 tokens are back.
	e.RunUntil(1500 * time.Millisecond)
	c.Begin()
	for i := 0; i < 11; i++ {
		c.Get(ctx, types.NamespacedName{Namespace: "ns", Name: "cm0"}, &corev1.ConfigMap{})
	}
	sess = c.End()
	if sess.QPSWait != 50*time.Millisecond {
		t.Fatalf("11 requests after 0.5s idle waited %v, want 50ms", sess.QPSWait)
	}
}

func TestDeterministicNamesAndLatency(t *testing.T) {
	run := func() string {
		e := engine.New(99)
		p := DefaultParams()
		s := New(e, clock.New(e, time.Unix(0, 0)), testScheme(), p)
		c := s.NewClient(ClientOptions{User: "m", Latency: true})
		c.Begin()
		var out string
		for i := 0; i < 5; i++ {
			cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", GenerateName: "x-"}}
			c.Create(ctx, cm)
			out += cm.Name + " "
		}
		return fmt.Sprint(out, c.End().Elapsed)
	}
	a, b := run(), run()
	if a != b {
		t.Fatalf("runs differ: %q vs %q", a, b)
	}
}

func BenchmarkStoreCreateGetUpdate(b *testing.B) {
	_, s := newServer(b)
	c := s.Client("bench")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: fmt.Sprint("cm", i)}, Data: map[string]string{"k": "v"}}
		if err := c.Create(ctx, cm); err != nil {
			b.Fatal(err)
		}
		if err := c.Get(ctx, client.ObjectKeyFromObject(cm), cm); err != nil {
			b.Fatal(err)
		}
		cm.Data["k"] = "w"
		if err := c.Update(ctx, cm); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(3*float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}

func TestListLatencyGrowsWithObjects(t *testing.T) {
	_, s := newServer(t)
	s.p.ListLatencyPerObject = 100 * time.Microsecond
	direct := s.Client("kubectl")
	for i := 0; i < 200; i++ {
		direct.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: fmt.Sprint("cm", i)}})
	}
	c := s.NewClient(ClientOptions{User: "m", Latency: true})
	c.Begin()
	var l corev1.ConfigMapList
	c.List(ctx, &l, client.InNamespace("ns"))
	if got := c.End().Elapsed; got != 10*time.Millisecond+200*100*time.Microsecond {
		t.Fatalf("list of 200 took %v", got)
	}
	c.Begin()
	c.List(ctx, &l, client.InNamespace("other"))
	if got := c.End().Elapsed; got != 10*time.Millisecond {
		t.Fatalf("empty list took %v", got)
	}
}

func TestTokenBucketReadyAt(t *testing.T) {
	b := NewTokenBucket(10, 2)
	if b.ReadyAt(0) != 0 {
		t.Fatal("fresh bucket not ready")
	}
	b.Reserve(0)
	b.Reserve(0)
	if got := b.ReadyAt(0); got != 100*time.Millisecond {
		t.Fatalf("empty bucket ready at %v, want 100ms", got)
	}
	if got := b.ReadyAt(time.Second); got != time.Second {
		t.Fatalf("refilled bucket ready at %v", got)
	}
	if w := b.Reserve(0); w != 100*time.Millisecond {
		t.Fatalf("third token waited %v", w)
	}
	if got := b.ReadyAt(0); got != 200*time.Millisecond {
		t.Fatalf("after a debt, ready at %v", got)
	}
}

func TestInterceptInjectsFaults(t *testing.T) {
	e, s := newServer(t)
	c := s.NewClient(ClientOptions{User: "op", Latency: true})
	var seen []string
	s.Intercept = func(r Request) error {
		seen = append(seen, fmt.Sprintf("%s %s %s/%s %s %s", r.User, r.Verb, r.Namespace, r.Name, r.GVK.Kind, r.Subresource))
		if r.Verb == "update" && r.Subresource == "status" {
			return apierrors.NewServiceUnavailable("injected")
		}
		return nil
	}
	j := job("a")
	c.Begin()
	if err := c.Create(ctx, j); err != nil {
		t.Fatal(err)
	}
	j.Status.PEs = 2
	if err := c.Status().Update(ctx, j); !apierrors.IsServiceUnavailable(err) {
		t.Fatalf("injected error not returned: %v", err)
	}
	sess := c.End()
	if sess.Requests != 2 || sess.Elapsed != 20*time.Millisecond {
		t.Fatalf("a failed request must still take time: %+v", sess)
	}
	var got v1alpha1.Job
	s.Intercept = nil
	s.Client("x").Get(ctx, client.ObjectKeyFromObject(j), &got)
	if got.Status.PEs != 0 {
		t.Fatal("failed status update was applied")
	}
	want := "[op create ns/a Job  op update ns/a Job status]"
	if fmt.Sprint(seen) != want {
		t.Fatalf("intercepted %v, want %s", seen, want)
	}
	_ = e
}

func TestParamsValidation(t *testing.T) {
	dir := t.TempDir()
	bad := dir + "/bad.yaml"
	if err := os.WriteFile(bad, []byte("requestLatencyJitter: 1.5\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadParams(bad); err == nil {
		t.Fatal("jitter 1.5 accepted")
	}
	good := dir + "/good.yaml"
	os.WriteFile(good, []byte("requestLatency: 7ms\n"), 0o644)
	p, err := LoadParams(good)
	if err != nil || p.RequestLatency != 7*time.Millisecond || p.ClientQPS != 20 {
		t.Fatalf("override: %+v %v", p, err)
	}
}

// A node-narrowed Pod watch sees exactly the changes of pods bound to its
// node (binding, updates, deletion), and all watchers of one change are
// called in the order they were registered.
func TestWatchPodsOn(t *testing.T) {
	e, s := newServer(t)
	c := s.Client("test")
	var calls []string
	s.Watch(&corev1.Pod{}, func(ev WatchEvent) { calls = append(calls, "all:"+ev.Object.GetName()+":"+string(ev.Type)) })
	s.WatchPodsOn("n1", func(ev WatchEvent) { calls = append(calls, "n1:"+ev.Object.GetName()+":"+string(ev.Type)) })
	s.Watch(&corev1.Pod{}, func(ev WatchEvent) { calls = append(calls, "all2:"+ev.Object.GetName()) })
	s.WatchPodsOn("n2", func(ev WatchEvent) { calls = append(calls, "n2:"+ev.Object.GetName()) })
	for _, name := range []string{"a", "b"} {
		if err := c.Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}}); err != nil {
			t.Fatal(err)
		}
	}
	e.RunUntil(time.Second)
	a := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "a"}}
	if err := c.SubResource("binding").Create(ctx, a, &corev1.Binding{Target: corev1.ObjectReference{Name: "n1"}}); err != nil {
		t.Fatal(err)
	}
	e.RunUntil(2 * time.Second)
	if err := c.Delete(ctx, a, client.GracePeriodSeconds(0)); err != nil {
		t.Fatal(err)
	}
	e.RunUntil(3 * time.Second)
	want := []string{"all:a:ADDED", "all2:a", "all:b:ADDED", "all2:b",
		"all:a:MODIFIED", "n1:a:MODIFIED", "all2:a",
		"all:a:DELETED", "n1:a:DELETED", "all2:a"}
	if fmt.Sprint(calls) != fmt.Sprint(want) {
		t.Fatalf("deliveries\n got %v\nwant %v", calls, want)
	}
}

// Shared watchers of a change get the one stored object; the others each
// get their own copy. A status write that changes nothing sends nothing.
func TestWatchSharedAndNoOpStatus(t *testing.T) {
	e, s := newServer(t)
	c := s.Client("test")
	var shared, copies []client.Object
	s.WatchShared(&corev1.Pod{}, func(ev WatchEvent) { shared = append(shared, ev.Object) })
	s.WatchShared(&corev1.Pod{}, func(ev WatchEvent) { shared = append(shared, ev.Object) })
	s.Watch(&corev1.Pod{}, func(ev WatchEvent) { copies = append(copies, ev.Object) })
	s.Watch(&corev1.Pod{}, func(ev WatchEvent) { copies = append(copies, ev.Object) })
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p"}}
	if err := c.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	e.RunUntil(time.Second)
	if len(shared) != 2 || shared[0] != shared[1] || len(copies) != 2 || copies[0] == copies[1] || copies[0] == shared[0] {
		t.Fatalf("shared %p, copies %p", shared, copies)
	}
	rv := p.ResourceVersion
	p.Status.Phase = corev1.PodPending // unchanged
	if err := c.Status().Update(ctx, p); err != nil || p.ResourceVersion != rv {
		t.Fatalf("no-op status update: %v, rv %s -> %s", err, rv, p.ResourceVersion)
	}
	p.Status.Message = "x"
	p.Spec.NodeName = "ignored"
	if err := c.Status().Update(ctx, p); err != nil || p.ResourceVersion == rv || p.Spec.NodeName != "" || p.Status.Message != "x" {
		t.Fatalf("status update: %v, rv %s, node %q, message %q", err, p.ResourceVersion, p.Spec.NodeName, p.Status.Message)
	}
	e.RunUntil(2 * time.Second)
	if len(shared) != 4 {
		t.Fatalf("%d shared deliveries, want 4 (create, one status change)", len(shared))
	}
	// The stored status is the server's own: changing the writer's object
	// afterwards changes nothing stored.
	p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{Type: corev1.PodReady})
	var got corev1.Pod
	_ = c.Get(ctx, client.ObjectKeyFromObject(p), &got)
	if len(got.Status.Conditions) != 0 || got.Status.Message != "x" {
		t.Fatalf("stored status %+v", got.Status)
	}
}
