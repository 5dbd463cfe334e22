// Package gc models kube-controller-manager's garbage collector: an
// owner/dependent graph built from watches of every kind, and two work
// queues, attemptToDelete and attemptToOrphan, served by a pool of workers
// whose API requests go through one rate-limited client. Deletion cascades
// therefore take the time the real collector takes: about two requests
// (a live GET of the item, its DELETE) per dependent, plus owner lookups
// that miss the absent-owner cache, at the client's QPS.
//
// Semantics follow pkg/controller/garbagecollector:
//   - a dependent whose owners are all absent is deleted (with the
//     propagation its own finalizers ask for, Background by default);
//   - a dependent with a solid (existing) owner keeps living, and references
//     to absent owners are removed from it;
//   - an owner being deleted in the foreground (foregroundDeletion finalizer)
//     makes its dependents be deleted (in the foreground themselves if they
//     have dependents); the finalizer is removed once no dependent with
//     blockOwnerDeletion is left, which deletes the owner;
//   - an owner with the orphan finalizer has the owner reference removed
//     from each dependent, then loses the finalizer.
package gc

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"sluice.dev/sluice/sim/apiserver"
	"sluice.dev/sluice/sim/driver"
	"sluice.dev/sluice/sim/engine"
	"sluice.dev/sluice/sim/params"
)

//go:embed params.yaml
var defaultParams []byte

// Params of the garbage collector model; see params.yaml for sources.
type Params struct {
	Workers int           `yaml:"workers"`
	QPS     float64       `yaml:"qps"`
	Burst   int           `yaml:"burst"`
	ItemCPU time.Duration `yaml:"itemCPU"`
}

// DefaultParams returns the embedded defaults.
func DefaultParams() Params {
	p, err := LoadParams()
	if err != nil {
		panic(err)
	}
	return p
}

// LoadParams returns the embedded defaults overridden by the given files.
func LoadParams(overrides ...string) (Params, error) {
	var p Params
	if err := params.Load(defaultParams, &p, overrides...); err != nil {
		return p, err
	}
	if p.Workers < 1 || p.QPS < 0 || p.Burst < 0 || p.ItemCPU < 0 {
		return p, fmt.Errorf("gc params: workers must be >= 1, qps, burst and itemCPU >= 0: %+v", p)
	}
	return p, nil
}

type node struct {
	uid       types.UID
	gvk       schema.GroupVersionKind
	namespace string
	name      string
	owners    []metav1.OwnerReference
	// dependents by uid; a map only for membership, iteration is sorted.
	dependents map[types.UID]*node
	virtual    bool // referenced as an owner, not observed
	deleting   bool // deletionTimestamp set
	// deletingDependents: being deleted with the foregroundDeletion finalizer.
	deletingDependents bool
}

func (n *node) sortedDependents() []*node {
	out := make([]*node, 0, len(n.dependents))
	for _, d := range n.dependents {
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].uid < out[j].uid })
	return out
}

// blocking lists dependents whose reference to n blocks its deletion.
func (n *node) blocking() []*node {
	var out []*node
	for _, d := range n.sortedDependents() {
		for _, r := range d.owners {
			if r.UID == n.uid && r.BlockOwnerDeletion != nil && *r.BlockOwnerDeletion {
				out = append(out, d)
				break
			}
		}
	}
	return out
}

// Stats count the collector's work.
type Stats struct {
	Deleted, Orphaned, FinalizersRemoved, RefsRemoved uint64
	Processed, Errors                                 uint64
}

// Collector is the garbage collector.
type Collector struct {
	srv    *apiserver.Server
	e      *engine.Engine
	p      Params
	c      *apiserver.Client
	graph  map[types.UID]*node
	absent map[types.UID]bool

	toDelete *driver.Queue[types.UID]
	toOrphan *driver.Queue[types.UID]
	idle     int
	kicked   bool
	watch    *apiserver.Watcher
	running  bool

	stats Stats
	// OnDelete, if set, is called when the collector deletes an object.
	OnDelete func(gvk schema.GroupVersionKind, key types.NamespacedName, policy metav1.DeletionPropagation)
}

// New returns a stopped collector.
func New(srv *apiserver.Server, p Params) *Collector {
	return &Collector{srv: srv, e: srv.Engine(), p: p}
}

// Stats returns counters.
func (g *Collector) Stats() Stats { return g.stats }

// Requests is the number of API requests the collector has made.
func (g *Collector) Requests() uint64 {
	if g.c == nil {
		return 0
	}
	return g.c.Requests()
}

// Pending is the number of queued items of both queues.
func (g *Collector) Pending() int { return g.toDelete.Len() + g.toOrphan.Len() }

// Start builds the graph from the current contents of every kind and
// watches all further changes.
func (g *Collector) Start() {
	if g.running {
		return
	}
	g.running = true
	g.c = g.srv.NewClient(apiserver.ClientOptions{User: "generic-garbage-collector", Latency: true, Limited: g.p.QPS > 0, QPS: g.p.QPS, Burst: g.p.Burst})
	g.graph = map[types.UID]*node{}
	g.absent = map[types.UID]bool{}
	dp := driver.DefaultParams()
	g.toDelete = driver.NewQueue[types.UID](g.e, dp, g.kick)
	g.toOrphan = driver.NewQueue[types.UID](g.e, dp, g.kick)
	g.idle = max(g.p.Workers, 1)
	for _, gvk := range g.srv.Kinds() {
		proto, _ := g.srv.NewObject(gvk)
		objs, _, err := g.srv.ListObjects(proto)
		if err != nil {
			continue
		}
		for _, o := range objs {
			g.observe(gvk, apiserver.Added, o)
		}
	}
	// The collector only reads metadata and keeps nothing that it changes.
	g.watch = g.srv.WatchAllShared(func(ev apiserver.WatchEvent) { g.observe(ev.GVK, ev.Type, ev.Object) })
}

// Stop stops the collector; its graph and queues are dropped.
func (g *Collector) Stop() {
	if !g.running {
		return
	}
	g.running = false
	g.watch.Stop()
	g.toDelete.ShutDown()
	g.toOrphan.ShutDown()
}

func hasFinalizer(o client.Object, f string) bool { return slices.Contains(o.GetFinalizers(), f) }

// observe is the graph builder: it applies one change to the graph and
// queues the items the change may concern.
func (g *Collector) observe(gvk schema.GroupVersionKind, typ watch.EventType, o client.Object) {
	uid := o.GetUID()
	n := g.graph[uid]
	if typ == apiserver.Deleted {
		if n == nil {
			return
		}
		// As graph_builder does: a deleted owner with dependents goes into
		// the absent-owner cache, sparing each dependent a live owner GET.
		delete(g.graph, uid)
		if len(n.dependents) > 0 {
			g.absent[uid] = true
		}
		for _, r := range n.owners {
			if owner := g.graph[r.UID]; owner != nil {
				delete(owner.dependents, uid)
				if owner.deletingDependents {
					g.toDelete.Add(owner.uid)
				}
			}
		}
		for _, d := range n.sortedDependents() {
			g.toDelete.Add(d.uid)
		}
		return
	}
	if n == nil {
		n = &node{uid: uid, dependents: map[types.UID]*node{}}
		g.graph[uid] = n
	}
	wasVirtual := n.virtual
	n.virtual = false
	n.gvk, n.namespace, n.name = gvk, o.GetNamespace(), o.GetName()
	oldOwners := n.owners
	n.owners = append([]metav1.OwnerReference(nil), o.GetOwnerReferences()...)
	// Owner references removed: unlink; a foreground owner may proceed.
	for _, r := range oldOwners {
		if !slices.ContainsFunc(n.owners, func(x metav1.OwnerReference) bool { return x.UID == r.UID }) {
			if owner := g.graph[r.UID]; owner != nil {
				delete(owner.dependents, uid)
				if owner.deletingDependents {
					g.toDelete.Add(owner.uid)
				}
			}
		}
	}
	for _, r := range n.owners {
		owner := g.graph[r.UID]
		if owner == nil {
			// Referenced but never seen: a virtual node, verified live.
			owner = &node{uid: r.UID, dependents: map[types.UID]*node{}, virtual: true, namespace: o.GetNamespace(), name: r.Name,
				gvk: schema.FromAPIVersionAndKind(r.APIVersion, r.Kind)}
			g.graph[r.UID] = owner
			g.toDelete.Add(r.UID)
		}
		owner.dependents[uid] = n
		if g.absent[r.UID] {
			g.toDelete.Add(uid)
		}
	}
	if wasVirtual {
		g.toDelete.Add(uid)
	}
	n.deleting = o.GetDeletionTimestamp() != nil
	if n.deleting && hasFinalizer(o, apiserver.FinalizerOrphan) {
		g.toOrphan.Add(uid)
	}
	startsForeground := n.deleting && hasFinalizer(o, apiserver.FinalizerForeground) && !n.deletingDependents
	n.deletingDependents = n.deleting && hasFinalizer(o, apiserver.FinalizerForeground)
	if startsForeground {
		for _, d := range n.sortedDependents() {
			g.toDelete.Add(d.uid)
		}
		g.toDelete.Add(uid)
	}
}

// kick wakes idle workers (in their own event, never inside a watch handler).
func (g *Collector) kick() {
	if g.kicked || g.idle == 0 || !g.running || g.toDelete.Len()+g.toOrphan.Len() == 0 {
		return
	}
	g.kicked = true
	g.e.After(0, g.dispatch)
}

func (g *Collector) dispatch() {
	g.kicked = false
	for g.running && g.idle > 0 && g.toDelete.Len()+g.toOrphan.Len() > 0 {
		// Workers wait for the client's rate-limit token before they start
		// (see the driver): the pool cannot book requests far ahead.
		now := g.e.Now()
		if ready := g.c.Limiter().ReadyAt(now); ready > now {
			g.kicked = true
			g.e.At(ready, g.dispatch)
			return
		}
		q, uid, ok := g.toOrphan, types.UID(""), false
		if uid, ok = g.toOrphan.Get(); !ok {
			q = g.toDelete
			if uid, ok = g.toDelete.Get(); !ok {
				return
			}
		}
		g.idle--
		g.run(q, uid)
	}
}

func (g *Collector) run(q *driver.Queue[types.UID], uid types.UID) {
	start := g.e.Now()
	sess := g.c.Begin()
	var err error
	if q == g.toOrphan {
		err = g.orphan(uid)
	} else {
		err = g.attemptToDelete(uid)
	}
	g.c.End()
	end := start + g.p.ItemCPU + sess.Elapsed
	watch := g.watch
	g.e.At(end, func() {
		if !g.running || g.watch != watch {
			return
		}
		g.stats.Processed++
		if err != nil {
			g.stats.Errors++
			q.AddRateLimited(uid)
		} else {
			q.Forget(uid)
		}
		q.Done(uid)
		g.idle++
		g.kick()
	})
}

var ctx = context.Background()

// live reads an object from the API server (the collector checks the live
// state before acting, not its graph).
func (g *Collector) live(gvk schema.GroupVersionKind, namespace, name string) (client.Object, error) {
	o, err := g.srv.NewObject(gvk)
	if err != nil {
		return nil, errNoKind
	}
	if !g.srv.Namespaced(gvk) {
		namespace = ""
	}
	err = g.c.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, o)
	return o, err
}

func (g *Collector) attemptToDelete(uid types.UID) error {
	n := g.graph[uid]
	if n == nil {
		return nil
	}
	if n.virtual {
		o, err := g.live(n.gvk, n.namespace, n.name)
		if apierrors.IsNotFound(err) || (err == nil && o.GetUID() != uid) || errors.Is(err, errNoKind) {
			// The owner does not exist: forget it and re-examine its dependents.
			delete(g.graph, uid)
			g.absent[uid] = true
			for _, d := range n.sortedDependents() {
				g.toDelete.Add(d.uid)
			}
			return nil
		}
		return err // present: the watch will make it real
	}
	latest, err := g.live(n.gvk, n.namespace, n.name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if latest.GetUID() != uid {
		return nil
	}
	if latest.GetDeletionTimestamp() != nil && !hasFinalizer(latest, apiserver.FinalizerForeground) {
		return nil
	}
	if hasFinalizer(latest, apiserver.FinalizerForeground) {
		return g.processDeletingDependents(n, latest)
	}
	refs := latest.GetOwnerReferences()
	if len(refs) == 0 {
		return nil
	}
	var solid, dangling, waiting []metav1.OwnerReference
	for _, r := range refs {
		if g.absent[r.UID] {
			dangling = append(dangling, r)
			continue
		}
		owner, err := g.live(schema.FromAPIVersionAndKind(r.APIVersion, r.Kind), latest.GetNamespace(), r.Name)
		switch {
		case apierrors.IsNotFound(err) || errors.Is(err, errNoKind) || (err == nil && owner.GetUID() != r.UID):
			g.absent[r.UID] = true
			dangling = append(dangling, r)
		case err != nil:
			return err
		case owner.GetDeletionTimestamp() != nil && hasFinalizer(owner, apiserver.FinalizerForeground):
			waiting = append(waiting, r)
		default:
			solid = append(solid, r)
		}
	}
	switch {
	case len(solid) > 0:
		if len(dangling)+len(waiting) == 0 {
			return nil
		}
		// Keep the object; drop the references to owners that are gone or going.
		keep := solid
		g.stats.RefsRemoved += uint64(len(refs) - len(keep))
		return g.patchOwnerRefs(latest, keep)
	case len(waiting) > 0 && len(n.dependents) > 0:
		return g.delete(n, latest, metav1.DeletePropagationForeground)
	default:
		policy := metav1.DeletePropagationBackground
		switch {
		case hasFinalizer(latest, apiserver.FinalizerOrphan):
			policy = metav1.DeletePropagationOrphan
		case hasFinalizer(latest, apiserver.FinalizerForeground):
			policy = metav1.DeletePropagationForeground
		}
		return g.delete(n, latest, policy)
	}
}

func (g *Collector) delete(n *node, latest client.Object, policy metav1.DeletionPropagation) error {
	uid := latest.GetUID()
	err := g.c.Delete(ctx, latest, client.PropagationPolicy(policy), client.Preconditions{UID: &uid})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err == nil {
		g.stats.Deleted++
		if g.OnDelete != nil {
			g.OnDelete(n.gvk, client.ObjectKeyFromObject(latest), policy)
		}
	}
	return err
}

// processDeletingDependents handles an owner in foreground deletion.
func (g *Collector) processDeletingDependents(n *node, latest client.Object) error {
	blocking := n.blocking()
	if len(blocking) == 0 {
		return g.removeFinalizer(latest, apiserver.FinalizerForeground)
	}
	for _, d := range blocking {
		if !d.deleting {
			g.toDelete.Add(d.uid)
		}
	}
	return nil
}

func (g *Collector) removeFinalizer(latest client.Object, f string) error {
	var fins []string
	for _, x := range latest.GetFinalizers() {
		if x != f {
			fins = append(fins, x)
		}
	}
	latest.SetFinalizers(fins)
	err := g.c.Update(ctx, latest)
	if err == nil {
		g.stats.FinalizersRemoved++
	}
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// patchOwnerRefs sets an object's owner references with a merge patch
// without a resourceVersion, as the collector's patches do.
func (g *Collector) patchOwnerRefs(o client.Object, refs []metav1.OwnerReference) error {
	if refs == nil {
		refs = []metav1.OwnerReference{}
	}
	data, err := json.Marshal(map[string]any{"metadata": map[string]any{"ownerReferences": refs, "uid": o.GetUID()}})
	if err != nil {
		return err
	}
	err = g.c.Patch(ctx, o, client.RawPatch(types.MergePatchType, data))
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// orphan removes the owner's references from its dependents, then the
// orphan finalizer from the owner.
func (g *Collector) orphan(uid types.UID) error {
	n := g.graph[uid]
	if n == nil {
		return nil
	}
	for _, d := range n.sortedDependents() {
		var keep []metav1.OwnerReference
		for _, r := range d.owners {
			if r.UID != uid {
				keep = append(keep, r)
			}
		}
		o, err := g.srv.NewObject(d.gvk)
		if err != nil {
			return err
		}
		o.SetNamespace(d.namespace)
		o.SetName(d.name)
		o.SetUID(d.uid)
		if err := g.patchOwnerRefs(o, keep); err != nil {
			return err
		}
		g.stats.Orphaned++
	}
	latest, err := g.live(n.gvk, n.namespace, n.name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if latest.GetUID() != uid || !hasFinalizer(latest, apiserver.FinalizerOrphan) {
		return nil
	}
	return g.removeFinalizer(latest, apiserver.FinalizerOrphan)
}

var errNoKind = errors.New("gc: kind not stored")
