package scheduler

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"sluice.dev/sluice/sim/apiserver"
	"sluice.dev/sluice/sim/clock"
	"sluice.dev/sluice/sim/engine"
)

func newAPI(seed uint64) (*engine.Engine, *apiserver.Server, client.Client) {
	e := engine.New(seed)
	clk := clock.New(e, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	api := apiserver.New(e, clk, clientgoscheme.Scheme, apiserver.DefaultParams())
	return e, api, api.Client("test")
}

func create(t *testing.T, c client.Client, obj client.Object) {
	t.Helper()
	if err := c.Create(context.Background(), obj); err != nil {
		t.Fatal(err)
	}
}

func get(t *testing.T, c client.Client, name string) *corev1.Pod {
	t.Helper()
	var p corev1.Pod
	if err := c.Get(context.Background(), client.ObjectKey{Namespace: "ns", Name: name}, &p); err != nil {
		t.Fatal(err)
	}
	return &p
}

func scheduledCond(p *corev1.Pod) *corev1.PodCondition {
	for i := range p.Status.Conditions {
		if p.Status.Conditions[i].Type == corev1.PodScheduled {
			return &p.Status.Conditions[i]
		}
	}
	return nil
}

func TestUnschedulableThenRetriedOnNodeAdd(t *testing.T) {
	e, api, c := newAPI(1)
	for _, n := range []string{"n1", "n2", "n3"} {
		create(t, c, mkNode(n, "1", "4Gi", nil))
	}
	s := New(api, DefaultParams())
	p := mkPod("big", "2", "1Gi", nil)
	p.UID = ""
	create(t, c, p)
	e.RunUntil(10 * time.Second)
	got := get(t, c, "big")
	cond := scheduledCond(got)
	want := "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod."
	if got.Spec.NodeName != "" || cond == nil || cond.Status != corev1.ConditionFalse || cond.Reason != "Unschedulable" || cond.Message != want {
		t.Fatalf("pod %q cond %+v", got.Spec.NodeName, cond)
	}
	if n := len(s.Events()); n != 1 {
		t.Fatalf("%d attempts without a cluster change, want 1 (no busy retry)", n)
	}
	// A heartbeat-like node update does not retry; a new node does.
	addAt := e.Now()
	create(t, c, mkNode("n4", "4", "8Gi", nil))
	e.RunUntil(addAt + 2*time.Second)
	got = get(t, c, "big")
	if got.Spec.NodeName != "n4" {
		t.Fatalf("after node add: bound to %q; events %+v", got.Spec.NodeName, s.Events())
	}
	last := s.Events()[len(s.Events())-1]
	if last.At < addAt || last.At > addAt+100*time.Millisecond {
		t.Fatalf("retry at %v, node added at %v", last.At, addAt)
	}
	// The binding sets PodScheduled=True. (sim/apiserver currently appends
	// it next to the scheduler's False instead of replacing it; reported.)
	bound := false
	for _, c := range got.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionTrue {
			bound = true
		}
	}
	if !bound {
		t.Fatalf("no PodScheduled=True after binding: %+v", got.Status.Conditions)
	}
}

func TestRetryOnPodDeleteAndFlush(t *testing.T) {
	e, api, c := newAPI(2)
	create(t, c, mkNode("n1", "2", "4Gi", nil))
	s := New(api, DefaultParams())
	a := mkPod("a", "1500m", "", nil)
	a.UID = ""
	create(t, c, a)
	e.RunUntil(time.Second)
	if get(t, c, "a").Spec.NodeName != "n1" {
		t.Fatal("a not bound")
	}
	b := mkPod("b", "1", "", nil)
	b.UID = ""
	create(t, c, b)
	e.RunUntil(2 * time.Second)
	if get(t, c, "b").Spec.NodeName != "" {
		t.Fatal("b bound although it does not fit")
	}
	firstFail := s.Events()[len(s.Events())-1].At

	// With no cluster event, the leftover flush retries b after 5 min
	// (checked every 30 s), not before.
	e.RunUntil(firstFail + 6*time.Minute)
	var retries []time.Duration
	for _, ev := range s.Events() {
		if ev.Pod.Name == "b" && ev.At > firstFail {
			retries = append(retries, ev.At)
		}
	}
	if len(retries) != 1 || retries[0] < firstFail+5*time.Minute || retries[0] > firstFail+5*time.Minute+30*time.Second {
		t.Fatalf("flush retries at %v, first failure %v", retries, firstFail)
	}

	// Deleting a (no kubelet here: force it with grace 0) frees the cpu.
	delAt := e.Now()
	zero := int64(0)
	if err := c.Delete(context.Background(), get(t, c, "a"), &client.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}
	e.RunUntil(delAt + 15*time.Second)
	if n := get(t, c, "b").Spec.NodeName; n != "n1" {
		t.Fatalf("b on %q after a was deleted", n)
	}
	// b had failed twice: its back-off (2 s) had long expired, so the retry
	// follows the delete event directly.
	last := s.Events()[len(s.Events())-1]
	if last.Node != "n1" || last.At > delAt+100*time.Millisecond {
		t.Fatalf("last attempt %+v, delete at %v", last, delAt)
	}
}

func TestBackoffDoublesToCap(t *testing.T) {
	p := DefaultParams()
	var got []time.Duration
	for i := 1; i <= 6; i++ {
		got = append(got, p.Backoff(i))
	}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 10 * time.Second, 10 * time.Second}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("backoff %v, want %v", got, want)
		}
	}
}

func TestOneCycleAtATime(t *testing.T) {
	e, api, c := newAPI(3)
	create(t, c, mkNode("n1", "64", "64Gi", nil))
	s := New(api, DefaultParams())
	for _, n := range []string{"p1", "p2", "p3", "p4", "p5"} {
		p := mkPod(n, "100m", "", nil)
		p.UID = ""
		create(t, c, p)
	}
	e.RunUntil(time.Second)
	ev := s.Events()
	if len(ev) != 5 {
		t.Fatalf("%d attempts", len(ev))
	}
	cost := DefaultParams().CycleCost.D()
	for i := 1; i < len(ev); i++ {
		if ev[i].At-ev[i-1].At < cost {
			t.Fatalf("cycles %v and %v overlap (cost %v)", ev[i-1].At, ev[i].At, cost)
		}
		if !strings.HasPrefix(ev[i].Pod.Name, "p") || ev[i].Pod.Name < ev[i-1].Pod.Name {
			t.Fatalf("not FIFO: %v after %v", ev[i].Pod.Name, ev[i-1].Pod.Name)
		}
	}
}

func TestRetryOnNodeLabelUpdateAndNotReadyTaint(t *testing.T) {
	e, api, c := newAPI(4)
	create(t, c, mkNode("n1", "4", "8Gi", nil))
	create(t, c, mkNode("n2", "4", "8Gi", nil))
	s := New(api, DefaultParams())
	p := mkPod("p", "100m", "", nil)
	p.UID = ""
	p.Spec.NodeSelector = map[string]string{"pool": "fast"}
	create(t, c, p)
	e.RunUntil(10 * time.Second)
	if get(t, c, "p").Spec.NodeName != "" {
		t.Fatal("scheduled without a matching node")
	}
	attempts := len(s.Events())
	// A heartbeat-like status change does not retry the pod.
	var n corev1.Node
	_ = c.Get(context.Background(), client.ObjectKey{Name: "n2"}, &n)
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}
	if err := c.Status().Update(context.Background(), &n); err != nil {
		t.Fatal(err)
	}
	e.RunUntil(20 * time.Second)
	if len(s.Events()) != attempts {
		t.Fatalf("retried on a status-only node update")
	}
	// Labelling n2 makes it fit: retried and bound.
	_ = c.Get(context.Background(), client.ObjectKey{Name: "n2"}, &n)
	n.Labels["pool"] = "fast"
	if err := c.Update(context.Background(), &n); err != nil {
		t.Fatal(err)
	}
	e.RunUntil(22 * time.Second)
	if got := get(t, c, "p").Spec.NodeName; got != "n2" {
		t.Fatalf("after labelling: on %q", got)
	}

	// A NotReady node carries node.kubernetes.io/unreachable:NoSchedule;
	// the default 300 s NoExecute toleration does not let pods on.
	_ = c.Get(context.Background(), client.ObjectKey{Name: "n1"}, &n)
	n.Spec.Taints = []corev1.Taint{{Key: "node.kubernetes.io/unreachable", Effect: corev1.TaintEffectNoSchedule}, {Key: "node.kubernetes.io/unreachable", Effect: corev1.TaintEffectNoExecute}}
	_ = c.Update(context.Background(), &n)
	_ = c.Get(context.Background(), client.ObjectKey{Name: "n2"}, &n)
	n.Spec.Unschedulable = true
	_ = c.Update(context.Background(), &n)
	e.RunUntil(23 * time.Second)
	secs := int64(300)
	q := mkPod("q", "100m", "", nil)
	q.UID = ""
	q.Spec.Tolerations = []corev1.Toleration{{Key: "node.kubernetes.io/unreachable", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: &secs}}
	create(t, c, q)
	e.RunUntil(30 * time.Second)
	got := get(t, c, "q")
	want := "0/2 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/unreachable: }, 1 node(s) were unschedulable." +
		" preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
	if c := scheduledCond(got); got.Spec.NodeName != "" || c == nil || c.Message != want {
		t.Fatalf("q on %q: %+v", got.Spec.NodeName, c)
	}
}
