package nodelifecycle

import (
	"context"
	"sort"
	"strconv"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"sluice.dev/sluice/sim/apiserver"
	"sluice.dev/sluice/sim/engine"
)

// Taint keys the node lifecycle controller manages.
const (
	TaintUnreachable = corev1.TaintNodeUnreachable
	TaintNotReady    = corev1.TaintNodeNotReady
)

type health struct {
	node      *corev1.Node
	heartbeat metav1.Time
	renew     metav1.MicroTime
	// probe is when the controller last saw the node's heartbeat or lease move.
	probe time.Duration
}

// Transition is a change of a node's Ready condition made or seen by the
// controller.
type Transition struct {
	At     time.Duration
	Node   string
	Status corev1.ConditionStatus
}

// Controller is the node lifecycle controller of kube-controller-manager.
type Controller struct {
	e   *engine.Engine
	api *apiserver.Server
	c   client.Client
	p   Params

	nodes map[string]*health
	// notReady counts the nodes whose last known state is not Ready, kept
	// by setNode so that disrupted need not walk every node for every node.
	notReady int
	// nextToken is when the NoExecute tainting rate limiter has a token.
	nextToken time.Duration
	retry     *engine.Timer

	transitions []Transition
}

// NewController starts the controller: it lists nodes and leases and
// monitors node health every nodeMonitorPeriod.
func NewController(api *apiserver.Server, p Params) *Controller {
	nc := &Controller{e: api.Engine(), api: api, c: api.Client("system:serviceaccount:kube-system:node-controller"), p: p, nodes: map[string]*health{}}
	var nl corev1.NodeList
	_ = nc.c.List(context.Background(), &nl)
	for i := range nl.Items {
		nc.onNode(watch.Added, &nl.Items[i])
	}
	api.WatchShared(&corev1.Node{}, func(ev apiserver.WatchEvent) { nc.onNode(ev.Type, ev.Object.(*corev1.Node)) })
	api.WatchShared(&coordinationv1.Lease{}, func(ev apiserver.WatchEvent) {
		l := ev.Object.(*coordinationv1.Lease)
		if l.Namespace != LeaseNamespace || ev.Type == watch.Deleted {
			return
		}
		if h := nc.nodes[l.Name]; h != nil && l.Spec.RenewTime != nil && !l.Spec.RenewTime.Equal(&h.renew) {
			h.renew = *l.Spec.RenewTime
			h.probe = nc.e.Now()
		}
	})
	var tick func()
	tick = func() {
		nc.monitor()
		nc.e.After(p.NodeMonitorPeriod.D(), tick)
	}
	nc.e.After(p.NodeMonitorPeriod.D(), tick)
	return nc
}

// Transitions lists the Ready changes the controller saw or made.
func (nc *Controller) Transitions() []Transition { return nc.transitions }

func readyCondition(n *corev1.Node) *corev1.NodeCondition {
	for i := range n.Status.Conditions {
		if n.Status.Conditions[i].Type == corev1.NodeReady {
			return &n.Status.Conditions[i]
		}
	}
	return nil
}

func readyStatus(n *corev1.Node) corev1.ConditionStatus {
	if c := readyCondition(n); c != nil {
		return c.Status
	}
	return corev1.ConditionUnknown
}

func (nc *Controller) onNode(typ watch.EventType, n *corev1.Node) {
	if typ == watch.Deleted {
		if h := nc.nodes[n.Name]; h != nil {
			nc.setNode(h, nil)
		}
		delete(nc.nodes, n.Name)
		return
	}
	h := nc.nodes[n.Name]
	if h == nil {
		h = &health{probe: nc.e.Now()}
		nc.nodes[n.Name] = h
	} else if olderThan(n, h.node) {
		// The controller's own later write is already known; an older event
		// must not undo it.
		return
	} else if readyStatus(h.node) != readyStatus(n) {
		nc.transitions = append(nc.transitions, Transition{At: nc.e.Now(), Node: n.Name, Status: readyStatus(n)})
	}
	if c := readyCondition(n); c != nil && !c.LastHeartbeatTime.Equal(&h.heartbeat) {
		h.heartbeat = c.LastHeartbeatTime
		h.probe = nc.e.Now()
	}
	nc.setNode(h, n)
	// A node that reports again gets its taints reconciled without waiting
	// for the next pass.
	nc.reconcileTaints(n.Name, false)
}

// monitor is monitorNodeHealth: silent nodes become Unknown, then taints
// follow the Ready condition.
func (nc *Controller) monitor() {
	names := nc.sortedNames()
	for _, name := range names {
		h := nc.nodes[name]
		if nc.e.Now()-h.probe > nc.p.NodeMonitorGracePeriod.D() && readyStatus(h.node) != corev1.ConditionUnknown {
			nc.markUnknown(name)
		}
	}
	for _, name := range names {
		nc.reconcileTaints(name, true)
	}
}

func (nc *Controller) sortedNames() []string {
	names := make([]string, 0, len(nc.nodes))
	for n := range nc.nodes {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func (nc *Controller) markUnknown(name string) {
	ctx := context.Background()
	var n corev1.Node
	if err := nc.c.Get(ctx, client.ObjectKey{Name: name}, &n); err != nil {
		return
	}
	now := metav1.NewTime(nc.api.Clock().Now().Truncate(time.Second))
	for _, t := range []corev1.NodeConditionType{corev1.NodeReady, corev1.NodeMemoryPressure, corev1.NodeDiskPressure, corev1.NodePIDPressure} {
		found := false
		for i := range n.Status.Conditions {
			c := &n.Status.Conditions[i]
			if c.Type != t {
				continue
			}
			found = true
			if c.Status != corev1.ConditionUnknown {
				c.Status = corev1.ConditionUnknown
				c.Reason = "NodeStatusUnknown"
				c.Message = "Kubelet stopped posting node status."
				c.LastTransitionTime = now
			}
		}
		if !found {
			n.Status.Conditions = append(n.Status.Conditions, corev1.NodeCondition{
				Type: t, Status: corev1.ConditionUnknown, Reason: "NodeStatusNeverUpdated",
				Message: "Kubelet never posted node status.", LastHeartbeatTime: now, LastTransitionTime: now,
			})
		}
	}
	if nc.c.Status().Update(ctx, &n) == nil {
		nc.setNode(nc.nodes[name], &n)
		nc.transitions = append(nc.transitions, Transition{At: nc.e.Now(), Node: name, Status: corev1.ConditionUnknown})
		nc.markPodsNotReady(name)
	}
}

// markPodsNotReady is nodeutil.MarkPodsNotReady: when a node stops being
// Ready, the controller sets the Ready condition of its pods to False (the
// kubelet, which would do it, is silent).
func (nc *Controller) markPodsNotReady(node string) {
	ctx := context.Background()
	var pods corev1.PodList
	if err := nc.c.List(ctx, &pods, client.MatchingFields{"spec.nodeName": node}); err != nil {
		return
	}
	now := metav1.NewTime(nc.api.Clock().Now().Truncate(time.Second))
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.Spec.NodeName != node {
			continue
		}
		changed := false
		for j := range p.Status.Conditions {
			c := &p.Status.Conditions[j]
			if c.Type == corev1.PodReady && c.Status != corev1.ConditionFalse {
				c.Status = corev1.ConditionFalse
				c.LastTransitionTime = now
				changed = true
			}
		}
		if changed {
			_ = nc.c.Status().Update(ctx, p)
		}
	}
}

// setNode records a node's last known state (nil: forgotten).
func (nc *Controller) setNode(h *health, n *corev1.Node) {
	if h.node != nil && readyStatus(h.node) != corev1.ConditionTrue {
		nc.notReady--
	}
	h.node = n
	if n != nil && readyStatus(n) != corev1.ConditionTrue {
		nc.notReady++
	}
}

// disrupted reports whether NoExecute tainting is suspended: in a zone
// where every node is not ready (full disruption) or, in a small cluster,
// where at least unhealthyZoneThreshold of them and more than two are.
func (nc *Controller) disrupted() bool {
	notReady := nc.notReady
	total := len(nc.nodes)
	if total == 0 || notReady == 0 {
		return false
	}
	if notReady == total {
		return true
	}
	partial := notReady > 2 && float64(notReady)/float64(total) >= nc.p.UnhealthyZoneThreshold
	return partial && total <= nc.p.LargeClusterSizeThreshold
}

// reconcileTaints sets the node's condition taints: NoSchedule at once
// (taint-by-condition), NoExecute through the eviction rate limiter and only
// while the zone is not disrupted; both go when the node is Ready.
func (nc *Controller) reconcileTaints(name string, allowNoExecute bool) {
	h := nc.nodes[name]
	if h == nil {
		return
	}
	key := ""
	switch readyStatus(h.node) {
	case corev1.ConditionUnknown:
		key = TaintUnreachable
	case corev1.ConditionFalse:
		key = TaintNotReady
	}
	disrupted := nc.disrupted()
	var want []corev1.Taint
	addNoExec := false
	for _, t := range h.node.Spec.Taints {
		if t.Key == TaintUnreachable || t.Key == TaintNotReady {
			if t.Key == key && !(t.Effect == corev1.TaintEffectNoExecute && disrupted) {
				want = append(want, t)
			}
			continue
		}
		want = append(want, t)
	}
	has := func(effect corev1.TaintEffect) bool {
		for _, t := range want {
			if t.Key == key && t.Effect == effect {
				return true
			}
		}
		return false
	}
	if key != "" && !has(corev1.TaintEffectNoSchedule) {
		want = append(want, corev1.Taint{Key: key, Effect: corev1.TaintEffectNoSchedule})
	}
	if key != "" && !has(corev1.TaintEffectNoExecute) && !disrupted && allowNoExecute {
		if nc.e.Now() >= nc.nextToken {
			now := metav1.NewTime(nc.api.Clock().Now().Truncate(time.Second))
			want = append(want, corev1.Taint{Key: key, Effect: corev1.TaintEffectNoExecute, TimeAdded: &now})
			addNoExec = true
		} else if nc.retry == nil || !nc.retry.Pending() {
			nc.retry = nc.e.At(nc.nextToken, func() {
				for _, n := range nc.sortedNames() {
					nc.reconcileTaints(n, true)
				}
			})
		}
	}
	if sameTaints(want, h.node.Spec.Taints) {
		return
	}
	ctx := context.Background()
	var n corev1.Node
	if err := nc.c.Get(ctx, client.ObjectKey{Name: name}, &n); err != nil {
		return
	}
	n.Spec.Taints = want
	if nc.c.Update(ctx, &n) == nil {
		nc.setNode(h, &n)
		if addNoExec && nc.p.NodeEvictionRate > 0 {
			nc.nextToken = nc.e.Now() + time.Duration(float64(time.Second)/nc.p.NodeEvictionRate)
		}
	}
}

func olderThan(a, b *corev1.Node) bool {
	ra, _ := strconv.ParseUint(a.ResourceVersion, 10, 64)
	rb, _ := strconv.ParseUint(b.ResourceVersion, 10, 64)
	return ra < rb
}

func sameTaints(a, b []corev1.Taint) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Key != b[i].Key || a[i].Value != b[i].Value || a[i].Effect != b[i].Effect {
			return false
		}
	}
	return true
}
