// Package scheduler models kube-scheduler for the simulator: a scheduling
// queue (active, back-off and unschedulable pods), one scheduling cycle at a
// time with a virtual cost, the filter and score plugins of the default
// profile that matter for Sluice (see filter.go and score.go), asynchronous
// binding through the pods/binding subresource, and the PodScheduled=False
// condition with kube-scheduler's message for pods that fit nowhere.
package scheduler

import (
	"context"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"sluice.dev/sluice/sim/apiserver"
	"sluice.dev/sluice/sim/engine"
)

// Name is the schedulerName this model serves.
const Name = corev1.DefaultSchedulerName

type queued struct {
	key      types.NamespacedName
	attempts int
	// lastFailure is when the last attempt failed; back-off counts from it.
	lastFailure time.Duration
	// enqueued orders the active queue (FIFO among equal priorities).
	enqueued time.Duration
	seq      uint64
	// unschedSince is when the pod entered the unschedulable set.
	unschedSince time.Duration
	state        int
	timer        *engine.Timer
}

const (
	stateActive = iota
	stateBackoff
	stateUnschedulable
	stateInFlight
)

// Event is one thing the scheduler did, for traces and tests.
type Event struct {
	At      time.Duration
	Pod     types.NamespacedName
	Node    string // empty for a failed attempt
	Message string
	Attempt int
}

// Scheduler is the kube-scheduler model.
type Scheduler struct {
	e   *engine.Engine
	api *apiserver.Server
	c   client.Client
	p   Params

	nodes   map[string]*corev1.Node
	pods    map[types.NamespacedName]*corev1.Pod
	assumed map[types.NamespacedName]string

	// The node view, kept as pods and nodes change (cache.go): NodeInfo by
	// node name (also for names of unknown nodes that pods are bound to),
	// where each pod counts, the pods with required anti-affinity, and the
	// sorted list of known nodes' NodeInfos (nil when it must be rebuilt).
	infos  map[string]*NodeInfo
	placed map[types.NamespacedName]*placement
	anti   map[types.NamespacedName]*placement
	list   []*NodeInfo
	// groupTotal counts placed pods per spread group, over all NodeInfos.
	groupTotal map[string]int64
	// Buffers lent to each cycle.
	feasible []*NodeInfo
	scoreBuf []int64

	q      map[types.NamespacedName]*queued
	active []*queued
	seq    uint64
	busy   bool
	flush  *engine.Timer

	// OnEvent, if set, is called for every attempt.
	OnEvent func(Event)
	events  []Event
}

// New starts a scheduler on the API server. It lists nodes and pods now and
// follows their watches from then on.
func New(api *apiserver.Server, p Params) *Scheduler {
	s := &Scheduler{
		e: api.Engine(), api: api, c: api.Client("system:kube-scheduler"), p: p,
		nodes:   map[string]*corev1.Node{},
		pods:    map[types.NamespacedName]*corev1.Pod{},
		assumed: map[types.NamespacedName]string{},
		infos:   map[string]*NodeInfo{},
		placed:  map[types.NamespacedName]*placement{},
		anti:    map[types.NamespacedName]*placement{},

		groupTotal: map[string]int64{},
		q:          map[types.NamespacedName]*queued{},
	}
	ctx := context.Background()
	var nl corev1.NodeList
	if err := s.c.List(ctx, &nl); err == nil {
		for i := range nl.Items {
			s.nodes[nl.Items[i].Name] = &nl.Items[i]
			s.setNode(nl.Items[i].Name, &nl.Items[i])
		}
	}
	var pl corev1.PodList
	if err := s.c.List(ctx, &pl); err == nil {
		for i := range pl.Items {
			s.onPod(apiserver.Added, &pl.Items[i])
		}
	}
	api.WatchShared(&corev1.Node{}, func(ev apiserver.WatchEvent) { s.onNode(ev.Type, ev.Object.(*corev1.Node)) })
	api.WatchShared(&corev1.Pod{}, func(ev apiserver.WatchEvent) { s.onPod(ev.Type, ev.Object.(*corev1.Pod)) })
	return s
}

// Events returns every scheduling attempt so far.
func (s *Scheduler) Events() []Event { return s.events }

// Pending is the number of pods waiting in the scheduler's queues.
func (s *Scheduler) Pending() int { return len(s.q) }

func (s *Scheduler) onNode(typ watch.EventType, n *corev1.Node) {
	old := s.nodes[n.Name]
	if typ == apiserver.Deleted {
		delete(s.nodes, n.Name)
		s.setNode(n.Name, nil)
		return
	}
	s.nodes[n.Name] = n
	s.setNode(n.Name, n)
	// A new node, or one whose schedulability may have grown, can help
	// pods that failed; a heartbeat-only update cannot.
	if old == nil || nodeSchedulingChanged(old, n) {
		s.moveAllToActive()
	}
}

func nodeSchedulingChanged(a, b *corev1.Node) bool {
	return a.Spec.Unschedulable != b.Spec.Unschedulable ||
		!equalStringMaps(a.Labels, b.Labels) ||
		!equalTaints(a.Spec.Taints, b.Spec.Taints) ||
		Allocatable(a) != Allocatable(b)
}

func equalStringMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func equalTaints(a, b []corev1.Taint) bool {
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

func (s *Scheduler) onPod(typ watch.EventType, p *corev1.Pod) {
	k := client.ObjectKeyFromObject(p)
	old := s.pods[k]
	if typ == apiserver.Deleted {
		delete(s.pods, k)
		delete(s.assumed, k)
		s.refresh(k)
		s.dequeue(k)
		if old != nil && old.Spec.NodeName != "" {
			s.moveAllToActive()
		}
		return
	}
	s.pods[k] = p
	if p.Spec.NodeName != "" {
		// Bound: the assumption, if any, is confirmed.
		delete(s.assumed, k)
	}
	s.refresh(k)
	if p.Spec.NodeName != "" {
		s.dequeue(k)
		if old != nil && HoldsResources(old) && !HoldsResources(p) {
			s.moveAllToActive() // a pod that ended frees its resources
		}
		return
	}
	if p.DeletionTimestamp != nil || (p.Spec.SchedulerName != "" && p.Spec.SchedulerName != Name) {
		s.dequeue(k)
		return
	}
	if _, in := s.q[k]; in {
		return
	}
	if _, ok := s.assumed[k]; ok {
		return
	}
	s.enqueue(&queued{key: k})
}

func (s *Scheduler) enqueue(qi *queued) {
	qi.state = stateActive
	qi.enqueued = s.e.Now()
	s.seq++
	qi.seq = s.seq
	s.q[qi.key] = qi
	s.active = append(s.active, qi)
	s.kick()
}

func (s *Scheduler) dequeue(k types.NamespacedName) {
	qi, ok := s.q[k]
	if !ok {
		return
	}
	if qi.timer != nil {
		qi.timer.Stop()
	}
	delete(s.q, k)
	for i, a := range s.active {
		if a == qi {
			s.active = append(s.active[:i], s.active[i+1:]...)
			break
		}
	}
}

// moveAllToActive is the queue's reaction to a cluster event: unschedulable
// pods go back to the active queue, or to the back-off queue if their back-off
// has not expired.
func (s *Scheduler) moveAllToActive() {
	keys := make([]types.NamespacedName, 0, len(s.q))
	for k, qi := range s.q {
		if qi.state == stateUnschedulable {
			keys = append(keys, k)
		}
	}
	sort.Slice(keys, func(i, j int) bool { return s.q[keys[i]].seq < s.q[keys[j]].seq })
	for _, k := range keys {
		s.requeue(s.q[k])
	}
}

func (s *Scheduler) requeue(qi *queued) {
	if qi.timer != nil {
		qi.timer.Stop()
		qi.timer = nil
	}
	until := qi.lastFailure + s.p.Backoff(qi.attempts) - s.e.Now()
	if until > 0 {
		qi.state = stateBackoff
		qi.timer = s.e.After(until, func() {
			qi.timer = nil
			if s.q[qi.key] == qi && qi.state == stateBackoff {
				s.enqueue(qi)
			}
		})
		return
	}
	s.enqueue(qi)
}

// kick starts a scheduling cycle if none runs and a pod waits.
func (s *Scheduler) kick() {
	if s.busy || len(s.active) == 0 {
		return
	}
	sort.SliceStable(s.active, func(i, j int) bool {
		pi, pj := s.priority(s.active[i]), s.priority(s.active[j])
		if pi != pj {
			return pi > pj
		}
		return s.active[i].seq < s.active[j].seq
	})
	qi := s.active[0]
	s.active = s.active[1:]
	qi.state = stateInFlight
	s.busy = true
	s.e.After(s.p.CycleCost.D(), func() {
		s.busy = false
		s.cycle(qi)
		s.kick()
	})
}

func (s *Scheduler) priority(qi *queued) int32 {
	if p := s.pods[qi.key]; p != nil && p.Spec.Priority != nil {
		return *p.Spec.Priority
	}
	return 0
}

func (s *Scheduler) cycle(qi *queued) {
	pod := s.pods[qi.key]
	if pod == nil || s.q[qi.key] != qi || pod.Spec.NodeName != "" {
		return
	}
	qi.attempts++
	nodes := s.view()
	st := newCycleState(pod, nodes, s.antiPods())
	st.groupAbsent = st.group == "" || s.groupTotal[st.group] == 0
	st.feasible, st.buf = s.feasible, &s.scoreBuf
	d := schedule(st, nodes, s.p.Weights, s.e.Rand())
	s.feasible = st.feasible
	ev := Event{At: s.e.Now(), Pod: qi.key, Node: d.Node, Message: d.Message, Attempt: qi.attempts}
	s.events = append(s.events, ev)
	if s.OnEvent != nil {
		s.OnEvent(ev)
	}
	if d.Node == "" {
		qi.lastFailure = s.e.Now()
		qi.state = stateUnschedulable
		qi.unschedSince = s.e.Now()
		s.markUnschedulable(pod, d.Message)
		s.armFlush()
		return
	}
	// Assume, then bind asynchronously, as the binding cycle does.
	delete(s.q, qi.key)
	s.assumed[qi.key] = d.Node
	s.refresh(qi.key)
	uid := pod.UID
	s.e.After(s.p.BindLatency.D(), func() { s.bind(qi, uid, d.Node) })
}

func (s *Scheduler) bind(qi *queued, uid types.UID, node string) {
	pod := s.pods[qi.key]
	if pod == nil || pod.UID != uid || s.assumed[qi.key] != node {
		delete(s.assumed, qi.key)
		s.refresh(qi.key)
		return
	}
	b := &corev1.Binding{
		ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace, UID: uid},
		Target:     corev1.ObjectReference{Kind: "Node", Name: node},
	}
	if err := s.c.SubResource("binding").Create(context.Background(), pod, b); err != nil {
		// Forget the assumption and try again after back-off, as the
		// scheduler does when binding fails.
		delete(s.assumed, qi.key)
		s.refresh(qi.key)
		if cur := s.pods[qi.key]; cur != nil && cur.UID == uid && cur.Spec.NodeName == "" && cur.DeletionTimestamp == nil {
			qi.lastFailure = s.e.Now()
			s.q[qi.key] = qi
			s.requeue(qi)
		}
	}
}

// markUnschedulable writes PodScheduled=False/Unschedulable with the message
// unless the pod already says exactly that.
func (s *Scheduler) markUnschedulable(pod *corev1.Pod, msg string) {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable && c.Message == msg {
			return
		}
	}
	ctx := context.Background()
	var cur corev1.Pod
	if err := s.c.Get(ctx, client.ObjectKeyFromObject(pod), &cur); err != nil || cur.Spec.NodeName != "" {
		return
	}
	cond := corev1.PodCondition{
		Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable, Message: msg,
		LastTransitionTime: metav1.NewTime(s.api.Clock().Now().Truncate(time.Second)),
	}
	replaced := false
	for i, c := range cur.Status.Conditions {
		if c.Type == corev1.PodScheduled {
			if c.Status == corev1.ConditionFalse {
				cond.LastTransitionTime = c.LastTransitionTime
			}
			cur.Status.Conditions[i] = cond
			replaced = true
		}
	}
	if !replaced {
		cur.Status.Conditions = append(cur.Status.Conditions, cond)
	}
	_ = s.c.Status().Update(ctx, &cur)
}

// armFlush runs the periodic leftover flush while unschedulable pods exist:
// a pod unschedulable for longer than podMaxInUnschedulablePodsDuration is
// retried even without a cluster event.
func (s *Scheduler) armFlush() {
	if s.flush != nil && s.flush.Pending() {
		return
	}
	period := s.p.UnschedulableFlushPeriod.D()
	// The real flush ticks from scheduler start, on a fixed grid.
	next := (s.e.Now()/period + 1) * period
	s.flush = s.e.At(next, func() {
		left := false
		keys := make([]types.NamespacedName, 0)
		for k, qi := range s.q {
			if qi.state == stateUnschedulable {
				left = true
				if s.e.Now()-qi.unschedSince > s.p.PodMaxInUnschedulablePodsDuration.D() {
					keys = append(keys, k)
				}
			}
		}
		sort.Slice(keys, func(i, j int) bool { return s.q[keys[i]].seq < s.q[keys[j]].seq })
		for _, k := range keys {
			s.requeue(s.q[k])
		}
		s.flush = nil
		if left {
			s.armFlush()
		}
	})
}
