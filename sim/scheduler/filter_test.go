package scheduler

import (
	"fmt"
	"math/rand/v2"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

func mkNode(name, cpu, mem string, lbl map[string]string, taints ...corev1.Taint) *corev1.Node {
	l := map[string]string{corev1.LabelHostname: name}
	for k, v := range lbl {
		l[k] = v
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: l},
		Spec:       corev1.NodeSpec{Taints: taints},
		Status: corev1.NodeStatus{Allocatable: corev1.ResourceList{
			corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse(mem), corev1.ResourcePods: resource.MustParse("110"),
		}},
	}
}

func mkPod(name, cpu, mem string, lbl map[string]string) *corev1.Pod {
	req := corev1.ResourceList{}
	if cpu != "" {
		req[corev1.ResourceCPU] = resource.MustParse(cpu)
	}
	if mem != "" {
		req[corev1.ResourceMemory] = resource.MustParse(mem)
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", Labels: lbl, UID: types.UID("uid-" + name)},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Resources: corev1.ResourceRequirements{Requests: req}}}},
	}
}

func infos(nodes ...*corev1.Node) []*NodeInfo {
	var out []*NodeInfo
	for _, n := range nodes {
		out = append(out, &NodeInfo{Node: n})
	}
	return out
}

func bind(n *NodeInfo, p *corev1.Pod) {
	p.Spec.NodeName = n.Node.Name
	n.Pods = append(n.Pods, p)
}

func feasibleNames(pod *corev1.Pod, ns []*NodeInfo) []string {
	var out []string
	for _, n := range ns {
		if Filter(pod, n, ns) == nil {
			out = append(out, n.Node.Name)
		}
	}
	return out
}

func TestResourceFit(t *testing.T) {
	ns := infos(mkNode("a", "2", "4Gi", nil), mkNode("b", "2", "4Gi", nil))
	bind(ns[0], mkPod("x", "1500m", "1Gi", nil))
	if got := fmt.Sprint(feasibleNames(mkPod("p", "1", "1Gi", nil), ns)); got != "[b]" {
		t.Fatalf("1 cpu fits on %s, want [b]", got)
	}
	if got := fmt.Sprint(feasibleNames(mkPod("p", "500m", "1Gi", nil), ns)); got != "[a b]" {
		t.Fatalf("500m fits on %s, want [a b]", got)
	}
	// A terminated pod no longer holds resources in the scheduler's view
	// (the model removes it from NodeInfo), so only live pods are counted.
	s := Filter(mkPod("p", "3", "5Gi", nil), ns[1], ns)
	if s == nil || fmt.Sprint(s.Reasons) != "[Insufficient cpu Insufficient memory]" || !s.Resolvable {
		t.Fatalf("status %+v", s)
	}
	// Pods count.
	small := mkNode("c", "100", "100Gi", nil)
	small.Status.Allocatable[corev1.ResourcePods] = resource.MustParse("1")
	one := infos(small)
	bind(one[0], mkPod("y", "", "", nil))
	if s := Filter(mkPod("p", "", "", nil), one[0], one); s == nil || s.Reasons[0] != ReasonTooManyPods {
		t.Fatalf("pods limit: %+v", s)
	}
}

func TestInitContainerAndOverheadRequests(t *testing.T) {
	p := mkPod("p", "200m", "", nil)
	p.Spec.InitContainers = []corev1.Container{{Name: "i", Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")}}}}
	p.Spec.Overhead = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m")}
	if r := PodRequests(p); r.MilliCPU != 1050 {
		t.Fatalf("requests %+v, want 1050m", r)
	}
}

func TestNodeSelectorAndAffinity(t *testing.T) {
	ns := infos(mkNode("a", "4", "8Gi", map[string]string{"pool": "x", "gpu": "1"}),
		mkNode("b", "4", "8Gi", map[string]string{"pool": "y"}),
		mkNode("c", "4", "8Gi", nil))
	p := mkPod("p", "", "", nil)
	p.Spec.NodeSelector = map[string]string{"pool": "y"}
	if got := fmt.Sprint(feasibleNames(p, ns)); got != "[b]" {
		t.Fatalf("nodeSelector: %s", got)
	}
	cases := []struct {
		op   corev1.NodeSelectorOperator
		key  string
		vals []string
		want string
	}{
		{corev1.NodeSelectorOpIn, "pool", []string{"x", "y"}, "[a b]"},
		{corev1.NodeSelectorOpNotIn, "pool", []string{"x"}, "[b c]"},
		{corev1.NodeSelectorOpExists, "gpu", nil, "[a]"},
		{corev1.NodeSelectorOpDoesNotExist, "pool", nil, "[c]"},
	}
	for _, c := range cases {
		p := mkPod("p", "", "", nil)
		p.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
			NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: c.key, Operator: c.op, Values: c.vals}}}},
		}}}
		if got := fmt.Sprint(feasibleNames(p, ns)); got != c.want {
			t.Errorf("%s %s: %s, want %s", c.key, c.op, got, c.want)
		}
	}
	// Terms are ORed.
	p = mkPod("p", "", "", nil)
	p.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
		NodeSelectorTerms: []corev1.NodeSelectorTerm{
			{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "gpu", Operator: corev1.NodeSelectorOpExists}}},
			{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "pool", Operator: corev1.NodeSelectorOpDoesNotExist}}},
		},
	}}}
	if got := fmt.Sprint(feasibleNames(p, ns)); got != "[a c]" {
		t.Errorf("ORed terms: %s", got)
	}
	if s := Filter(p, ns[1], ns); s == nil || s.Reasons[0] != ReasonNodeAffinity || s.Resolvable {
		t.Errorf("status %+v", s)
	}
}

func antiAffinity(key, val string) *corev1.Affinity {
	return &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{
		LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{key: val}}, TopologyKey: corev1.LabelHostname,
	}}}}
}

func TestPodAffinityAndAntiAffinity(t *testing.T) {
	ns := infos(mkNode("a", "4", "8Gi", nil), mkNode("b", "4", "8Gi", nil), mkNode("c", "4", "8Gi", nil))
	bind(ns[1], mkPod("db", "", "", map[string]string{"app": "db"}))

	aff := mkPod("p", "", "", map[string]string{"app": "web"})
	aff.Spec.Affinity = &corev1.Affinity{PodAffinity: &corev1.PodAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{
		LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}}, TopologyKey: corev1.LabelHostname,
	}}}}
	if got := fmt.Sprint(feasibleNames(aff, ns)); got != "[b]" {
		t.Fatalf("affinity: %s", got)
	}
	if s := Filter(aff, ns[0], ns); s == nil || s.Reasons[0] != ReasonPodAffinity {
		t.Fatalf("affinity status %+v", s)
	}

	anti := mkPod("q", "", "", map[string]string{"app": "web"})
	anti.Spec.Affinity = antiAffinity("app", "db")
	if got := fmt.Sprint(feasibleNames(anti, ns)); got != "[a c]" {
		t.Fatalf("anti-affinity: %s", got)
	}
	if s := Filter(anti, ns[1], ns); s == nil || s.Reasons[0] != ReasonPodAntiAffinity {
		t.Fatalf("anti status %+v", s)
	}

	// An existing pod's anti-affinity repels the incoming pod.
	guard := mkPod("guard", "", "", map[string]string{"app": "guard"})
	guard.Spec.Affinity = antiAffinity("app", "web")
	bind(ns[2], guard)
	if got := fmt.Sprint(feasibleNames(mkPod("w", "", "", map[string]string{"app": "web"}), ns)); got != "[a b]" {
		t.Fatalf("existing anti-affinity: %s", got)
	}
	if s := Filter(mkPod("w", "", "", map[string]string{"app": "web"}), ns[2], ns); s == nil || s.Reasons[0] != ReasonExistingAntiAffinity {
		t.Fatalf("existing status %+v", s)
	}

	// Exlocation: a group of pods that repel each other lands one per node,
	// and the fourth fits nowhere.
	ex := infos(mkNode("a", "4", "8Gi", nil), mkNode("b", "4", "8Gi", nil), mkNode("c", "4", "8Gi", nil))
	for i := 0; i < 4; i++ {
		p := mkPod(fmt.Sprintf("e%d", i), "", "", map[string]string{"ex": "g"})
		p.Spec.Affinity = antiAffinity("ex", "g")
		d := Schedule(p, ex, Weights{LeastAllocated: 1}, rand.New(rand.NewPCG(1, 2)))
		if i < 3 {
			if d.Node == "" {
				t.Fatalf("pod %d unschedulable: %s", i, d.Message)
			}
			for _, n := range ex {
				if n.Node.Name == d.Node {
					bind(n, p)
				}
			}
			continue
		}
		if d.Node != "" {
			t.Fatalf("4th exlocated pod placed on %s", d.Node)
		}
	}

	// The first pod of a self-selecting affinity group may start anywhere.
	first := mkPod("f", "", "", map[string]string{"co": "g"})
	first.Spec.Affinity = &corev1.Affinity{PodAffinity: &corev1.PodAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{
		LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"co": "g"}}, TopologyKey: corev1.LabelHostname,
	}}}}
	if got := len(feasibleNames(first, ns)); got != 3 {
		t.Fatalf("first colocated pod fits %d nodes, want 3", got)
	}
}

func TestTaintsAndTolerations(t *testing.T) {
	ns := infos(
		mkNode("a", "4", "8Gi", nil, corev1.Taint{Key: "pool", Value: "x", Effect: corev1.TaintEffectNoSchedule}),
		mkNode("b", "4", "8Gi", nil, corev1.Taint{Key: "node.kubernetes.io/unreachable", Effect: corev1.TaintEffectNoExecute}),
		mkNode("c", "4", "8Gi", nil, corev1.Taint{Key: "soft", Effect: corev1.TaintEffectPreferNoSchedule}),
	)
	p := mkPod("p", "", "", nil)
	if got := fmt.Sprint(feasibleNames(p, ns)); got != "[c]" {
		t.Fatalf("no tolerations: %s", got)
	}
	if s := Filter(p, ns[0], ns); s == nil || s.Reasons[0] != "node(s) had untolerated taint {pool: x}" {
		t.Fatalf("status %+v", s)
	}
	p.Spec.Tolerations = []corev1.Toleration{{Key: "pool", Operator: corev1.TolerationOpEqual, Value: "x", Effect: corev1.TaintEffectNoSchedule}}
	if got := fmt.Sprint(feasibleNames(p, ns)); got != "[a c]" {
		t.Fatalf("tolerates pool: %s", got)
	}
	p.Spec.Tolerations = append(p.Spec.Tolerations, corev1.Toleration{Key: "node.kubernetes.io/unreachable", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute})
	if got := fmt.Sprint(feasibleNames(p, ns)); got != "[a b c]" {
		t.Fatalf("tolerates both: %s", got)
	}
	// PreferNoSchedule only lowers the score.
	q := mkPod("q", "", "", nil)
	q.Spec.Tolerations = p.Spec.Tolerations
	if d := Schedule(q, ns, Weights{TaintToleration: 3}, rand.New(rand.NewPCG(1, 1))); d.Node == "c" {
		t.Fatalf("prefer-no-schedule node chosen although others score higher")
	}

	// Cordoned node.
	cord := mkNode("d", "4", "8Gi", nil)
	cord.Spec.Unschedulable = true
	ci := infos(cord)
	if s := Filter(mkPod("p", "", "", nil), ci[0], ci); s == nil || s.Reasons[0] != ReasonUnschedulable {
		t.Fatalf("cordoned: %+v", s)
	}
}

func TestUnschedulableMessage(t *testing.T) {
	ns := infos(mkNode("a", "1", "8Gi", nil), mkNode("b", "1", "8Gi", nil), mkNode("c", "1", "8Gi", nil))
	d := Schedule(mkPod("p", "2", "", nil), ns, Weights{LeastAllocated: 1}, rand.New(rand.NewPCG(1, 1)))
	want := "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod."
	if d.Node != "" || d.Message != want {
		t.Fatalf("got %q on %q\nwant %q", d.Message, d.Node, want)
	}
	ns[0].Node.Spec.Taints = []corev1.Taint{{Key: "k", Value: "v", Effect: corev1.TaintEffectNoSchedule}}
	ns[1].Node.Status.Allocatable[corev1.ResourceMemory] = resource.MustParse("1Gi")
	d = Schedule(mkPod("p", "2", "2Gi", nil), ns, Weights{}, rand.New(rand.NewPCG(1, 1)))
	// Sorted as strings, as kube-scheduler does: upper case sorts first.
	want = "0/3 nodes are available: 1 Insufficient memory, 1 node(s) had untolerated taint {k: v}, 2 Insufficient cpu." +
		" preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling, 2 No preemption victims found for incoming pod."
	if d.Message != want {
		t.Fatalf("got  %q\nwant %q", d.Message, want)
	}
}

func TestScoringLeastAllocatedAndSpread(t *testing.T) {
	ns := infos(mkNode("a", "4", "8Gi", nil), mkNode("b", "4", "8Gi", nil))
	bind(ns[0], mkPod("big", "3", "6Gi", nil))
	d := Schedule(mkPod("p", "500m", "512Mi", nil), ns, Weights{LeastAllocated: 1}, rand.New(rand.NewPCG(1, 1)))
	if d.Node != "b" {
		t.Fatalf("least allocated chose %s", d.Node)
	}

	// Spread alone: replicas of one owner go round the nodes even when the
	// resources would favour one node.
	owner := metav1.OwnerReference{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "rs", UID: "rs-uid", Controller: boolPtr(true)}
	sp := infos(mkNode("a", "4", "8Gi", nil), mkNode("b", "4", "8Gi", nil), mkNode("c", "64", "128Gi", nil))
	counts := map[string]int{}
	for i := 0; i < 9; i++ {
		p := mkPod(fmt.Sprintf("r%d", i), "100m", "", map[string]string{"app": "r"})
		p.OwnerReferences = []metav1.OwnerReference{owner}
		d := Schedule(p, sp, Weights{Spread: 2}, rand.New(rand.NewPCG(uint64(i), 7)))
		counts[d.Node]++
		for _, n := range sp {
			if n.Node.Name == d.Node {
				bind(n, p)
			}
		}
	}
	if counts["a"] != 3 || counts["b"] != 3 || counts["c"] != 3 {
		t.Fatalf("spread %v, want 3 each", counts)
	}
}

func boolPtr(b bool) *bool { return &b }

func TestTieBreakUsesRandom(t *testing.T) {
	seen := map[string]bool{}
	for seed := uint64(0); seed < 20; seed++ {
		ns := infos(mkNode("a", "4", "8Gi", nil), mkNode("b", "4", "8Gi", nil), mkNode("c", "4", "8Gi", nil))
		d := Schedule(mkPod("p", "1", "1Gi", nil), ns, Weights{LeastAllocated: 1}, rand.New(rand.NewPCG(seed, 3)))
		seen[d.Node] = true
	}
	if len(seen) != 3 {
		t.Fatalf("ties broken towards %v only", seen)
	}
}
