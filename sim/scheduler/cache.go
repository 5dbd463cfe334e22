package scheduler

import (
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// The scheduler keeps its per-node view (NodeInfo) up to date as pods and
// nodes come and go, like kube-scheduler's cache, instead of rebuilding it
// from every pod at each cycle: a 10,000-PE Job schedules 10,000 pods, each
// against 1,000 nodes. Each NodeInfo carries the sums the filters and scores
// need (requests, pods per spread group), so a cycle costs O(nodes) and not
// O(nodes + pods).

// nodeAgg are a NodeInfo's running sums; nil on a NodeInfo built by hand,
// whose methods then walk its pods.
type nodeAgg struct {
	name      string
	alloc     Resources
	requested Resources
	nonZero   Resources
	// groups counts the node's pods per spread group (groupKey).
	groups map[string]int64
	// keys[i] is the key of Pods[i].
	keys []types.NamespacedName
}

// placement is where one pod counts in the cache.
type placement struct {
	ni   *NodeInfo
	pod  *corev1.Pod
	idx  int
	req  Resources
	nz   Resources
	grp  string
	anti bool // has required pod anti-affinity terms
}

// groupKey names the spread group of a pod so that two pods are in the same
// group (sameGroup) exactly when their keys are equal and not empty: same
// namespace and controller UID, or, for pods without a controller, the same
// non-empty labels. A pod never shares a group with itself; the scheduler
// never has the pod it schedules in its node view.
func groupKey(p *corev1.Pod) string {
	if c := metav1.GetControllerOfNoCopy(p); c != nil {
		return p.Namespace + "\x00c\x00" + string(c.UID)
	}
	if len(p.Labels) == 0 {
		return ""
	}
	ks := make([]string, 0, len(p.Labels))
	for k := range p.Labels {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	var b strings.Builder
	b.WriteString(p.Namespace)
	b.WriteString("\x00l")
	for _, k := range ks {
		b.WriteString("\x00")
		b.WriteString(k)
		b.WriteString("=")
		b.WriteString(p.Labels[k])
	}
	return b.String()
}

// infoFor returns the NodeInfo of a node name, creating it (without a Node,
// so outside the cycle's view) if needed.
func (s *Scheduler) infoFor(name string) *NodeInfo {
	ni := s.infos[name]
	if ni == nil {
		ni = &NodeInfo{agg: &nodeAgg{name: name, groups: map[string]int64{}}}
		s.infos[name] = ni
	}
	return ni
}

func (s *Scheduler) setNode(name string, n *corev1.Node) {
	if n == nil {
		ni := s.infos[name]
		if ni == nil {
			return
		}
		ni.Node = nil
		if len(ni.Pods) == 0 {
			delete(s.infos, name)
		}
		s.list = nil
		return
	}
	ni := s.infoFor(name)
	if ni.Node == nil {
		s.list = nil
	}
	ni.Node = n
	ni.agg.alloc = Allocatable(n)
}

// view is the nodes a cycle considers, sorted by name.
func (s *Scheduler) view() []*NodeInfo {
	if s.list == nil {
		names := make([]string, 0, len(s.nodes))
		for n := range s.nodes {
			names = append(names, n)
		}
		sort.Strings(names)
		s.list = make([]*NodeInfo, 0, len(names))
		for _, n := range names {
			s.list = append(s.list, s.infos[n])
		}
	}
	return s.list
}

// refresh moves pod k to where it now counts: the node it is bound to, or
// assumed on, while it holds resources; nowhere otherwise.
func (s *Scheduler) refresh(k types.NamespacedName) {
	if pl := s.placed[k]; pl != nil {
		s.unplace(k, pl)
	}
	p := s.pods[k]
	if p == nil {
		return
	}
	if a, ok := s.assumed[k]; ok {
		p = p.DeepCopy()
		p.Spec.NodeName = a
	}
	if !HoldsResources(p) {
		return
	}
	ni := s.infoFor(p.Spec.NodeName)
	pl := &placement{ni: ni, pod: p, idx: len(ni.Pods), req: PodRequests(p), nz: podRequestsNonZero(p),
		grp: groupKey(p), anti: len(requiredAntiAffinity(p)) > 0}
	ni.Pods = append(ni.Pods, p)
	ni.agg.keys = append(ni.agg.keys, k)
	ni.agg.requested = ni.agg.requested.Add(pl.req)
	ni.agg.nonZero = ni.agg.nonZero.Add(pl.nz)
	if pl.grp != "" {
		ni.agg.groups[pl.grp]++
		s.groupTotal[pl.grp]++
	}
	if pl.anti {
		s.anti[k] = pl
	}
	s.placed[k] = pl
}

func (s *Scheduler) unplace(k types.NamespacedName, pl *placement) {
	ni := pl.ni
	last := len(ni.Pods) - 1
	if pl.idx != last {
		ni.Pods[pl.idx] = ni.Pods[last]
		ni.agg.keys[pl.idx] = ni.agg.keys[last]
		s.placed[ni.agg.keys[pl.idx]].idx = pl.idx
	}
	ni.Pods[last] = nil
	ni.Pods = ni.Pods[:last]
	ni.agg.keys = ni.agg.keys[:last]
	ni.agg.requested = ni.agg.requested.sub(pl.req)
	ni.agg.nonZero = ni.agg.nonZero.sub(pl.nz)
	if pl.grp != "" {
		if ni.agg.groups[pl.grp]--; ni.agg.groups[pl.grp] == 0 {
			delete(ni.agg.groups, pl.grp)
		}
		if s.groupTotal[pl.grp]--; s.groupTotal[pl.grp] == 0 {
			delete(s.groupTotal, pl.grp)
		}
	}
	delete(s.anti, k)
	delete(s.placed, k)
	if ni.Node == nil && len(ni.Pods) == 0 {
		delete(s.infos, ni.agg.name)
	}
}

// antiPods lists the cached pods with required anti-affinity, with their
// nodes, in a fixed order.
func (s *Scheduler) antiPods() []placedPod {
	if len(s.anti) == 0 {
		return nil
	}
	keys := make([]types.NamespacedName, 0, len(s.anti))
	for k := range s.anti {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].Namespace != keys[j].Namespace {
			return keys[i].Namespace < keys[j].Namespace
		}
		return keys[i].Name < keys[j].Name
	})
	out := make([]placedPod, 0, len(keys))
	for _, k := range keys {
		pl := s.anti[k]
		if pl.ni.Node != nil {
			out = append(out, placedPod{pod: pl.pod, node: pl.ni.Node})
		}
	}
	return out
}
