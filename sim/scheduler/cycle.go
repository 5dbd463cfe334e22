package scheduler

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// placedPod is a pod with required anti-affinity and the node it is on.
type placedPod struct {
	pod  *corev1.Pod
	node *corev1.Node
}

// topoPair is one topology domain: a node label key and value.
type topoPair struct{ key, value string }

// domains is the set of values of a topology key whose domains hold at least
// one pod matching a term.
type domains struct {
	key    string
	values map[string]bool
}

// cycleState is what one scheduling cycle works out once about the pod and
// the cluster, as kube-scheduler's PreFilter and PreScore do, so that
// filtering and scoring each node costs nothing per pod in the cluster.
type cycleState struct {
	pod     *corev1.Pod
	req     Resources
	nonZero Resources
	group   string
	nodeSel labels.Selector // nil without a nodeSelector
	// existingAnti are the domains of existing pods whose required
	// anti-affinity selects the pod.
	existingAnti []topoPair
	// affinity holds, per required affinity term of the pod, the domains
	// with a matching pod; anyAffinity is whether any pod matches any term
	// and selfAffinity whether every term selects the pod itself (the
	// first-pod rule).
	affinity     []domains
	affinityKeys []string
	anyAffinity  bool
	selfAffinity bool
	// anti holds, per required anti-affinity term of the pod, the domains
	// with a matching pod.
	anti []domains
	// groupAbsent says no node of the view holds a pod of the pod's spread
	// group (known from the cache; false when not known).
	groupAbsent bool
	// Buffers the scheduler lends to each cycle (nothing outlives one).
	feasible []*NodeInfo
	buf      *[]int64
}

// scores returns a zeroed slice of n scores, in the lent buffer if any.
func (st *cycleState) scores(n int) []int64 {
	if st.buf == nil {
		return make([]int64, n)
	}
	if cap(*st.buf) < n {
		*st.buf = make([]int64, n)
	}
	out := (*st.buf)[:n]
	clear(out)
	return out
}

// scanAnti lists the pods of nodes that have required anti-affinity terms.
func scanAnti(nodes []*NodeInfo) []placedPod {
	var out []placedPod
	for _, n := range nodes {
		for _, p := range n.Pods {
			if len(requiredAntiAffinity(p)) > 0 {
				out = append(out, placedPod{pod: p, node: n.Node})
			}
		}
	}
	return out
}

// newCycleState prepares the cycle of pod over nodes; anti are the pods on
// those nodes with required anti-affinity (scanAnti, or the cache's list).
func newCycleState(pod *corev1.Pod, nodes []*NodeInfo, anti []placedPod) *cycleState {
	st := &cycleState{pod: pod, req: PodRequests(pod), nonZero: podRequestsNonZero(pod), group: groupKey(pod)}
	if len(pod.Spec.NodeSelector) > 0 {
		st.nodeSel = labels.SelectorFromSet(pod.Spec.NodeSelector)
	}
	for _, e := range anti {
		for _, term := range requiredAntiAffinity(e.pod) {
			if !termMatches(&term, e.pod.Namespace, pod) {
				continue
			}
			if v, ok := e.node.Labels[term.TopologyKey]; ok {
				st.existingAnti = append(st.existingAnti, topoPair{term.TopologyKey, v})
			}
		}
	}
	if terms := requiredAffinity(pod); len(terms) > 0 {
		st.selfAffinity = true
		for i := range terms {
			m := newTermMatcher(&terms[i], pod.Namespace)
			d := domains{key: terms[i].TopologyKey, values: map[string]bool{}}
			for _, n := range nodes {
				v, has := n.Node.Labels[d.key]
				for _, e := range n.Pods {
					if m.matches(e) {
						st.anyAffinity = true
						if has {
							d.values[v] = true
						}
						break // the rest of the node is in the same domain
					}
				}
			}
			st.affinity = append(st.affinity, d)
			st.affinityKeys = append(st.affinityKeys, d.key)
			if !m.matches(pod) {
				st.selfAffinity = false
			}
		}
	}
	for _, term := range requiredAntiAffinity(pod) {
		m := newTermMatcher(&term, pod.Namespace)
		d := domains{key: term.TopologyKey, values: map[string]bool{}}
		for _, n := range nodes {
			v, has := n.Node.Labels[d.key]
			if !has || d.values[v] {
				continue
			}
			for _, e := range n.Pods {
				if m.matches(e) {
					d.values[v] = true
					break
				}
			}
		}
		st.anti = append(st.anti, d)
	}
	return st
}

// termMatcher is termMatches with the term's label selector parsed once.
type termMatcher struct {
	term *corev1.PodAffinityTerm
	ns   string
	sel  labels.Selector // nil: matches nothing
}

func newTermMatcher(term *corev1.PodAffinityTerm, ns string) termMatcher {
	m := termMatcher{term: term, ns: ns}
	if term.LabelSelector != nil {
		if sel, err := metav1.LabelSelectorAsSelector(term.LabelSelector); err == nil {
			m.sel = sel
		}
	}
	return m
}

func (m termMatcher) matches(p *corev1.Pod) bool {
	return m.sel != nil && termNamespaceMatches(m.term, m.ns, p) && m.sel.Matches(labels.Set(p.Labels))
}

// filter is Filter for one node of the cycle.
func (st *cycleState) filter(n *NodeInfo) *Status {
	pod, node := st.pod, n.Node
	// NodeUnschedulable
	if node.Spec.Unschedulable && !tolerates(pod.Spec.Tolerations, &corev1.Taint{Key: TaintUnschedulable, Effect: corev1.TaintEffectNoSchedule}) {
		return unresolvable(ReasonUnschedulable)
	}
	// NodeName
	if pod.Spec.NodeName != "" && pod.Spec.NodeName != node.Name {
		return unresolvable(ReasonNodeName)
	}
	// TaintToleration: NoSchedule and NoExecute taints must be tolerated.
	for i := range node.Spec.Taints {
		t := &node.Spec.Taints[i]
		if t.Effect != corev1.TaintEffectNoSchedule && t.Effect != corev1.TaintEffectNoExecute {
			continue
		}
		if !tolerates(pod.Spec.Tolerations, t) {
			return unresolvable("node(s) had untolerated taint {" + t.Key + ": " + t.Value + "}")
		}
	}
	// NodeAffinity: nodeSelector and required node affinity.
	if st.nodeSel != nil && !st.nodeSel.Matches(labels.Set(node.Labels)) || !matchesRequiredNodeAffinity(pod, node) {
		return unresolvable(ReasonNodeAffinity)
	}
	// NodeResourcesFit: every shortage is a reason of its own.
	if s := fitResources(st.req, n.Requested(), n.allocatable()); s != nil {
		return s
	}
	// InterPodAffinity: the existing pods' anti-affinity, the pod's own
	// affinity, then its anti-affinity.
	for _, tp := range st.existingAnti {
		if v, ok := node.Labels[tp.key]; ok && v == tp.value {
			return &Status{Reasons: []string{ReasonExistingAntiAffinity}, Resolvable: true}
		}
	}
	if len(st.affinity) > 0 {
		satisfied := true
		for _, d := range st.affinity {
			if v, ok := node.Labels[d.key]; !ok || !d.values[v] {
				satisfied = false
				break
			}
		}
		// The first pod of a group that selects itself may go anywhere its
		// topology key exists; otherwise such a group could never start.
		if !satisfied {
			self := !st.anyAffinity && st.selfAffinity
			for _, k := range st.affinityKeys {
				if _, ok := node.Labels[k]; !ok {
					self = false
				}
			}
			if !self {
				return unresolvable(ReasonPodAffinity)
			}
		}
	}
	for _, d := range st.anti {
		if v, ok := node.Labels[d.key]; ok && d.values[v] {
			return &Status{Reasons: []string{ReasonPodAntiAffinity}, Resolvable: true}
		}
	}
	return nil
}
