package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/peconfig"
)

func newCluster(t *testing.T, seed uint64, nodes int) *Cluster {
	t.Helper()
	c, err := New(seed, Shape{Nodes: nodes, CPU: "2", Memory: "4Gi", Images: []string{"sluice/pe:dev"}}, DefaultParams())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func podSpec(name, cpu string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{"app": name}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "main", Image: "sluice/pe:dev",
			Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu)}}}}},
	}
}

func get(t *testing.T, c *Cluster, name string) *corev1.Pod {
	t.Helper()
	var p corev1.Pod
	if err := c.Client().Get(context.Background(), client.ObjectKey{Namespace: "default", Name: name}, &p); err != nil {
		t.Fatalf("get %s: %v", name, err)
	}
	return &p
}

func ready(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func TestPodsScheduledStartedOrUnschedulable(t *testing.T) {
	c := newCluster(t, 1, 3)
	ctx := context.Background()
	for i := 0; i < 4; i++ {
		if err := c.Client().Create(ctx, podSpec(fmt.Sprintf("p%d", i), "1")); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Client().Create(ctx, podSpec("big", "3")); err != nil {
		t.Fatal(err)
	}
	c.RunFor(10 * time.Second)
	perNode := map[string]int{}
	for i := 0; i < 4; i++ {
		p := get(t, c, fmt.Sprintf("p%d", i))
		if p.Status.Phase != corev1.PodRunning || !ready(p) || p.Status.PodIP == "" {
			t.Fatalf("p%d: phase %s ready %v ip %q", i, p.Status.Phase, ready(p), p.Status.PodIP)
		}
		perNode[p.Spec.NodeName]++
	}
	if len(perNode) != 3 {
		t.Fatalf("4 pods on %d nodes (least-allocated should spread): %v", len(perNode), perNode)
	}
	big := get(t, c, "big")
	var msg string
	for _, cond := range big.Status.Conditions {
		if cond.Type == corev1.PodScheduled && cond.Status == corev1.ConditionFalse {
			msg = cond.Message
		}
	}
	want := "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod."
	if big.Spec.NodeName != "" || msg != want {
		t.Fatalf("big on %q, message %q", big.Spec.NodeName, msg)
	}
}

func TestStoppedNodeNotReadyAfter50sEvictedAfter300s(t *testing.T) {
	c := newCluster(t, 2, 3)
	ctx := context.Background()
	victim := c.Nodes()[1]
	for i := 0; i < 2; i++ {
		p := podSpec(fmt.Sprintf("v%d", i), "100m")
		p.Spec.NodeSelector = map[string]string{corev1.LabelHostname: victim}
		c.AdmitPod(p)
		if err := c.Client().Create(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	c.RunFor(2 * time.Minute)
	if p := get(t, c, "v0"); p.Spec.NodeName != victim || p.Status.Phase != corev1.PodRunning {
		t.Fatalf("v0 on %s phase %s", p.Spec.NodeName, p.Status.Phase)
	}
	if err := c.StopNode(victim); err != nil {
		t.Fatal(err)
	}
	last := c.Heartbeat(victim).LastBeat
	c.RunFor(7 * time.Minute)

	var notReady time.Duration
	for _, tr := range c.NodeLifecycle().Transitions() {
		if tr.Node == victim && tr.Status == corev1.ConditionUnknown {
			notReady = tr.At
			break
		}
	}
	p := DefaultParams().NodeLifecycle
	if d := notReady - last; d <= p.NodeMonitorGracePeriod.D() || d > p.NodeMonitorGracePeriod.D()+p.NodeMonitorPeriod.D()+10*time.Millisecond {
		t.Fatalf("NotReady %v after the last heartbeat, want 50 s plus up to one 5 s monitor period", d)
	}
	evs := c.Evictor().Evictions()
	if len(evs) != 2 {
		t.Fatalf("evictions %+v", evs)
	}
	for _, ev := range evs {
		d := ev.At - notReady
		if d < 300*time.Second || d > 300*time.Second+10*time.Millisecond {
			t.Fatalf("%s evicted %v after NotReady, want 300 s", ev.Pod, d)
		}
	}
	// The node is down, so the evicted pods stay Terminating ...
	if v := get(t, c, "v0"); v.DeletionTimestamp == nil {
		t.Fatal("evicted pod not terminating")
	}
	// ... until the node comes back and its kubelet finishes them.
	if err := c.StartNode(victim); err != nil {
		t.Fatal(err)
	}
	c.RunFor(5 * time.Second)
	var list corev1.PodList
	_ = c.Client().List(ctx, &list)
	if len(list.Items) != 0 {
		t.Fatalf("%d pods left after the node came back", len(list.Items))
	}
	var n corev1.Node
	_ = c.Client().Get(ctx, client.ObjectKey{Name: victim}, &n)
	for _, cond := range n.Status.Conditions {
		if cond.Type == corev1.NodeReady && cond.Status != corev1.ConditionTrue {
			t.Fatalf("node not Ready after start: %v", cond.Status)
		}
	}
	if len(n.Spec.Taints) != 0 {
		t.Fatalf("taints left: %v", n.Spec.Taints)
	}
}

// peJob creates what the platform would for a two-PE job (source PE ->
// sink PE): ConfigMaps, the sink's headless Service and the two pods with
// a readiness probe, placed on different nodes.
func peJob(t *testing.T, c *Cluster, rate int64) (src, sink types.NamespacedName) {
	ctx := context.Background()
	ops := []v1alpha1.Operator{
		{Name: "src", Kind: v1alpha1.KindSource, Params: &v1alpha1.OperatorParams{Rate: &rate}},
		{Name: "out", Kind: v1alpha1.KindSink},
	}
	stream := peconfig.Stream{ID: 0, From: v1alpha1.Endpoint{Operator: "src"}, To: v1alpha1.Endpoint{Operator: "out"}}
	cfgs := []*peconfig.PE{
		{Version: 1, Job: "j", Namespace: "default", Name: "j-pe-0", Index: 0, Operators: ops[:1], Streams: []peconfig.Stream{stream}},
		{Version: 1, Job: "j", Namespace: "default", Name: "j-pe-1", Index: 1, Operators: ops[1:], Streams: []peconfig.Stream{stream},
			Inputs: []peconfig.Input{{Port: 0, Operator: "out", OperatorPort: 0, Streams: []int32{0}}}},
	}
	for i, cfg := range cfgs {
		data, _ := json.Marshal(cfg)
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: cfg.Name, Namespace: "default",
			Labels: map[string]string{v1alpha1.LabelRole: v1alpha1.RolePEConfig, v1alpha1.LabelPE: cfg.Name, v1alpha1.LabelJob: "j"}},
			Data: map[string]string{v1alpha1.PEConfigKey: string(data)}}
		if err := c.Client().Create(ctx, cm); err != nil {
			t.Fatal(err)
		}
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: cfg.Name + "-pod", Namespace: "default",
				Labels: map[string]string{v1alpha1.LabelPE: cfg.Name, v1alpha1.LabelRole: v1alpha1.RolePEPod, "job": "j"}},
			Spec: corev1.PodSpec{
				NodeSelector: map[string]string{corev1.LabelHostname: c.Nodes()[i]},
				Containers: []corev1.Container{{Name: "pe", Image: "sluice/pe:dev",
					Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m")}},
					ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/readyz", Port: intstr.FromInt32(v1alpha1.PEHealthPort)}},
						PeriodSeconds: 1}}}},
		}
		c.AdmitPod(p)
		if err := c.Client().Create(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "j-pe-1", Namespace: "default"},
		Spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, PublishNotReadyAddresses: true,
			Selector: map[string]string{v1alpha1.LabelPE: "j-pe-1", v1alpha1.LabelRole: v1alpha1.RolePEPod}}}
	if err := c.Client().Create(ctx, svc); err != nil {
		t.Fatal(err)
	}
	return types.NamespacedName{Namespace: "default", Name: "j-pe-0-pod"}, types.NamespacedName{Namespace: "default", Name: "j-pe-1-pod"}
}

func TestPEPodsConnectFlowAndRecover(t *testing.T) {
	c := newCluster(t, 3, 2)
	_, sink := peJob(t, c, 5000)
	c.RunFor(20 * time.Second)
	for _, n := range []string{"j-pe-0-pod", "j-pe-1-pod"} {
		if p := get(t, c, n); !ready(p) {
			t.Fatalf("%s not ready: %+v", n, p.Status.Conditions)
		}
	}
	dp := c.DataPlane()
	now := c.Engine().Now()
	if got := dp.Delivered(now-5*time.Second, now) / 5; got < 4900 || got > 5100 {
		t.Fatalf("delivering %.0f tuples/s, want 5000", got)
	}
	// Cross-node latency: about the path's latency.
	if l := dp.LatencyQuantile(0.5, now-5*time.Second, now); l < c.Params().Network.CrossNodeLatency.D() || l > time.Millisecond {
		t.Fatalf("median latency %v", l)
	}
	// The sink PE crashes: the kubelet restarts it at once (first restart),
	// the source's writer reconnects with back-off, tuples flow again.
	crash := c.Engine().Now()
	if err := c.KillContainer(sink, "", 1); err != nil {
		t.Fatal(err)
	}
	c.RunFor(30 * time.Second)
	var resumed time.Duration
	for _, s := range dp.Samples() {
		if s.At > crash+time.Millisecond {
			resumed = s.At
			break
		}
	}
	if resumed == 0 {
		t.Fatal("flow never resumed")
	}
	gap := resumed - crash
	t.Logf("flow resumed %v after the crash", gap)
	kp := c.Params().Kubelet
	if gap < kp.ContainerStart.D()/2 || gap > 5*time.Second {
		t.Fatalf("recovery gap %v", gap)
	}
	if p := get(t, c, "j-pe-1-pod"); p.Status.ContainerStatuses[0].RestartCount != 1 || !ready(p) {
		t.Fatalf("sink pod after recovery: restarts %d ready %v", p.Status.ContainerStatuses[0].RestartCount, ready(p))
	}
}

func TestSameSeedSameTrace(t *testing.T) {
	run := func(seed uint64) []string {
		p := DefaultParams()
		p.Trace = true
		c, err := New(seed, Shape{Nodes: 3, CPU: "2", Memory: "4Gi", Images: []string{"sluice/pe:dev"}}, p)
		if err != nil {
			t.Fatal(err)
		}
		peJob(t, c, 200)
		for i := 0; i < 3; i++ {
			if err := c.Client().Create(context.Background(), podSpec(fmt.Sprintf("x%d", i), "300m")); err != nil {
				t.Fatal(err)
			}
		}
		c.RunFor(30 * time.Second)
		_ = c.KillContainer(types.NamespacedName{Namespace: "default", Name: "j-pe-1-pod"}, "", 2)
		_ = c.StopNode(c.Nodes()[2])
		c.RunFor(70 * time.Second) // past the node's NotReady
		out := append([]string(nil), c.Trace()...)
		for _, s := range c.DataPlane().Samples() {
			out = append(out, fmt.Sprintf("sample %v %v %.3f", s.At, s.Latency, s.Tuples))
		}
		return out
	}
	a, b := run(11), run(11)
	if strings.Join(a, "\n") != strings.Join(b, "\n") {
		for i := range a {
			if i >= len(b) || a[i] != b[i] {
				t.Fatalf("traces differ at line %d:\n%s\n%s", i, a[i], b[min(i, len(b)-1)])
			}
		}
		t.Fatalf("traces differ in length %d vs %d", len(a), len(b))
	}
	if len(a) < 100 {
		t.Fatalf("trace too short to mean anything: %d lines", len(a))
	}
	if strings.Join(run(12), "\n") == strings.Join(a, "\n") {
		t.Fatal("a different seed gave the same trace (jitters are not drawn from the seed)")
	}
}

// fusedPE creates a one-PE job (unlimited source fused with a map of the
// given work and a sink) pinned to a node.
func fusedPE(t *testing.T, c *Cluster, name, node string, work int32) {
	ctx := context.Background()
	ops := []v1alpha1.Operator{
		{Name: name + "-src", Kind: v1alpha1.KindSource},
		{Name: name + "-map", Kind: v1alpha1.KindMap, Params: &v1alpha1.OperatorParams{Work: &work}},
		{Name: name + "-out", Kind: v1alpha1.KindSink},
	}
	cfg := &peconfig.PE{Version: 1, Job: name, Namespace: "default", Name: name + "-pe-0", Operators: ops, Streams: []peconfig.Stream{
		{ID: 0, From: v1alpha1.Endpoint{Operator: ops[0].Name}, To: v1alpha1.Endpoint{Operator: ops[1].Name}},
		{ID: 1, From: v1alpha1.Endpoint{Operator: ops[1].Name}, To: v1alpha1.Endpoint{Operator: ops[2].Name}},
	}}
	data, _ := json.Marshal(cfg)
	if err := c.Client().Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: cfg.Name, Namespace: "default",
		Labels: map[string]string{v1alpha1.LabelRole: v1alpha1.RolePEConfig, v1alpha1.LabelPE: cfg.Name}},
		Data: map[string]string{v1alpha1.PEConfigKey: string(data)}}); err != nil {
		t.Fatal(err)
	}
	p := podSpec(cfg.Name+"-pod", "500m")
	p.Labels[v1alpha1.LabelPE] = cfg.Name
	p.Spec.NodeSelector = map[string]string{corev1.LabelHostname: node}
	if err := c.Client().Create(ctx, p); err != nil {
		t.Fatal(err)
	}
}

func TestOversubscriptionThroughputFollowsCPU(t *testing.T) {
	perTuple := func(p Params) float64 {
		d := p.DataPlane
		return d.SourceCost.D().Seconds() + d.MapCost.D().Seconds() + 200*d.MapRoundCost.D().Seconds() + d.SinkCost.D().Seconds()
	}
	for _, tc := range []struct {
		name    string
		hostCPU float64
		share   float64 // cores per PE
	}{
		{"own cores", 0, 1},          // 2 PEs per 2-core node: one core each
		{"kind shared host", 2, 0.5}, // 4 PEs on 2 host cores
	} {
		c, err := New(4, Shape{Nodes: 2, CPU: "2", Memory: "4Gi", Images: []string{"sluice/pe:dev"}, HostCPU: tc.hostCPU}, DefaultParams())
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 4; i++ {
			fusedPE(t, c, fmt.Sprintf("j%d", i), c.Nodes()[i%2], 200)
		}
		c.RunFor(5 * time.Second)
		now := c.Engine().Now()
		want := tc.share / perTuple(c.Params())
		for i := 0; i < 4; i++ {
			got := c.DataPlane().DeliveredBy(fmt.Sprintf("j%d-pe-0", i), now-2*time.Second, now) / 2
			if got < 0.98*want || got > 1.02*want {
				t.Errorf("%s: j%d delivers %.0f/s, want %.0f/s", tc.name, i, got, want)
			}
		}
	}
}
