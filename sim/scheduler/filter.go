package scheduler

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// Reason strings of the kube-scheduler 1.32 filter plugins; the Unschedulable
// condition message is built from them, so they are kept word for word.
const (
	ReasonUnschedulable        = "node(s) were unschedulable"
	ReasonNodeName             = "node(s) didn't match the requested node name"
	ReasonNodeAffinity         = "node(s) didn't match Pod's node affinity/selector"
	ReasonPodAffinity          = "node(s) didn't match pod affinity rules"
	ReasonPodAntiAffinity      = "node(s) didn't match pod anti-affinity rules"
	ReasonExistingAntiAffinity = "node(s) didn't satisfy existing pods anti-affinity rules"
	ReasonTooManyPods          = "Too many pods"
	ReasonInsufficientCPU      = "Insufficient cpu"
	ReasonInsufficientMemory   = "Insufficient memory"

	// TaintUnschedulable is the taint the NodeUnschedulable plugin lets a pod tolerate.
	TaintUnschedulable = "node.kubernetes.io/unschedulable"
)

// Status is why a pod does not fit a node. Resolvable says whether removing
// pods could help (the framework's Unschedulable as opposed to
// UnschedulableAndUnresolvable); it decides the preemption part of the
// message.
type Status struct {
	Reasons    []string
	Resolvable bool
}

func unresolvable(reason string) *Status { return &Status{Reasons: []string{reason}} }

// Filter runs the filter plugins of the default profile that this model
// covers, in the default profile's order, and stops at the first that
// rejects the node, as the framework does. nil means the pod fits. all is the
// whole cluster, for inter-pod affinity.
func Filter(pod *corev1.Pod, n *NodeInfo, all []*NodeInfo) *Status {
	return newCycleState(pod, all, scanAnti(all)).filter(n)
}

func tolerates(tols []corev1.Toleration, t *corev1.Taint) bool {
	for i := range tols {
		if tols[i].ToleratesTaint(t) {
			return true
		}
	}
	return false
}

func fitResources(req, used, alloc Resources) *Status {
	var reasons []string
	if used.Pods+1 > alloc.Pods {
		reasons = append(reasons, ReasonTooManyPods)
	}
	if req.MilliCPU > 0 && used.MilliCPU+req.MilliCPU > alloc.MilliCPU {
		reasons = append(reasons, ReasonInsufficientCPU)
	}
	if req.Memory > 0 && used.Memory+req.Memory > alloc.Memory {
		reasons = append(reasons, ReasonInsufficientMemory)
	}
	if reasons == nil {
		return nil
	}
	return &Status{Reasons: reasons, Resolvable: true}
}

// MatchesNodeSelectorAndAffinity is the NodeAffinity filter: the pod's
// nodeSelector must match the node's labels, and if the pod has required node
// affinity, one of its nodeSelectorTerms must match (the requirements of a
// term are ANDed, the terms ORed).
func MatchesNodeSelectorAndAffinity(pod *corev1.Pod, node *corev1.Node) bool {
	if len(pod.Spec.NodeSelector) > 0 && !labels.SelectorFromSet(pod.Spec.NodeSelector).Matches(labels.Set(node.Labels)) {
		return false
	}
	return matchesRequiredNodeAffinity(pod, node)
}

func matchesRequiredNodeAffinity(pod *corev1.Pod, node *corev1.Node) bool {
	a := pod.Spec.Affinity
	if a == nil || a.NodeAffinity == nil || a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		return true
	}
	for _, term := range a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms {
		if matchNodeSelectorTerm(&term, node) {
			return true
		}
	}
	return false
}

// matchNodeSelectorTerm: an empty term matches nothing, as in Kubernetes.
func matchNodeSelectorTerm(term *corev1.NodeSelectorTerm, node *corev1.Node) bool {
	if len(term.MatchExpressions) == 0 && len(term.MatchFields) == 0 {
		return false
	}
	for _, r := range term.MatchExpressions {
		if !matchRequirement(r, node.Labels) {
			return false
		}
	}
	for _, r := range term.MatchFields {
		// metadata.name is the only field Kubernetes supports here.
		if r.Key != "metadata.name" || !matchRequirement(r, map[string]string{"metadata.name": node.Name}) {
			return false
		}
	}
	return true
}

func matchRequirement(r corev1.NodeSelectorRequirement, set map[string]string) bool {
	v, has := set[r.Key]
	switch r.Operator {
	case corev1.NodeSelectorOpIn:
		return has && contains(r.Values, v)
	case corev1.NodeSelectorOpNotIn:
		return !has || !contains(r.Values, v)
	case corev1.NodeSelectorOpExists:
		return has
	case corev1.NodeSelectorOpDoesNotExist:
		return !has
	case corev1.NodeSelectorOpGt, corev1.NodeSelectorOpLt:
		if !has || len(r.Values) != 1 {
			return false
		}
		a, err1 := strconv.ParseInt(v, 10, 64)
		b, err2 := strconv.ParseInt(r.Values[0], 10, 64)
		if err1 != nil || err2 != nil {
			return false
		}
		if r.Operator == corev1.NodeSelectorOpGt {
			return a > b
		}
		return a < b
	}
	return false
}

func contains(vs []string, v string) bool {
	for _, x := range vs {
		if x == v {
			return true
		}
	}
	return false
}

// termMatches reports whether pod p is selected by an affinity term written
// in a pod of namespace ns. A nil namespaceSelector with no namespaces means
// the writer's namespace; an empty namespaceSelector means every namespace
// (namespace labels are not modelled beyond that).
func termMatches(term *corev1.PodAffinityTerm, ns string, p *corev1.Pod) bool {
	if !termNamespaceMatches(term, ns, p) || term.LabelSelector == nil {
		return false
	}
	sel, err := metav1.LabelSelectorAsSelector(term.LabelSelector)
	if err != nil {
		return false
	}
	return sel.Matches(labels.Set(p.Labels))
}

func termNamespaceMatches(term *corev1.PodAffinityTerm, ns string, p *corev1.Pod) bool {
	switch {
	case len(term.Namespaces) > 0:
		if !contains(term.Namespaces, p.Namespace) {
			if term.NamespaceSelector == nil || len(term.NamespaceSelector.MatchLabels)+len(term.NamespaceSelector.MatchExpressions) != 0 {
				return false
			}
		}
	case term.NamespaceSelector != nil && len(term.NamespaceSelector.MatchLabels)+len(term.NamespaceSelector.MatchExpressions) == 0:
	default:
		if p.Namespace != ns {
			return false
		}
	}
	return true
}

func sameDomain(a, b *corev1.Node, key string) bool {
	va, ok1 := a.Labels[key]
	vb, ok2 := b.Labels[key]
	return ok1 && ok2 && va == vb
}

func requiredAffinity(pod *corev1.Pod) []corev1.PodAffinityTerm {
	if pod.Spec.Affinity == nil || pod.Spec.Affinity.PodAffinity == nil {
		return nil
	}
	return pod.Spec.Affinity.PodAffinity.RequiredDuringSchedulingIgnoredDuringExecution
}

func requiredAntiAffinity(pod *corev1.Pod) []corev1.PodAffinityTerm {
	if pod.Spec.Affinity == nil || pod.Spec.Affinity.PodAntiAffinity == nil {
		return nil
	}
	return pod.Spec.Affinity.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution
}

// FitMessage is the PodScheduled=False message of a pod that fits nowhere,
// as kube-scheduler 1.32 writes it: the sorted histogram of filter reasons,
// then the default preemption plugin's verdict. All pods are taken to have
// the same priority, so preemption finds no victims on nodes where removing
// pods could help and is "not helpful" elsewhere.
func FitMessage(numNodes int, statuses map[string]*Status) string {
	if numNodes == 0 {
		return "no nodes available to schedule pods"
	}
	reasons := map[string]int{}
	preempt := map[string]int{}
	for _, s := range statuses {
		for _, r := range s.Reasons {
			reasons[r]++
		}
		if s.Resolvable {
			preempt["No preemption victims found for incoming pod"]++
		} else {
			preempt["Preemption is not helpful for scheduling"]++
		}
	}
	return fmt.Sprintf("0/%d nodes are available: %s. preemption: 0/%d nodes are available: %s.",
		numNodes, histogram(reasons), numNodes, histogram(preempt))
}

func histogram(m map[string]int) string {
	var out []string
	for k, v := range m {
		out = append(out, fmt.Sprintf("%d %s", v, k))
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}
