package nodelifecycle

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"sluice.dev/sluice/sim/apiserver"
	"sluice.dev/sluice/sim/clock"
	"sluice.dev/sluice/sim/engine"
)

type rig struct {
	e   *engine.Engine
	api *apiserver.Server
	c   client.Client
	hb  map[string]*Heartbeat
	nc  *Controller
	ev  *Evictor
}

func newRig(t *testing.T, nodes int) *rig {
	e := engine.New(7)
	clk := clock.New(e, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	api := apiserver.New(e, clk, clientgoscheme.Scheme, apiserver.DefaultParams())
	r := &rig{e: e, api: api, c: api.Client("test"), hb: map[string]*Heartbeat{}}
	now := metav1.NewTime(clk.Now())
	for i := 1; i <= nodes; i++ {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("n%d", i)}, Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{
			Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", LastHeartbeatTime: now, LastTransitionTime: now,
		}}}}
		if err := r.c.Create(context.Background(), n); err != nil {
			t.Fatal(err)
		}
	}
	p := DefaultParams()
	for i := 1; i <= nodes; i++ {
		name := fmt.Sprintf("n%d", i)
		r.hb[name] = NewHeartbeat(api, p, name)
	}
	r.nc = NewController(api, p)
	r.ev = NewEvictor(api, p)
	return r
}

func (r *rig) pod(t *testing.T, name, node string, tols ...corev1.Toleration) {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns"},
		Spec: corev1.PodSpec{NodeName: node, Tolerations: tols, Containers: []corev1.Container{{Name: "c"}}}}
	if err := r.c.Create(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	// No kubelet here: mark the pod ready as one would have.
	p.Status.Phase = corev1.PodRunning
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	if err := r.c.Status().Update(context.Background(), p); err != nil {
		t.Fatal(err)
	}
}

func (r *rig) podReady(name string) bool {
	var p corev1.Pod
	_ = r.c.Get(context.Background(), client.ObjectKey{Namespace: "ns", Name: name}, &p)
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func (r *rig) node(name string) *corev1.Node {
	var n corev1.Node
	_ = r.c.Get(context.Background(), client.ObjectKey{Name: name}, &n)
	return &n
}

func TestStoppedNodeNotReadyThenEvicted(t *testing.T) {
	r := newRig(t, 3)
	secs := int64(30)
	r.pod(t, "default", "n2")
	r.pod(t, "short", "n2", corev1.Toleration{Key: TaintUnreachable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: &secs})
	r.pod(t, "forever", "n2", corev1.Toleration{Key: TaintUnreachable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute})
	r.pod(t, "elsewhere", "n1")
	r.e.RunUntil(100 * time.Second)
	if len(r.nc.Transitions()) != 0 {
		t.Fatalf("healthy nodes changed state: %+v", r.nc.Transitions())
	}
	r.hb["n2"].Stop()
	last := r.hb["n2"].LastBeat
	r.e.RunUntil(last + 10*time.Minute)

	var notReady time.Duration
	for _, tr := range r.nc.Transitions() {
		if tr.Node == "n2" && tr.Status == corev1.ConditionUnknown && notReady == 0 {
			notReady = tr.At
		}
		if tr.Node != "n2" {
			t.Fatalf("other node changed: %+v", tr)
		}
	}
	grace := DefaultParams().NodeMonitorGracePeriod.D()
	period := DefaultParams().NodeMonitorPeriod.D()
	wd := apiserver.DefaultParams().WatchDelay
	// Unknown at the first monitor pass after grace since the heartbeat was seen.
	if notReady <= last+grace || notReady > last+wd+grace+period {
		t.Fatalf("NotReady at %v, last heartbeat %v (grace %v, period %v)", notReady, last, grace, period)
	}
	if r.podReady("default") || r.podReady("forever") || !r.podReady("elsewhere") {
		t.Fatal("pods of the NotReady node still Ready, or a healthy node's pod not")
	}
	n := r.node("n2")
	if c := n.Status.Conditions; readyStatus(n) != corev1.ConditionUnknown || readyCondition(n).Reason != "NodeStatusUnknown" {
		t.Fatalf("conditions %+v", c)
	}
	taints := map[string]bool{}
	for _, tt := range n.Spec.Taints {
		taints[tt.Key+":"+string(tt.Effect)] = true
	}
	if !taints["node.kubernetes.io/unreachable:NoExecute"] || !taints["node.kubernetes.io/unreachable:NoSchedule"] {
		t.Fatalf("taints %+v", n.Spec.Taints)
	}
	ev := map[string]time.Duration{}
	for _, e := range r.ev.Evictions() {
		ev[e.Pod.Name] = e.At
	}
	// The evictor sees the tainted node one watch delay after the pass.
	tainted := notReady + wd
	if ev["default"] != tainted+300*time.Second {
		t.Fatalf("default-toleration pod evicted at %v, want %v (evictions %v)", ev["default"], tainted+300*time.Second, ev)
	}
	if ev["short"] != tainted+30*time.Second {
		t.Fatalf("30 s toleration evicted at %v, want %v", ev["short"], tainted+30*time.Second)
	}
	if _, ok := ev["forever"]; ok {
		t.Fatal("pod tolerating unreachable forever was evicted")
	}
	if _, ok := ev["elsewhere"]; ok {
		t.Fatal("pod on a healthy node evicted")
	}
	// Eviction is a graceful delete: with no kubelet the pod stays Terminating.
	var p corev1.Pod
	if err := r.c.Get(context.Background(), client.ObjectKey{Namespace: "ns", Name: "default"}, &p); err != nil || p.DeletionTimestamp == nil {
		t.Fatalf("evicted pod: %v %v", err, p.DeletionTimestamp)
	}

	// Started again: Ready at its first heartbeat, taints gone.
	start := r.e.Now()
	r.hb["n2"].Start()
	r.e.RunUntil(start + time.Second)
	n = r.node("n2")
	if readyStatus(n) != corev1.ConditionTrue || len(n.Spec.Taints) != 0 {
		t.Fatalf("after start: ready %v taints %+v", readyStatus(n), n.Spec.Taints)
	}
}

func TestNoTaintingInFullDisruption(t *testing.T) {
	r := newRig(t, 3)
	r.pod(t, "p", "n1")
	r.e.RunUntil(30 * time.Second)
	for _, h := range r.hb {
		h.Stop()
	}
	r.e.RunUntil(20 * time.Minute)
	if len(r.ev.Evictions()) != 0 {
		t.Fatalf("evictions in full disruption: %+v", r.ev.Evictions())
	}
	for _, name := range []string{"n1", "n2", "n3"} {
		n := r.node(name)
		if readyStatus(n) != corev1.ConditionUnknown {
			t.Fatalf("%s ready %v", name, readyStatus(n))
		}
		for _, tt := range n.Spec.Taints {
			if tt.Effect == corev1.TaintEffectNoExecute {
				t.Fatalf("%s NoExecute-tainted in full disruption", name)
			}
		}
	}
}

func TestGracePeriodIsAParameter(t *testing.T) {
	for _, grace := range []time.Duration{40 * time.Second, 50 * time.Second} {
		e := engine.New(3)
		clk := clock.New(e, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
		api := apiserver.New(e, clk, clientgoscheme.Scheme, apiserver.DefaultParams())
		c := api.Client("t")
		now := metav1.NewTime(clk.Now())
		for _, name := range []string{"a", "b"} {
			_ = c.Create(context.Background(), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: now}}}})
		}
		p := DefaultParams()
		p.NodeMonitorGracePeriod = durationParam(grace)
		hb := NewHeartbeat(api, p, "a")
		NewHeartbeat(api, p, "b")
		nc := NewController(api, p)
		e.RunUntil(time.Minute)
		hb.Stop()
		last := hb.LastBeat
		e.RunUntil(last + 3*time.Minute)
		tr := nc.Transitions()
		if len(tr) == 0 || tr[0].At <= last+grace || tr[0].At > last+grace+p.NodeMonitorPeriod.D()+time.Millisecond*10 {
			t.Fatalf("grace %v: transitions %+v after last beat %v", grace, tr, last)
		}
	}
}

func TestDefaultTolerations(t *testing.T) {
	p := &corev1.Pod{Spec: corev1.PodSpec{Tolerations: []corev1.Toleration{{Key: TaintNotReady, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute}}}}
	AddDefaultTolerations(p, 300)
	if len(p.Spec.Tolerations) != 2 || p.Spec.Tolerations[1].Key != TaintUnreachable || *p.Spec.Tolerations[1].TolerationSeconds != 300 {
		t.Fatalf("%+v", p.Spec.Tolerations)
	}
	AddDefaultTolerations(p, 300)
	if len(p.Spec.Tolerations) != 2 {
		t.Fatal("added twice")
	}
}
