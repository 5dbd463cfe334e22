package scheduler

import (
	"math"
	"math/rand/v2"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// Weights of the score plugins; the defaults are the default profile's.
type Weights struct {
	LeastAllocated      int64 `json:"leastAllocated"`
	BalancedAllocation  int64 `json:"balancedAllocation"`
	Spread              int64 `json:"spread"`
	NodeAffinity        int64 `json:"nodeAffinity"`
	TaintToleration     int64 `json:"taintToleration"`
	InterPodPreferences int64 `json:"interPodPreferences"`
}

const maxNodeScore = 100

// scorer computes per-node plugin scores for one pod over the feasible nodes.
// Each plugin yields 0..100 per node (normalised over the feasible nodes
// where the real plugin normalises), then the weighted sum decides.
//
// Plugins whose raw scores are all zero are not computed: their normalised
// scores are then known (0, or 100 for the reversed and spread ones).
func scoreNodes(st *cycleState, feasible []*NodeInfo, all []*NodeInfo, w Weights) []int64 {
	pod := st.pod
	total := st.scores(len(feasible))
	add := func(weight int64, s []int64) {
		for i := range s {
			total[i] += weight * s[i]
		}
	}
	addAll := func(v int64) {
		for i := range total {
			total[i] += v
		}
	}
	req := st.nonZero
	for i, n := range feasible {
		la, ba := allocationScores(req, n)
		total[i] += w.LeastAllocated*la + w.BalancedAllocation*ba
	}
	if st.groupAbsent {
		addAll(w.Spread * maxNodeScore) // no node holds a pod of the group
	} else {
		add(w.Spread, spreadScores(st, feasible))
	}
	if a := pod.Spec.Affinity; a != nil && a.NodeAffinity != nil && len(a.NodeAffinity.PreferredDuringSchedulingIgnoredDuringExecution) > 0 {
		add(w.NodeAffinity, normalise(preferredNodeAffinity(pod, feasible), false))
	}
	tainted := false
	for _, n := range feasible {
		if len(n.Node.Spec.Taints) > 0 {
			tainted = true
			break
		}
	}
	if tainted {
		add(w.TaintToleration, normalise(intolerablePreferNoSchedule(pod, feasible), true))
	} else {
		addAll(w.TaintToleration * maxNodeScore)
	}
	if a := pod.Spec.Affinity; a != nil && (a.PodAffinity != nil || a.PodAntiAffinity != nil) {
		add(w.InterPodPreferences, preferredPodAffinity(pod, feasible, all))
	}
	return total
}

// allocationScores are NodeResourcesFit's LeastAllocated score and
// NodeResourcesBalancedAllocation's score for cpu and memory, with the
// pod's requests added to the node's.
func allocationScores(req Resources, n *NodeInfo) (least, balanced int64) {
	alloc := n.allocatable()
	used := n.requestedNonZero().Add(req)
	frac := func(u, a int64) float64 {
		if a == 0 {
			return 1
		}
		return math.Min(float64(u)/float64(a), 1)
	}
	least1 := func(u, a int64) int64 {
		if a == 0 || u > a {
			return 0
		}
		return (a - u) * maxNodeScore / a
	}
	least = (least1(used.MilliCPU, alloc.MilliCPU) + least1(used.Memory, alloc.Memory)) / 2
	fc, fm := frac(used.MilliCPU, alloc.MilliCPU), frac(used.Memory, alloc.Memory)
	std := math.Abs(fc-fm) / 2
	balanced = int64((1 - std) * maxNodeScore)
	return least, balanced
}

// spreadScores favour nodes with fewer pods of the same group: pods of the
// same controller (owner UID) or, for pods without one, with the same labels,
// in the same namespace. It stands in for the default topology spreading
// over kubernetes.io/hostname (an approximation: the real plugin derives the
// group from Services and workload selectors).
func spreadScores(st *cycleState, feasible []*NodeInfo) []int64 {
	counts := make([]int64, len(feasible))
	var maxCount int64
	for i, n := range feasible {
		counts[i] = n.groupCount(st.pod, st.group)
		maxCount = max(maxCount, counts[i])
	}
	out := make([]int64, len(feasible))
	for i := range out {
		if maxCount == 0 {
			out[i] = maxNodeScore
		} else {
			out[i] = maxNodeScore * (maxCount - counts[i]) / maxCount
		}
	}
	return out
}

func sameGroup(a, b *corev1.Pod) bool {
	if a.Namespace != b.Namespace || a.UID == b.UID && a.UID != "" {
		return false
	}
	ca, cb := metav1.GetControllerOf(a), metav1.GetControllerOf(b)
	if ca != nil || cb != nil {
		return ca != nil && cb != nil && ca.UID == cb.UID
	}
	return len(a.Labels) > 0 && labels.Equals(a.Labels, b.Labels)
}

func preferredNodeAffinity(pod *corev1.Pod, feasible []*NodeInfo) []int64 {
	out := make([]int64, len(feasible))
	a := pod.Spec.Affinity
	if a == nil || a.NodeAffinity == nil {
		return out
	}
	for i, n := range feasible {
		for _, t := range a.NodeAffinity.PreferredDuringSchedulingIgnoredDuringExecution {
			if matchNodeSelectorTerm(&t.Preference, n.Node) {
				out[i] += int64(t.Weight)
			}
		}
	}
	return out
}

func intolerablePreferNoSchedule(pod *corev1.Pod, feasible []*NodeInfo) []int64 {
	out := make([]int64, len(feasible))
	for i, n := range feasible {
		for j := range n.Node.Spec.Taints {
			t := &n.Node.Spec.Taints[j]
			if t.Effect == corev1.TaintEffectPreferNoSchedule && !tolerates(pod.Spec.Tolerations, t) {
				out[i]++
			}
		}
	}
	return out
}

// preferredPodAffinity sums the weights of the pod's preferred (anti-)affinity
// terms satisfied on each node's domain, normalised to 0..100.
func preferredPodAffinity(pod *corev1.Pod, feasible, all []*NodeInfo) []int64 {
	raw := make([]int64, len(feasible))
	a := pod.Spec.Affinity
	if a == nil || (a.PodAffinity == nil && a.PodAntiAffinity == nil) {
		return raw
	}
	// Per term, the matching pods per domain, counted once.
	perDomain := func(term *corev1.PodAffinityTerm) map[string]int64 {
		m := newTermMatcher(term, pod.Namespace)
		c := map[string]int64{}
		for _, o := range all {
			v, ok := o.Node.Labels[term.TopologyKey]
			if !ok {
				continue
			}
			for _, p := range o.Pods {
				if m.matches(p) {
					c[v]++
				}
			}
		}
		return c
	}
	count := func(c map[string]int64, key string, node *corev1.Node) int64 {
		if v, ok := node.Labels[key]; ok {
			return c[v]
		}
		return 0
	}
	if a.PodAffinity != nil {
		for _, t := range a.PodAffinity.PreferredDuringSchedulingIgnoredDuringExecution {
			c := perDomain(&t.PodAffinityTerm)
			for i, n := range feasible {
				raw[i] += int64(t.Weight) * count(c, t.PodAffinityTerm.TopologyKey, n.Node)
			}
		}
	}
	if a.PodAntiAffinity != nil {
		for _, t := range a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution {
			c := perDomain(&t.PodAffinityTerm)
			for i, n := range feasible {
				raw[i] -= int64(t.Weight) * count(c, t.PodAffinityTerm.TopologyKey, n.Node)
			}
		}
	}
	lo, hi := int64(math.MaxInt64), int64(math.MinInt64)
	for _, v := range raw {
		lo, hi = min(lo, v), max(hi, v)
	}
	out := make([]int64, len(raw))
	if hi > lo {
		for i, v := range raw {
			out[i] = maxNodeScore * (v - lo) / (hi - lo)
		}
	}
	return out
}

// normalise maps raw scores to 0..100 by the maximum; reverse makes fewer better.
func normalise(raw []int64, reverse bool) []int64 {
	var hi int64
	for _, v := range raw {
		hi = max(hi, v)
	}
	out := make([]int64, len(raw))
	for i, v := range raw {
		switch {
		case hi == 0 && reverse:
			out[i] = maxNodeScore
		case hi == 0:
			out[i] = 0
		case reverse:
			out[i] = maxNodeScore - maxNodeScore*v/hi
		default:
			out[i] = maxNodeScore * v / hi
		}
	}
	return out
}

// Decision is the outcome of one scheduling cycle.
type Decision struct {
	// Node is the chosen node; empty when the pod fits nowhere.
	Node string
	// Statuses are the per-node reasons of nodes that were filtered out.
	Statuses map[string]*Status
	// Message is the Unschedulable message when Node is empty.
	Message string
}

// Schedule runs one scheduling cycle for pod over the cluster: filter every
// node, score the feasible ones and pick the best, breaking ties at random
// as selectHost does (uniformly among the best, by reservoir sampling).
func Schedule(pod *corev1.Pod, nodes []*NodeInfo, w Weights, rnd *rand.Rand) Decision {
	return schedule(newCycleState(pod, nodes, scanAnti(nodes)), nodes, w, rnd)
}

func schedule(st *cycleState, nodes []*NodeInfo, w Weights, rnd *rand.Rand) Decision {
	d := Decision{Statuses: map[string]*Status{}}
	feasible := st.feasible[:0]
	defer func() { st.feasible = feasible[:0] }()
	for _, n := range nodes {
		if s := st.filter(n); s != nil {
			d.Statuses[n.Node.Name] = s
		} else {
			feasible = append(feasible, n)
		}
	}
	if len(feasible) == 0 {
		d.Message = FitMessage(len(nodes), d.Statuses)
		return d
	}
	scores := scoreNodes(st, feasible, nodes, w)
	best, seen := 0, 0
	for i := range feasible {
		switch {
		case scores[i] > scores[best]:
			best, seen = i, 1
		case scores[i] == scores[best]:
			seen++
			if seen > 1 && rnd.IntN(seen) == 0 {
				best = i
			}
		}
	}
	d.Node = feasible[best].Node.Name
	return d
}
