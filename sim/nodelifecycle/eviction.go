package nodelifecycle

import (
	"context"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"sluice.dev/sluice/sim/apiserver"
	"sluice.dev/sluice/sim/engine"
)

// DefaultTolerations are what the DefaultTolerationSeconds admission plugin
// adds to a pod that does not already tolerate the not-ready and unreachable
// NoExecute taints.
func DefaultTolerations(pod *corev1.Pod, seconds int64) []corev1.Toleration {
	var out []corev1.Toleration
	for _, key := range []string{TaintNotReady, TaintUnreachable} {
		t := corev1.Taint{Key: key, Effect: corev1.TaintEffectNoExecute}
		tolerated := false
		for i := range pod.Spec.Tolerations {
			if pod.Spec.Tolerations[i].ToleratesTaint(&t) {
				tolerated = true
			}
		}
		if !tolerated {
			s := seconds
			out = append(out, corev1.Toleration{Key: key, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: &s})
		}
	}
	return out
}

// AddDefaultTolerations applies the admission plugin to a pod about to be
// created.
func AddDefaultTolerations(pod *corev1.Pod, seconds int64) {
	pod.Spec.Tolerations = append(pod.Spec.Tolerations, DefaultTolerations(pod, seconds)...)
}

// Eviction is one pod deleted by the taint eviction controller.
type Eviction struct {
	At   time.Duration
	Pod  types.NamespacedName
	Node string
}

type scheduled struct {
	timer   *engine.Timer
	trigger time.Duration
}

// Evictor is the taint eviction controller (formerly the NoExecute taint
// manager): a pod on a node with NoExecute taints it does not tolerate is
// deleted at once; one that tolerates them for a while is deleted when the
// shortest of those tolerations runs out, counted from when the controller
// saw the taints.
type Evictor struct {
	e   *engine.Engine
	c   client.Client
	p   Params
	pos map[string]*corev1.Node
	pod map[types.NamespacedName]*corev1.Pod
	due map[types.NamespacedName]*scheduled

	evictions []Eviction
}

// NewEvictor starts the taint eviction controller.
func NewEvictor(api *apiserver.Server, p Params) *Evictor {
	ev := &Evictor{
		e: api.Engine(), c: api.Client("system:serviceaccount:kube-system:taint-eviction-controller"), p: p,
		pos: map[string]*corev1.Node{}, pod: map[types.NamespacedName]*corev1.Pod{}, due: map[types.NamespacedName]*scheduled{},
	}
	api.WatchShared(&corev1.Node{}, func(w apiserver.WatchEvent) {
		n := w.Object.(*corev1.Node)
		if w.Type == watch.Deleted {
			delete(ev.pos, n.Name)
			return
		}
		ev.pos[n.Name] = n
		for _, k := range ev.podsOn(n.Name) {
			ev.process(k)
		}
	})
	api.WatchShared(&corev1.Pod{}, func(w apiserver.WatchEvent) {
		p := w.Object.(*corev1.Pod)
		k := client.ObjectKeyFromObject(p)
		if w.Type == watch.Deleted || p.Spec.NodeName == "" {
			delete(ev.pod, k)
			ev.cancel(k)
			return
		}
		ev.pod[k] = p
		ev.process(k)
	})
	return ev
}

// Evictions lists the pods deleted so far.
func (ev *Evictor) Evictions() []Eviction { return ev.evictions }

func (ev *Evictor) podsOn(node string) []types.NamespacedName {
	var out []types.NamespacedName
	for k, p := range ev.pod {
		if p.Spec.NodeName == node {
			out = append(out, k)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

func (ev *Evictor) cancel(k types.NamespacedName) {
	if s := ev.due[k]; s != nil {
		s.timer.Stop()
		delete(ev.due, k)
	}
}

func (ev *Evictor) process(k types.NamespacedName) {
	pod := ev.pod[k]
	node := ev.pos[pod.Spec.NodeName]
	if node == nil || pod.DeletionTimestamp != nil {
		ev.cancel(k)
		return
	}
	var taints []corev1.Taint
	for _, t := range node.Spec.Taints {
		if t.Effect == corev1.TaintEffectNoExecute {
			taints = append(taints, t)
		}
	}
	if len(taints) == 0 {
		ev.cancel(k)
		return
	}
	// The sim API server has no admission chain, so the default
	// tolerations are applied here when the pod lacks them.
	tols := append(append([]corev1.Toleration{}, pod.Spec.Tolerations...), DefaultTolerations(pod, ev.p.DefaultTolerationSeconds)...)
	minWait := time.Duration(-1) // -1: forever
	for i := range taints {
		var used []corev1.Toleration
		for _, t := range tols {
			if t.ToleratesTaint(&taints[i]) {
				used = append(used, t)
			}
		}
		if len(used) == 0 {
			ev.cancel(k)
			ev.evict(k)
			return
		}
		for _, t := range used {
			if t.TolerationSeconds == nil {
				continue
			}
			w := time.Duration(max(*t.TolerationSeconds, 0)) * time.Second
			if minWait < 0 || w < minWait {
				minWait = w
			}
		}
	}
	if minWait < 0 {
		ev.cancel(k)
		return
	}
	if s := ev.due[k]; s != nil && s.trigger <= ev.e.Now()+minWait {
		return // an earlier eviction stands
	}
	ev.cancel(k)
	trigger := ev.e.Now() + minWait
	ev.due[k] = &scheduled{trigger: trigger, timer: ev.e.At(trigger, func() {
		delete(ev.due, k)
		ev.evict(k)
	})}
}

func (ev *Evictor) evict(k types.NamespacedName) {
	pod := ev.pod[k]
	if pod == nil {
		return
	}
	var cur corev1.Pod
	if err := ev.c.Get(context.Background(), k, &cur); err != nil || cur.UID != pod.UID || cur.DeletionTimestamp != nil {
		return
	}
	if ev.c.Delete(context.Background(), &cur) == nil {
		ev.evictions = append(ev.evictions, Eviction{At: ev.e.Now(), Pod: k, Node: cur.Spec.NodeName})
	}
}
