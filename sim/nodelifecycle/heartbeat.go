// Package nodelifecycle models node health in the simulator: the kubelet's
// heartbeats (Lease renewals and NodeStatus updates), the node lifecycle
// controller that marks a silent node Ready=Unknown after the grace period
// and taints it, and the taint eviction controller that deletes pods from
// NoExecute-tainted nodes once their toleration runs out.
package nodelifecycle

import (
	"context"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"sluice.dev/sluice/sim/apiserver"
	"sluice.dev/sluice/sim/engine"
)

// LeaseNamespace holds the node leases.
const LeaseNamespace = corev1.NamespaceNodeLease

// Heartbeat is the kubelet side of node health for one node.
type Heartbeat struct {
	e    *engine.Engine
	api  *apiserver.Server
	c    client.Client
	p    Params
	node string

	up         bool
	epoch      int
	lastReport time.Duration
	reported   bool
	// LastBeat is the virtual time of the last lease renewal or status post.
	LastBeat time.Duration
}

// NewHeartbeat starts heartbeating for a node at a random phase within one
// interval, so that nodes do not beat in lockstep.
func NewHeartbeat(api *apiserver.Server, p Params, node string) *Heartbeat {
	h := &Heartbeat{e: api.Engine(), api: api, c: api.Client("system:node:" + node), p: p, node: node, up: true}
	offset := time.Duration(h.e.Rand().Float64() * float64(p.LeaseRenewInterval.D()))
	epoch := h.epoch
	h.e.After(offset, func() {
		if h.up && h.epoch == epoch {
			h.renewLoop(epoch)
			h.statusLoop(epoch)
		}
	})
	return h
}

// Running reports whether the node beats.
func (h *Heartbeat) Running() bool { return h.up }

// Stop silences the node (powered off or cut off from the API server).
func (h *Heartbeat) Stop() {
	h.up = false
	h.epoch++
}

// Start resumes heartbeats at once, as a starting kubelet posts its status
// and renews its lease straight away.
func (h *Heartbeat) Start() {
	if h.up {
		return
	}
	h.up = true
	h.epoch++
	h.renewLoop(h.epoch)
	h.statusLoop(h.epoch)
}

func (h *Heartbeat) jittered(d time.Duration) time.Duration {
	return d + time.Duration(h.e.Rand().Float64()*h.p.HeartbeatJitter*float64(d))
}

func (h *Heartbeat) renewLoop(epoch int) {
	if !h.up || h.epoch != epoch {
		return
	}
	h.renew()
	h.e.After(h.jittered(h.p.LeaseRenewInterval.D()), func() { h.renewLoop(epoch) })
}

func (h *Heartbeat) statusLoop(epoch int) {
	if !h.up || h.epoch != epoch {
		return
	}
	h.syncStatus()
	h.e.After(h.jittered(h.p.NodeStatusUpdateFrequency.D()), func() { h.statusLoop(epoch) })
}

func (h *Heartbeat) now() metav1.Time {
	return metav1.NewTime(h.api.Clock().Now().Truncate(time.Second))
}

func (h *Heartbeat) renew() {
	ctx := context.Background()
	now := metav1.NewMicroTime(h.api.Clock().Now())
	var l coordinationv1.Lease
	err := h.c.Get(ctx, client.ObjectKey{Namespace: LeaseNamespace, Name: h.node}, &l)
	secs := int32(h.p.LeaseDuration.D() / time.Second)
	holder := h.node
	if err != nil {
		l = coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Namespace: LeaseNamespace, Name: h.node},
			Spec:       coordinationv1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: &secs, RenewTime: &now},
		}
		if h.c.Create(ctx, &l) == nil {
			h.LastBeat = h.e.Now()
		}
		return
	}
	l.Spec.RenewTime = &now
	l.Spec.HolderIdentity = &holder
	l.Spec.LeaseDurationSeconds = &secs
	if h.c.Update(ctx, &l) == nil {
		h.LastBeat = h.e.Now()
	}
}

// syncStatus posts the node's Ready condition when it changed or when the
// report frequency has passed, as the kubelet does with leases enabled.
func (h *Heartbeat) syncStatus() {
	ctx := context.Background()
	var n corev1.Node
	if err := h.c.Get(ctx, client.ObjectKey{Name: h.node}, &n); err != nil {
		return
	}
	changed := false
	now := h.now()
	want := map[corev1.NodeConditionType]corev1.NodeCondition{
		corev1.NodeReady:          {Status: corev1.ConditionTrue, Reason: "KubeletReady", Message: "kubelet is posting ready status"},
		corev1.NodeMemoryPressure: {Status: corev1.ConditionFalse, Reason: "KubeletHasSufficientMemory", Message: "kubelet has sufficient memory available"},
		corev1.NodeDiskPressure:   {Status: corev1.ConditionFalse, Reason: "KubeletHasNoDiskPressure", Message: "kubelet has no disk pressure"},
		corev1.NodePIDPressure:    {Status: corev1.ConditionFalse, Reason: "KubeletHasSufficientPID", Message: "kubelet has sufficient PID available"},
	}
	for _, t := range []corev1.NodeConditionType{corev1.NodeMemoryPressure, corev1.NodeDiskPressure, corev1.NodePIDPressure, corev1.NodeReady} {
		w := want[t]
		w.Type = t
		w.LastHeartbeatTime = now
		w.LastTransitionTime = now
		found := false
		for i := range n.Status.Conditions {
			c := &n.Status.Conditions[i]
			if c.Type != t {
				continue
			}
			found = true
			if c.Status != w.Status || c.Reason != w.Reason {
				changed = true
			} else {
				w.LastTransitionTime = c.LastTransitionTime
			}
			*c = w
		}
		if !found {
			changed = true
			n.Status.Conditions = append(n.Status.Conditions, w)
		}
	}
	if !changed && h.reported && h.e.Now()-h.lastReport < h.p.NodeStatusReportFrequency.D() {
		return
	}
	if h.c.Status().Update(ctx, &n) == nil {
		h.reported = true
		h.lastReport = h.e.Now()
		h.LastBeat = h.e.Now()
	}
}
