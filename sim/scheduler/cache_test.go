package scheduler

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// refInterPodAffinity is the InterPodAffinity filter written directly from
// its definition, walking every pod of the cluster for every node: the
// reference the per-cycle precomputation (cycleState) must agree with.
func refInterPodAffinity(pod *corev1.Pod, n *NodeInfo, all []*NodeInfo) *Status {
	for _, other := range all {
		for _, e := range other.Pods {
			for _, term := range requiredAntiAffinity(e) {
				if termMatches(&term, e.Namespace, pod) && sameDomain(other.Node, n.Node, term.TopologyKey) {
					return &Status{Reasons: []string{ReasonExistingAntiAffinity}, Resolvable: true}
				}
			}
		}
	}
	if terms := requiredAffinity(pod); len(terms) > 0 {
		satisfied, anyMatch := true, false
		for _, term := range terms {
			found := false
			for _, other := range all {
				for _, e := range other.Pods {
					if termMatches(&term, pod.Namespace, e) {
						anyMatch = true
						found = found || sameDomain(other.Node, n.Node, term.TopologyKey)
					}
				}
			}
			satisfied = satisfied && found
		}
		if !satisfied {
			self := !anyMatch
			for _, term := range terms {
				_, has := n.Node.Labels[term.TopologyKey]
				self = self && termMatches(&term, pod.Namespace, pod) && has
			}
			if !self {
				return unresolvable(ReasonPodAffinity)
			}
		}
	}
	for _, term := range requiredAntiAffinity(pod) {
		for _, other := range all {
			if !sameDomain(other.Node, n.Node, term.TopologyKey) {
				continue
			}
			for _, e := range other.Pods {
				if termMatches(&term, pod.Namespace, e) {
					return &Status{Reasons: []string{ReasonPodAntiAffinity}, Resolvable: true}
				}
			}
		}
	}
	return nil
}

// refPreferred is preferredPodAffinity's raw sums from the definition.
func refPreferred(pod *corev1.Pod, feasible, all []*NodeInfo) []int64 {
	raw := make([]int64, len(feasible))
	a := pod.Spec.Affinity
	if a == nil {
		return raw
	}
	count := func(term *corev1.PodAffinityTerm, node *corev1.Node) int64 {
		var c int64
		for _, o := range all {
			if sameDomain(o.Node, node, term.TopologyKey) {
				for _, p := range o.Pods {
					if termMatches(term, pod.Namespace, p) {
						c++
					}
				}
			}
		}
		return c
	}
	for i, n := range feasible {
		if a.PodAffinity != nil {
			for _, t := range a.PodAffinity.PreferredDuringSchedulingIgnoredDuringExecution {
				raw[i] += int64(t.Weight) * count(&t.PodAffinityTerm, n.Node)
			}
		}
		if a.PodAntiAffinity != nil {
			for _, t := range a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution {
				raw[i] -= int64(t.Weight) * count(&t.PodAffinityTerm, n.Node)
			}
		}
	}
	return raw
}

func randTerm(r *rand.Rand) corev1.PodAffinityTerm {
	keys := []string{"zone", corev1.LabelHostname, "rack"} // rack is on some nodes only
	t := corev1.PodAffinityTerm{TopologyKey: keys[r.IntN(len(keys))],
		LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": fmt.Sprint("a", r.IntN(3))}}}
	if r.IntN(4) == 0 {
		t.Namespaces = []string{"other"}
	}
	return t
}

func randAffinityPod(r *rand.Rand, name string) *corev1.Pod {
	p := mkPod(name, "", "", map[string]string{"app": fmt.Sprint("a", r.IntN(3))})
	if r.IntN(5) == 0 {
		p.Namespace = "other"
	}
	var a corev1.Affinity
	if r.IntN(3) == 0 {
		a.PodAffinity = &corev1.PodAffinity{}
		for i := r.IntN(3); i > 0; i-- {
			a.PodAffinity.RequiredDuringSchedulingIgnoredDuringExecution = append(a.PodAffinity.RequiredDuringSchedulingIgnoredDuringExecution, randTerm(r))
		}
		for i := r.IntN(3); i > 0; i-- {
			a.PodAffinity.PreferredDuringSchedulingIgnoredDuringExecution = append(a.PodAffinity.PreferredDuringSchedulingIgnoredDuringExecution,
				corev1.WeightedPodAffinityTerm{Weight: int32(1 + r.IntN(100)), PodAffinityTerm: randTerm(r)})
		}
	}
	if r.IntN(3) == 0 {
		a.PodAntiAffinity = &corev1.PodAntiAffinity{}
		for i := r.IntN(3); i > 0; i-- {
			a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution = append(a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution, randTerm(r))
		}
		for i := r.IntN(3); i > 0; i-- {
			a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution = append(a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution,
				corev1.WeightedPodAffinityTerm{Weight: int32(1 + r.IntN(100)), PodAffinityTerm: randTerm(r)})
		}
	}
	if r.IntN(4) == 0 {
		a.NodeAffinity = &corev1.NodeAffinity{PreferredDuringSchedulingIgnoredDuringExecution: []corev1.PreferredSchedulingTerm{{
			Weight: 5, Preference: corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{{
				Key: "zone", Operator: corev1.NodeSelectorOpIn, Values: []string{"z0"}}}}}}}
	}
	if a.PodAffinity != nil || a.PodAntiAffinity != nil || a.NodeAffinity != nil {
		p.Spec.Affinity = &a
	}
	return p
}

// refScores is scoreNodes with every plugin computed and added.
func refScores(pod *corev1.Pod, feasible, all []*NodeInfo, w Weights) []int64 {
	st := newCycleState(pod, all, scanAnti(all))
	total := make([]int64, len(feasible))
	add := func(weight int64, s []int64) {
		for i := range s {
			total[i] += weight * s[i]
		}
	}
	for i, n := range feasible {
		la, ba := allocationScores(st.nonZero, n)
		total[i] += w.LeastAllocated*la + w.BalancedAllocation*ba
	}
	add(w.Spread, spreadScores(st, feasible))
	add(w.NodeAffinity, normalise(preferredNodeAffinity(pod, feasible), false))
	add(w.TaintToleration, normalise(intolerablePreferNoSchedule(pod, feasible), true))
	add(w.InterPodPreferences, preferredPodAffinity(pod, feasible, all))
	return total
}

// The per-cycle precomputation of inter-pod (anti-)affinity gives the same
// verdicts and preference sums as walking every pod for every node.
func TestCycleStateMatchesDefinition(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 9))
	verdicts := map[string]int{}
	for round := 0; round < 300; round++ {
		var ns []*NodeInfo
		for i := 0; i < 2+r.IntN(6); i++ {
			lbl := map[string]string{"zone": fmt.Sprint("z", r.IntN(3))}
			if r.IntN(2) == 0 {
				lbl["rack"] = fmt.Sprint("r", r.IntN(2))
			}
			ns = append(ns, &NodeInfo{Node: mkNode(fmt.Sprint("n", i), "64", "64Gi", lbl)})
		}
		for i := 0; i < r.IntN(12); i++ {
			bind(ns[r.IntN(len(ns))], randAffinityPod(r, fmt.Sprint("e", i)))
		}
		pod := randAffinityPod(r, "new")
		if r.IntN(3) == 0 {
			ns[0].Node.Spec.Taints = []corev1.Taint{{Key: "k", Effect: corev1.TaintEffectPreferNoSchedule}}
		}
		w := Weights{LeastAllocated: 1, BalancedAllocation: 1, Spread: 2, NodeAffinity: 2, TaintToleration: 3, InterPodPreferences: 2}
		st := newCycleState(pod, ns, scanAnti(ns))
		st.groupAbsent = true
		for _, n := range ns {
			st.groupAbsent = st.groupAbsent && n.groupCount(pod, st.group) == 0
		}
		if got, ref := scoreNodes(st, ns, ns, w), refScores(pod, ns, ns, w); fmt.Sprint(got) != fmt.Sprint(ref) {
			t.Fatalf("round %d: scores %v, every plugin computed %v", round, got, ref)
		}
		want := refPreferred(pod, ns, ns)
		for _, n := range ns {
			got, ref := st.filter(n), refInterPodAffinity(pod, n, ns)
			if fmt.Sprint(got) != fmt.Sprint(ref) {
				t.Fatalf("round %d node %s: filter %v, definition %v", round, n.Node.Name, got, ref)
			}
			if ref == nil {
				verdicts["fits"]++
			} else {
				verdicts[ref.Reasons[0]]++
			}
		}
		// preferredPodAffinity normalises want; compare after the same step.
		got := preferredPodAffinity(pod, ns, ns)
		lo, hi := want[0], want[0]
		for _, v := range want {
			lo, hi = min(lo, v), max(hi, v)
		}
		for i, v := range want {
			exp := int64(0)
			if hi > lo && pod.Spec.Affinity != nil {
				exp = maxNodeScore * (v - lo) / (hi - lo)
			}
			if got[i] != exp {
				t.Fatalf("round %d: preferred scores %v, definition raw %v", round, got, want)
			}
		}
	}
	// The random clusters exercise every verdict.
	for _, v := range []string{"fits", ReasonExistingAntiAffinity, ReasonPodAffinity, ReasonPodAntiAffinity} {
		if verdicts[v] == 0 {
			t.Errorf("verdict %q never produced: %v", v, verdicts)
		}
	}
}

// checkView compares the scheduler's incrementally kept node view with one
// built from scratch from its pods, assumptions and nodes, as a cycle used
// to build it.
func checkView(t *testing.T, s *Scheduler) {
	t.Helper()
	names := make([]string, 0, len(s.nodes))
	for n := range s.nodes {
		names = append(names, n)
	}
	sort.Strings(names)
	view := s.view()
	if len(view) != len(names) {
		t.Fatalf("view has %d nodes, want %d", len(view), len(names))
	}
	want := map[string][]string{}
	fresh := map[string]*NodeInfo{}
	for k, p := range s.pods {
		node := p.Spec.NodeName
		if a, ok := s.assumed[k]; ok {
			p = p.DeepCopy()
			p.Spec.NodeName = a
			node = a
		}
		if HoldsResources(p) {
			want[node] = append(want[node], k.String())
			if fresh[node] == nil {
				fresh[node] = &NodeInfo{Node: s.nodes[node]}
			}
			fresh[node].Pods = append(fresh[node].Pods, p)
		}
	}
	for i, ni := range view {
		if ni.Node != s.nodes[names[i]] {
			t.Fatalf("view[%d] is %v, want node %s", i, ni.Node, names[i])
		}
		var got []string
		for j, p := range ni.Pods {
			got = append(got, ni.agg.keys[j].String())
			if ni.agg.keys[j] != client.ObjectKeyFromObject(p) {
				t.Fatalf("key %v beside pod %s", ni.agg.keys[j], p.Name)
			}
		}
		sort.Strings(got)
		w := want[names[i]]
		sort.Strings(w)
		if fmt.Sprint(got) != fmt.Sprint(w) {
			t.Fatalf("node %s holds %v, want %v", names[i], got, w)
		}
		f := fresh[names[i]]
		if f == nil {
			f = &NodeInfo{Node: s.nodes[names[i]]}
		}
		if ni.Requested() != f.Requested() || ni.requestedNonZero() != f.requestedNonZero() || ni.allocatable() != f.allocatable() {
			t.Fatalf("node %s sums %v %v %v, from scratch %v %v %v", names[i], ni.Requested(), ni.requestedNonZero(), ni.allocatable(),
				f.Requested(), f.requestedNonZero(), f.allocatable())
		}
		for _, p := range s.pods {
			if HoldsResources(p) {
				continue // a pod is never scored against its own node view
			}
			if a, b := ni.groupCount(p, groupKey(p)), f.groupCount(p, ""); a != b {
				t.Fatalf("node %s: %d pods in %s's group, from scratch %d", names[i], a, p.Name, b)
			}
		}
	}
	totals := map[string]int64{}
	for _, ni := range s.infos {
		for g, c := range ni.agg.groups {
			totals[g] += c
		}
	}
	if fmt.Sprint(totals) != fmt.Sprint(s.groupTotal) {
		t.Fatalf("group totals %v, from the nodes %v", s.groupTotal, totals)
	}
	for k, pl := range s.placed {
		if (pl.anti) != (s.anti[k] != nil) {
			t.Fatalf("pod %v: anti-affinity index out of step", k)
		}
	}
}

// The node view stays equal to a from-scratch one through binds, pod
// completion and deletion, node label changes and node removal.
func TestNodeViewIncremental(t *testing.T) {
	e, api, c := newAPI(5)
	ctx := context.Background()
	for i := 0; i < 4; i++ {
		create(t, c, mkNode(fmt.Sprint("n", i), "2", "4Gi", map[string]string{"zone": fmt.Sprint("z", i%2)}))
	}
	s := New(api, DefaultParams())
	r := rand.New(rand.NewPCG(8, 8))
	owner := []metav1.OwnerReference{{APIVersion: "v1", Kind: "ReplicaSet", Name: "rs", UID: "rs-1", Controller: ptrTrue()}}
	for i := 0; i < 40; i++ {
		p := mkPod(fmt.Sprint("p", i), fmt.Sprint(100+r.IntN(400), "m"), "", map[string]string{"app": fmt.Sprint("a", r.IntN(2))})
		p.UID = ""
		if r.IntN(2) == 0 {
			p.OwnerReferences = owner
		}
		if r.IntN(6) == 0 {
			p.Spec.Affinity = &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{
				RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{TopologyKey: corev1.LabelHostname,
					LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "a0"}}}}}}
		}
		create(t, c, p)
		// Check in between: some pods are assumed and not bound yet.
		e.RunUntil(e.Now() + time.Duration(r.IntN(300))*time.Millisecond)
		checkView(t, s)
	}
	e.RunUntil(e.Now() + 5*time.Second)
	checkView(t, s)
	bound := 0
	for _, p := range s.pods {
		if p.Spec.NodeName != "" {
			bound++
		}
	}
	if bound < 10 || len(s.placed) != bound {
		t.Fatalf("%d pods bound, %d placed", bound, len(s.placed))
	}
	// Pods end, are deleted; a node goes away and another gets a label.
	var pl corev1.PodList
	_ = c.List(ctx, &pl)
	for i := range pl.Items {
		p := &pl.Items[i]
		if err := c.Get(ctx, client.ObjectKeyFromObject(p), p); err != nil {
			continue
		}
		switch r.IntN(3) {
		case 0:
			p.Status.Phase = corev1.PodSucceeded
			if err := c.Status().Update(ctx, p); err != nil {
				t.Fatal(err)
			}
		case 1:
			_ = c.Delete(ctx, p, client.GracePeriodSeconds(0))
		}
		e.RunUntil(e.Now() + 50*time.Millisecond)
		checkView(t, s)
	}
	_ = c.Delete(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}})
	var n corev1.Node
	_ = c.Get(ctx, types.NamespacedName{Name: "n2"}, &n)
	n.Labels["zone"] = "z9"
	_ = c.Update(ctx, &n)
	e.RunUntil(e.Now() + 10*time.Second)
	checkView(t, s)
	if _, ok := s.infos["n1"]; ok && len(s.infos["n1"].Pods) == 0 {
		t.Fatal("deleted node without pods still has a NodeInfo")
	}
}

func ptrTrue() *bool { b := true; return &b }
