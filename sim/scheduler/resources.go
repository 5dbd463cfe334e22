package scheduler

import (
	corev1 "k8s.io/api/core/v1"
)

// Resources are the quantities the NodeResourcesFit filter compares.
type Resources struct {
	MilliCPU int64
	Memory   int64
	Pods     int64
}

// Add returns r+o.
func (r Resources) Add(o Resources) Resources {
	return Resources{r.MilliCPU + o.MilliCPU, r.Memory + o.Memory, r.Pods + o.Pods}
}

// Default requests the scheduler's scoring assumes for containers that ask
// for nothing (pkg/scheduler/util.DefaultMilliCPURequest/DefaultMemoryRequest),
// so that BestEffort pods still spread. Filtering uses the real requests.
const (
	nonZeroMilliCPU = 100
	nonZeroMemory   = 200 * 1024 * 1024
)

// PodRequests is a pod's effective request as the scheduler computes it:
// the larger of the sum over app containers and the largest init container,
// plus the pod overhead. Pods counts the pod itself.
func PodRequests(pod *corev1.Pod) Resources {
	return podRequests(pod, false)
}

// podRequestsNonZero is PodRequests with the scoring defaults for containers
// that request nothing.
func podRequestsNonZero(pod *corev1.Pod) Resources {
	return podRequests(pod, true)
}

func podRequests(pod *corev1.Pod, nonZero bool) Resources {
	var sum Resources
	for i := range pod.Spec.Containers {
		sum = sum.Add(containerRequests(&pod.Spec.Containers[i], nonZero))
	}
	for i := range pod.Spec.InitContainers {
		c := containerRequests(&pod.Spec.InitContainers[i], nonZero)
		sum.MilliCPU = max(sum.MilliCPU, c.MilliCPU)
		sum.Memory = max(sum.Memory, c.Memory)
	}
	if pod.Spec.Overhead != nil {
		sum.MilliCPU += pod.Spec.Overhead.Cpu().MilliValue()
		sum.Memory += pod.Spec.Overhead.Memory().Value()
	}
	sum.Pods = 1
	return sum
}

func containerRequests(c *corev1.Container, nonZero bool) Resources {
	var r Resources
	if q, ok := c.Resources.Requests[corev1.ResourceCPU]; ok {
		r.MilliCPU = q.MilliValue()
	} else if nonZero {
		r.MilliCPU = nonZeroMilliCPU
	}
	if q, ok := c.Resources.Requests[corev1.ResourceMemory]; ok {
		r.Memory = q.Value()
	} else if nonZero {
		r.Memory = nonZeroMemory
	}
	return r
}

// Allocatable is what a node offers to pods.
func Allocatable(node *corev1.Node) Resources {
	a := node.Status.Allocatable
	return Resources{a.Cpu().MilliValue(), a.Memory().Value(), a.Pods().Value()}
}

// NodeInfo is the scheduler's view of one node: the node and the pods bound
// (or assumed) to it that still hold resources.
type NodeInfo struct {
	Node *corev1.Node
	Pods []*corev1.Pod
	// agg, kept by the Scheduler's cache, holds the sums below; nil on a
	// NodeInfo built by hand.
	agg *nodeAgg
}

// sub returns r-o.
func (r Resources) sub(o Resources) Resources {
	return Resources{r.MilliCPU - o.MilliCPU, r.Memory - o.Memory, r.Pods - o.Pods}
}

func (n *NodeInfo) allocatable() Resources {
	if n.agg != nil {
		return n.agg.alloc
	}
	return Allocatable(n.Node)
}

// groupCount is the number of the node's pods in pod's spread group (key
// is groupKey(pod)).
func (n *NodeInfo) groupCount(pod *corev1.Pod, key string) int64 {
	if n.agg != nil {
		if key == "" {
			return 0
		}
		return n.agg.groups[key]
	}
	var c int64
	for _, p := range n.Pods {
		if sameGroup(pod, p) {
			c++
		}
	}
	return c
}

// Requested is the sum of the requests of the node's pods.
func (n *NodeInfo) Requested() Resources {
	if n.agg != nil {
		return n.agg.requested
	}
	var r Resources
	for _, p := range n.Pods {
		r = r.Add(PodRequests(p))
	}
	return r
}

func (n *NodeInfo) requestedNonZero() Resources {
	if n.agg != nil {
		return n.agg.nonZero
	}
	var r Resources
	for _, p := range n.Pods {
		r = r.Add(podRequestsNonZero(p))
	}
	return r
}

// HoldsResources reports whether a pod counts against its node: bound and
// not in a terminal phase. A terminating pod still holds its resources until
// it is gone, as in the real scheduler cache.
func HoldsResources(pod *corev1.Pod) bool {
	return pod.Spec.NodeName != "" && pod.Status.Phase != corev1.PodSucceeded && pod.Status.Phase != corev1.PodFailed
}
