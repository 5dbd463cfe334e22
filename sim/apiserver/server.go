// Package apiserver models kube-apiserver and etcd for the simulator: an
// in-memory store of typed objects with the API semantics that reconcile
// code relies on, watches delivered in virtual time, and clients that charge
// request latency and client-side rate limiting to virtual time.
//
// # Semantics kept from the real API server
//
// A global resourceVersion (etcd revision) increases by one per write;
// uid and creationTimestamp (second precision, as serialised) are set on
// create; generateName picks a random 5-character suffix; metadata.generation
// starts at 1 and is bumped when anything outside metadata and status changes
// (and when deletion starts, as markAsDeleting does), for kinds that track
// generation (CRDs and other kinds with a spec, not Pods, Nodes, Services,
// Namespaces or volumes). For kinds with a status subresource (a Status
// field) Update ignores status and Status().Update/Patch changes nothing but
// status. A stale resourceVersion is a Conflict; errors are real apierrors.
// Delete honours preconditions and PropagationPolicy: Foreground adds the
// foregroundDeletion finalizer, Orphan the orphan finalizer (sim/gc acts on
// both); an object with finalizers only gets deletionTimestamp; removing the
// last finalizer of such an object deletes it. A Pod bound to a node is
// deleted gracefully: deletionTimestamp = now + grace period and the object
// stays until someone (the kubelet model) deletes it again with grace 0.
// Pods are bound through the "binding" subresource (SubResource("binding").
// Create(pod, &corev1.Binding{...})) as kube-scheduler does.
//
// Not modelled: admission (namespaces need not exist), defaulting and
// validation beyond the above, server-side apply, managedFields, pagination
// (List returns everything), watch bookmarks and compaction.
//
// # Time
//
// The simulator is single-threaded and reconcile code calls the client
// synchronously, so a request cannot really take time. Instead every write
// is applied to the store at the moment of the call, in call order, and its
// consequences are delayed: a client charges each request's latency (and any
// wait for a client-side rate-limit token) to the Session it runs in, and the
// write becomes visible on watches at now + session elapsed + WatchDelay.
// Visibility is monotone per object, so a watcher sees each object's
// changes in resourceVersion order; across objects it sees them in the order
// they become visible, the order a real etcd would have committed (and
// numbered) them in. The controller driver opens a Session per reconcile
// and keeps the worker busy for the session's elapsed time plus a CPU cost.
// A "direct" client (Server.Client) charges nothing: the scheduler and kubelet
// models account their own time and write at the virtual instant they act.
package apiserver

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"

	"sluice.dev/sluice/sim/clock"
	"sluice.dev/sluice/sim/engine"
)

// Finalizers the API server adds for deletion propagation (metav1 constants).
const (
	FinalizerForeground = "foregroundDeletion"
	FinalizerOrphan     = "orphan"
)

// Watch event types.
const (
	Added    = watch.Added
	Modified = watch.Modified
	Deleted  = watch.Deleted
)

// WatchEvent is one change delivered to a watcher.
type WatchEvent struct {
	Type watch.EventType
	// Object is the watcher's own deep copy of the object after the change
	// (for Deleted, its last state).
	Object client.Object
	// GVK is the object's kind.
	GVK schema.GroupVersionKind
	// ResourceVersion is the revision of the change.
	ResourceVersion uint64
}

// Watcher is a registered watch; Stop ends delivery (events in flight are
// dropped).
type Watcher struct {
	h       func(WatchEvent)
	shared  bool // deliver the stored object itself, not a copy
	stopped bool
	kind    *kindStore // nil for WatchAll
	// seq orders watchers by registration: deliveries of one change are
	// scheduled in this order whichever list a watcher is kept in.
	seq uint64
	// node, if set, narrows a Pod watch to pods bound to that node.
	node string
}

// Stop ends the watch.
func (w *Watcher) Stop() { w.stopped = true }

type kindStore struct {
	gvk        schema.GroupVersionKind
	gr         schema.GroupResource
	typ        reflect.Type // struct type of the object
	listTyp    reflect.Type
	namespaced bool
	statusIdx  []int   // index of the Status field, nil if none
	specIdx    [][]int // fields other than TypeMeta, ObjectMeta, Status
	generation bool
	objs       map[types.NamespacedName]client.Object
	watchers   []*Watcher
	// nodeWatchers holds the Pod watches narrowed to one node, by node
	// name: a kubelet per node must not be handed every pod of the cluster.
	nodeWatchers map[string][]*Watcher
	// visible is when the last write of each object becomes visible; it
	// outlives the object briefly so that a re-created object is not seen
	// before its predecessor's deletion.
	visible map[types.NamespacedName]time.Duration
}

// Server is the simulated API server with its etcd.
type Server struct {
	e      *engine.Engine
	clk    *clock.Clock
	scheme *runtime.Scheme
	p      Params
	rng    *rand.Rand
	mapper meta.RESTMapper

	rev        uint64
	uids       uint64
	commits    uint64
	kinds      map[schema.GroupVersionKind]*kindStore
	byType     map[reflect.Type]*kindStore
	byListType map[reflect.Type]*kindStore
	all        []*Watcher
	watchSeq   uint64

	stats Stats

	// Intercept, if set, sees every request made through a Client before it
	// is served; a non-nil error fails the request with that error. For
	// fault injection (an unavailable API server, injected conflicts).
	Intercept func(Request) error
}

// Stats counts requests served, by verb.
type Stats struct {
	Get, List, Create, Update, Patch, Delete, Status uint64
	Conflicts                                        uint64
}

// clusterScoped lists the built-in kinds that have no namespace.
var clusterScoped = map[string]bool{
	"Node": true, "Namespace": true, "PersistentVolume": true, "StorageClass": true,
	"ClusterRole": true, "ClusterRoleBinding": true, "PriorityClass": true,
	"CustomResourceDefinition": true, "ComponentStatus": true,
}

// noGeneration lists built-in kinds with a spec whose strategy leaves
// metadata.generation unset (Kubernetes 1.32).
var noGeneration = map[string]bool{
	"Pod": true, "Node": true, "Service": true, "Namespace": true,
	"PersistentVolume": true, "PersistentVolumeClaim": true,
}

// New returns an empty server. Every kind of scheme that has a matching
// List kind can be stored.
func New(e *engine.Engine, clk *clock.Clock, scheme *runtime.Scheme, p Params) *Server {
	s := &Server{
		e: e, clk: clk, scheme: scheme, p: p,
		rng:        rand.New(rand.NewPCG(e.Rand().Uint64(), 0x5eed)),
		kinds:      map[schema.GroupVersionKind]*kindStore{},
		byType:     map[reflect.Type]*kindStore{},
		byListType: map[reflect.Type]*kindStore{},
	}
	m := meta.NewDefaultRESTMapper(nil)
	for gvk, typ := range scheme.AllKnownTypes() {
		if strings.HasSuffix(gvk.Kind, "List") || gvk.Version == runtime.APIVersionInternal {
			continue
		}
		listGVK := gvk.GroupVersion().WithKind(gvk.Kind + "List")
		listTyp, ok := scheme.AllKnownTypes()[listGVK]
		if !ok {
			continue
		}
		if _, ok := reflect.New(typ).Interface().(client.Object); !ok {
			continue
		}
		plural, _ := meta.UnsafeGuessKindToResource(gvk)
		ks := &kindStore{
			gvk: gvk, gr: plural.GroupResource(), typ: typ, listTyp: listTyp,
			namespaced: !clusterScoped[gvk.Kind],
			objs:       map[types.NamespacedName]client.Object{},
			visible:    map[types.NamespacedName]time.Duration{},
		}
		hasSpec := false
		for i := 0; i < typ.NumField(); i++ {
			f := typ.Field(i)
			switch f.Name {
			case "TypeMeta", "ObjectMeta":
			case "Status":
				ks.statusIdx = f.Index
			default:
				if f.Name == "Spec" {
					hasSpec = true
				}
				ks.specIdx = append(ks.specIdx, f.Index)
			}
		}
		ks.generation = hasSpec && !(gvk.Group == "" && noGeneration[gvk.Kind])
		if existing, ok := s.byType[typ]; ok && existing.gvk.Group == "" {
			// A Go type registered under several groups (rare): keep core.
			continue
		}
		s.kinds[gvk] = ks
		s.byType[typ] = ks
		s.byListType[listTyp] = ks
		scope := meta.RESTScopeNamespace
		if !ks.namespaced {
			scope = meta.RESTScopeRoot
		}
		m.Add(gvk, scope)
	}
	s.mapper = m
	return s
}

// SetResource overrides the plural resource name used in errors (the
// guessed default is the lower-cased plural of the kind; CRDs may differ).
func (s *Server) SetResource(gvk schema.GroupVersionKind, plural string) {
	if ks := s.kinds[gvk]; ks != nil {
		ks.gr.Resource = plural
	}
}

// Engine, Clock, Scheme, Params and RESTMapper expose what the server was built from.
func (s *Server) Engine() *engine.Engine      { return s.e }
func (s *Server) Clock() *clock.Clock         { return s.clk }
func (s *Server) Scheme() *runtime.Scheme     { return s.scheme }
func (s *Server) Params() Params              { return s.p }
func (s *Server) RESTMapper() meta.RESTMapper { return s.mapper }

// ResourceVersion is the current etcd revision.
func (s *Server) ResourceVersion() uint64 { return s.rev }

// Stats returns request counters.
func (s *Server) Stats() Stats { return s.stats }

// Kinds lists the stored kinds, sorted.
func (s *Server) Kinds() []schema.GroupVersionKind {
	out := make([]schema.GroupVersionKind, 0, len(s.kinds))
	for gvk := range s.kinds {
		out = append(out, gvk)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

// Count is the number of stored objects of a kind.
func (s *Server) Count(gvk schema.GroupVersionKind) int {
	if ks := s.kinds[gvk]; ks != nil {
		return len(ks.objs)
	}
	return 0
}

// Watch registers h for every change of prototype's kind, in all namespaces.
// Changes are delivered WatchDelay after they become visible (see commit):
// each object's changes in resourceVersion order, different objects' in the
// order they were committed. Each event carries the watcher's own deep copy.
// The current contents are not replayed: list first (at the same instant)
// and then watch.
func (s *Server) Watch(prototype client.Object, h func(ev WatchEvent)) *Watcher {
	ks, err := s.kindOf(prototype)
	if err != nil {
		panic(fmt.Sprintf("apiserver.Watch: %v", err))
	}
	s.watchSeq++
	w := &Watcher{h: h, kind: ks, seq: s.watchSeq}
	ks.watchers = append(ks.watchers, w)
	return w
}

// WatchShared is Watch without the per-event deep copy: the handler gets
// the server's own (immutable) copy and must neither change it nor
// anything it points to, as with a shared informer's objects. For the
// models that only read what they watch (scheduler, network, node
// lifecycle): with 10,000 pods, copies for every watcher of every pod
// write were half of all allocation.
func (s *Server) WatchShared(prototype client.Object, h func(ev WatchEvent)) *Watcher {
	w := s.Watch(prototype, h)
	w.shared = true
	return w
}

// WatchPodsOn is Watch of Pods narrowed to those whose spec.nodeName is
// node after the change (for Deleted, in their last state): the kubelet's
// field-selected watch. Event types are not translated (a pod being bound
// arrives as Modified), which is what a Pod watch filtered by the handler
// would see; only pods of other nodes are left out, at no cost per node.
func (s *Server) WatchPodsOn(node string, h func(ev WatchEvent)) *Watcher {
	ks, err := s.kindOf(&corev1.Pod{})
	if err != nil {
		panic(fmt.Sprintf("apiserver.WatchPodsOn: %v", err))
	}
	s.watchSeq++
	w := &Watcher{h: h, kind: ks, seq: s.watchSeq, node: node}
	if ks.nodeWatchers == nil {
		ks.nodeWatchers = map[string][]*Watcher{}
	}
	ks.nodeWatchers[node] = append(ks.nodeWatchers[node], w)
	return w
}

// WatchAll registers h for changes of every kind (the garbage collector's
// view).
func (s *Server) WatchAll(h func(ev WatchEvent)) *Watcher {
	s.watchSeq++
	w := &Watcher{h: h, seq: s.watchSeq}
	s.all = append(s.all, w)
	return w
}

// WatchAllShared is WatchAll without the per-event deep copy: the handler
// gets the server's own (immutable) copy and must neither change it nor
// anything it points to. For metadata-only observers such as the garbage
// collector, which see every write of every kind.
func (s *Server) WatchAllShared(h func(ev WatchEvent)) *Watcher {
	s.watchSeq++
	w := &Watcher{h: h, shared: true, seq: s.watchSeq}
	s.all = append(s.all, w)
	return w
}

// KindFor returns the kind of a typed object.
func (s *Server) KindFor(obj runtime.Object) (schema.GroupVersionKind, error) {
	ks, err := s.kindOf(obj)
	if err != nil {
		return schema.GroupVersionKind{}, err
	}
	return ks.gvk, nil
}

// New returns a new empty object of a stored kind.
func (s *Server) NewObject(gvk schema.GroupVersionKind) (client.Object, error) {
	ks := s.kinds[gvk]
	if ks == nil {
		return nil, fmt.Errorf("apiserver: kind %v not stored", gvk)
	}
	return reflect.New(ks.typ).Interface().(client.Object), nil
}

func (s *Server) kindOf(obj runtime.Object) (*kindStore, error) {
	t := reflect.TypeOf(obj)
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if ks := s.byType[t]; ks != nil {
		return ks, nil
	}
	if ks := s.byListType[t]; ks != nil {
		return ks, nil
	}
	gvk, err := apiutil.GVKForObject(obj, s.scheme)
	if err != nil {
		return nil, err
	}
	return nil, fmt.Errorf("apiserver: kind %v is not stored (only typed objects whose List kind is registered)", gvk)
}

// commit schedules watch deliveries of the change just stored (revision
// s.rev) at visibleAt + WatchDelay. Visibility is kept monotone per object,
// so every watcher sees each object's changes in resourceVersion order.
// Across objects, watchers see changes in the order they become visible,
// which is the order a real etcd would have committed them in: revisions
// here are assigned at the call, before the writer's latency has elapsed.
func (s *Server) commit(ks *kindStore, typ watch.EventType, obj client.Object, visibleAt time.Duration) {
	k := s.key(ks, obj.GetNamespace(), obj.GetName())
	if last, ok := ks.visible[k]; ok && visibleAt < last {
		visibleAt = last
	}
	ks.visible[k] = visibleAt
	if s.commits++; s.commits%4096 == 0 {
		s.pruneVisible()
	}
	at := visibleAt + s.p.WatchDelay
	rev := s.rev
	deliver := func(w *Watcher) {
		s.e.At(at, func() {
			if w.stopped {
				return
			}
			o := obj
			if !w.shared {
				o = obj.DeepCopyObject().(client.Object)
			}
			w.h(WatchEvent{Type: typ, Object: o, GVK: ks.gvk, ResourceVersion: rev})
		})
	}
	var byNode []*Watcher
	var node string
	if len(ks.nodeWatchers) > 0 {
		if pod, ok := obj.(*corev1.Pod); ok {
			node = pod.Spec.NodeName
			byNode = ks.nodeWatchers[node]
		}
	}
	// Kind watchers and this node's watchers, merged in registration order.
	ws := ks.watchers
	for len(ws) > 0 || len(byNode) > 0 {
		var w *Watcher
		if len(byNode) == 0 || (len(ws) > 0 && ws[0].seq < byNode[0].seq) {
			w, ws = ws[0], ws[1:]
		} else {
			w, byNode = byNode[0], byNode[1:]
		}
		if !w.stopped {
			deliver(w)
		}
	}
	for _, w := range s.all {
		if !w.stopped {
			deliver(w)
		}
	}
	s.pruneWatchers(ks)
	if nw, ok := ks.nodeWatchers[node]; ok {
		if nw = dropStopped(nw); len(nw) == 0 {
			delete(ks.nodeWatchers, node)
		} else {
			ks.nodeWatchers[node] = nw
		}
	}
}

// pruneVisible forgets visibility times that are past: a new write is never
// visible before now anyway.
func (s *Server) pruneVisible() {
	now := s.e.Now()
	for _, ks := range s.kinds {
		for k, t := range ks.visible {
			if t <= now {
				delete(ks.visible, k)
			}
		}
	}
}

func (s *Server) pruneWatchers(ks *kindStore) {
	ks.watchers = dropStopped(ks.watchers)
	s.all = dropStopped(s.all)
}

func dropStopped(ws []*Watcher) []*Watcher {
	for i, w := range ws {
		if w.stopped {
			live := append([]*Watcher(nil), ws[:i]...)
			for _, w := range ws[i+1:] {
				if !w.stopped {
					live = append(live, w)
				}
			}
			return live
		}
	}
	return ws
}

// copyInto sets *dst = *src for two pointers to the same struct type.
func copyInto(dst, src runtime.Object) {
	reflect.ValueOf(dst).Elem().Set(reflect.ValueOf(src).Elem())
}

func (ks *kindStore) specEqual(a, b client.Object) bool {
	va, vb := reflect.ValueOf(a).Elem(), reflect.ValueOf(b).Elem()
	for _, idx := range ks.specIdx {
		if !equality.Semantic.DeepEqual(va.FieldByIndex(idx).Interface(), vb.FieldByIndex(idx).Interface()) {
			return false
		}
	}
	return true
}

// status returns obj's Status field (a struct value).
func (ks *kindStore) status(obj client.Object) any {
	return reflect.ValueOf(obj).Elem().FieldByIndex(ks.statusIdx).Interface()
}

// copyStatusDeep sets dst's Status to a deep copy of src's, through the
// status type's generated DeepCopy when it has one.
func (ks *kindStore) copyStatusDeep(dst, src client.Object) {
	f := reflect.ValueOf(src).Elem().FieldByIndex(ks.statusIdx)
	if m := f.Addr().MethodByName("DeepCopy"); m.IsValid() {
		reflect.ValueOf(dst).Elem().FieldByIndex(ks.statusIdx).Set(m.Call(nil)[0].Elem())
		return
	}
	ks.copyStatus(dst, src.DeepCopyObject().(client.Object))
}

// copyStatus sets dst's Status to src's.
func (ks *kindStore) copyStatus(dst, src client.Object) {
	reflect.ValueOf(dst).Elem().FieldByIndex(ks.statusIdx).Set(reflect.ValueOf(src).Elem().FieldByIndex(ks.statusIdx))
}

func (s *Server) newUID() types.UID {
	s.uids++
	return types.UID(fmt.Sprintf("00000000-0000-4000-8000-%012x", s.uids))
}

const nameChars = "bcdfghjklmnpqrstvwxz2456789" // apiserver's utilrand alphabet

func (s *Server) randSuffix() string {
	var b [5]byte
	for i := range b {
		b[i] = nameChars[s.rng.IntN(len(nameChars))]
	}
	return string(b[:])
}

// latency draws one request latency.
func (s *Server) latency() time.Duration {
	l := s.p.RequestLatency
	if j := s.p.RequestLatencyJitter; j > 0 && l > 0 {
		f := 1 + j*(2*s.rng.Float64()-1)
		l = time.Duration(float64(l) * f)
	}
	return l
}

func podGraceful(pod *corev1.Pod) bool {
	return pod.Spec.NodeName != "" && pod.Status.Phase != corev1.PodSucceeded && pod.Status.Phase != corev1.PodFailed
}

var emptyGVK = schema.GroupVersionKind{}

// ListObjects returns deep copies of every stored object of prototype's kind
// (sorted by namespace and name) and the current revision, as one consistent
// snapshot: the initial list of an informer. It charges nothing.
func (s *Server) ListObjects(prototype runtime.Object) ([]client.Object, uint64, error) {
	ks, err := s.kindOf(prototype)
	if err != nil {
		return nil, 0, err
	}
	objs, err := s.list(ks, &client.ListOptions{})
	if err != nil {
		return nil, 0, err
	}
	out := make([]client.Object, len(objs))
	for i, o := range objs {
		out[i] = o.DeepCopyObject().(client.Object)
	}
	return out, s.rev, nil
}

// GroupResource is the resource of a stored kind, for errors.
func (s *Server) GroupResource(obj runtime.Object) (schema.GroupResource, error) {
	ks, err := s.kindOf(obj)
	if err != nil {
		return schema.GroupResource{}, err
	}
	return ks.gr, nil
}

// Namespaced reports whether a stored kind is namespaced.
func (s *Server) Namespaced(gvk schema.GroupVersionKind) bool {
	ks := s.kinds[gvk]
	return ks != nil && ks.namespaced
}
