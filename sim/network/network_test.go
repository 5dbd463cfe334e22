package network

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"sluice.dev/sluice/sim/apiserver"
	"sluice.dev/sluice/sim/clock"
	"sluice.dev/sluice/sim/engine"
)

func setup(t *testing.T) (*engine.Engine, client.Client, *Network) {
	e := engine.New(5)
	clk := clock.New(e, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	api := apiserver.New(e, clk, clientgoscheme.Scheme, apiserver.DefaultParams())
	return e, api.Client("test"), New(api, DefaultParams())
}

func mkPod(t *testing.T, c client.Client, name, node string, lbl map[string]string) {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", Labels: lbl}, Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c"}}}}
	if err := c.Create(context.Background(), p); err != nil {
		t.Fatal(err)
	}
}

func setReady(t *testing.T, c client.Client, name string, ready bool) {
	var p corev1.Pod
	if err := c.Get(context.Background(), client.ObjectKey{Namespace: "ns", Name: name}, &p); err != nil {
		t.Fatal(err)
	}
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	p.Status.PodIP = "10.244.1.2"
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: st}}
	if err := c.Status().Update(context.Background(), &p); err != nil {
		t.Fatal(err)
	}
}

func k(name string) types.NamespacedName { return types.NamespacedName{Namespace: "ns", Name: name} }

func TestPathsByPlacement(t *testing.T) {
	e, c, n := setup(t)
	mkPod(t, c, "a", "n1", nil)
	mkPod(t, c, "b", "n1", nil)
	mkPod(t, c, "x", "n2", nil)
	mkPod(t, c, "pending", "", nil)
	e.RunUntil(time.Second)
	cases := map[Kind]Path{Fused: n.Path(k("a"), k("a")), SameNode: n.Path(k("a"), k("b")), CrossNode: n.Path(k("a"), k("x")), Unreachable: n.Path(k("a"), k("pending"))}
	for want, p := range cases {
		if p.Kind != want {
			t.Fatalf("path kind %v, want %v", p.Kind, want)
		}
	}
	f, s, x := cases[Fused], cases[SameNode], cases[CrossNode]
	if !(f.Mean() < s.Mean() && s.Mean() < x.Mean()) || !(f.Bandwidth > s.Bandwidth && s.Bandwidth > x.Bandwidth) {
		t.Fatalf("fused %+v same %+v cross %+v", f, s, x)
	}
	// Samples: never below the base, mean as documented, and a tail.
	r := rand.New(rand.NewPCG(1, 2))
	var sum, maxS time.Duration
	const N = 20000
	for i := 0; i < N; i++ {
		v := x.Sample(r)
		if v < x.Latency {
			t.Fatalf("sample %v below base %v", v, x.Latency)
		}
		sum += v
		maxS = max(maxS, v)
	}
	mean := sum / N
	if d := mean - x.Mean(); d > x.Mean()/50 || d < -x.Mean()/50 {
		t.Fatalf("sample mean %v, model mean %v", mean, x.Mean())
	}
	if maxS < x.Latency*2 {
		t.Fatalf("no tail: max %v", maxS)
	}
	if got := x.Transfer(1_200_000); got != time.Millisecond {
		t.Fatalf("1.2 MB cross-node transfer %v, want 1ms", got)
	}
}

func TestEndpointProgramming(t *testing.T) {
	e, c, n := setup(t)
	p := DefaultParams()
	wd := apiserver.DefaultParams().WatchDelay
	var programmed []time.Duration
	n.OnProgrammed = func(types.NamespacedName) { programmed = append(programmed, e.Now()) }
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "pe-0", Namespace: "ns"}, Spec: corev1.ServiceSpec{Selector: map[string]string{"pe": "0"}}}
	if err := c.Create(context.Background(), svc); err != nil {
		t.Fatal(err)
	}
	mkPod(t, c, "pod0", "n1", map[string]string{"pe": "0"})
	e.RunUntil(5 * time.Millisecond)
	if n.Resolvable(k("pe-0")) {
		t.Fatal("DNS resolves before CoreDNS saw the Service")
	}
	e.RunUntil(10 * time.Second)
	if !n.Resolvable(k("pe-0")) || len(n.Backends(k("pe-0"))) != 0 {
		t.Fatalf("resolvable %v backends %v (pod not ready)", n.Resolvable(k("pe-0")), n.Backends(k("pe-0")))
	}
	t0 := e.Now()
	setReady(t, c, "pod0", true)
	e.RunUntil(t0 + 5*time.Second)
	want := t0 + wd + p.EndpointSliceDelay.D() + p.KubeProxySyncDuration.D()
	if len(programmed) != 1 || programmed[0] != want || len(n.Backends(k("pe-0"))) != 1 {
		t.Fatalf("programmed at %v, want %v; backends %v", programmed, want, n.Backends(k("pe-0")))
	}
	// Unready soon after: kube-proxy waits for its min sync period.
	t1 := e.Now()
	setReady(t, c, "pod0", false)
	e.RunUntil(t1 + 5*time.Second)
	if len(programmed) != 2 || len(n.Backends(k("pe-0"))) != 0 {
		t.Fatalf("after unready: %v %v", programmed, n.Backends(k("pe-0")))
	}
	// t1 is 5 s after the previous sync, so no wait here; now two changes
	// within a second: the second waits for minSyncPeriod.
	t2 := e.Now()
	setReady(t, c, "pod0", true)
	e.RunUntil(t2 + 100*time.Millisecond)
	setReady(t, c, "pod0", false)
	e.RunUntil(t2 + 5*time.Second)
	if len(programmed) != 4 {
		t.Fatalf("programmed %v", programmed)
	}
	firstSync := programmed[2] - p.KubeProxySyncDuration.D()
	if programmed[3] != firstSync+p.KubeProxyMinSyncPeriod.D()+p.KubeProxySyncDuration.D() {
		t.Fatalf("second sync at %v, first at %v: min sync period not kept", programmed[3], firstSync)
	}
}

func TestHeadlessServiceViaDNS(t *testing.T) {
	e, c, n := setup(t)
	p := DefaultParams()
	wd := apiserver.DefaultParams().WatchDelay
	var programmed []time.Duration
	n.OnProgrammed = func(types.NamespacedName) { programmed = append(programmed, e.Now()) }
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "pe-0", Namespace: "ns"},
		Spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, PublishNotReadyAddresses: true, Selector: map[string]string{"pe": "0"}}}
	if err := c.Create(context.Background(), svc); err != nil {
		t.Fatal(err)
	}
	mkPod(t, c, "pod0", "n1", map[string]string{"pe": "0"})
	e.RunUntil(time.Second)
	t0 := e.Now()
	setReady(t, c, "pod0", false) // an IP is enough with publishNotReadyAddresses
	e.RunUntil(t0 + 10*time.Second)
	want := t0 + wd + p.EndpointSliceDelay.D() + p.DNSRecordDelay.D()
	if len(programmed) != 1 || programmed[0] != want {
		t.Fatalf("headless programmed at %v, want %v (no kube-proxy)", programmed, want)
	}
	// The pod goes away: clients may hold the old answer for up to the TTL.
	t1 := e.Now()
	var pod corev1.Pod
	_ = c.Get(context.Background(), client.ObjectKey{Namespace: "ns", Name: "pod0"}, &pod)
	_ = c.Delete(context.Background(), &pod)
	e.RunUntil(t1 + 10*time.Second)
	base := t1 + wd + p.EndpointSliceDelay.D() + p.DNSRecordDelay.D()
	if len(programmed) != 2 || programmed[1] < base || programmed[1] > base+p.DNSCacheTTL.D() {
		t.Fatalf("removal seen at %v, want within [%v, %v]", programmed, base, base+p.DNSCacheTTL.D())
	}
}

func TestHeadlessChangesApplyInOrder(t *testing.T) {
	for seed := uint64(0); seed < 20; seed++ {
		e := engine.New(seed)
		clk := clock.New(e, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
		api := apiserver.New(e, clk, clientgoscheme.Scheme, apiserver.DefaultParams())
		c := api.Client("t")
		n := New(api, DefaultParams())
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "pe", Namespace: "ns"},
			Spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, PublishNotReadyAddresses: true, Selector: map[string]string{"pe": "1"}}}
		_ = c.Create(context.Background(), svc)
		mkPod(t, c, "old", "n1", map[string]string{"pe": "1"})
		e.RunUntil(time.Second)
		setReady(t, c, "old", true)
		e.RunUntil(10 * time.Second)
		// The old pod goes, a new one comes 300 ms later.
		var p corev1.Pod
		_ = c.Get(context.Background(), client.ObjectKey{Namespace: "ns", Name: "old"}, &p)
		_ = c.Delete(context.Background(), &p)
		e.RunUntil(e.Now() + 300*time.Millisecond)
		mkPod(t, c, "new", "n2", map[string]string{"pe": "1"})
		e.RunUntil(e.Now() + 10*time.Millisecond)
		setReady(t, c, "new", true)
		e.RunUntil(e.Now() + 20*time.Second)
		if b := n.Backends(k("pe")); len(b) != 1 || b[0].Name != "new" {
			t.Fatalf("seed %d: backends %v, want the new pod", seed, b)
		}
	}
}
