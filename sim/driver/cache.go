package driver

import (
	"context"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	crcache "sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"sluice.dev/sluice/sim/apiserver"
)

// informer is one kind's cache, fed by a server watch: what a
// controller-runtime informer holds, as of the watch delay.
type informer struct {
	gvk      schema.GroupVersionKind
	gr       schema.GroupResource
	objs     map[types.NamespacedName]client.Object
	watch    *apiserver.Watcher
	handlers []func(ev apiserver.WatchEvent, old client.Object)
	rev      uint64
	// syncedAt is when the initial list request completed.
	syncedAt time.Duration
	sel      selector
}

// selector restricts what an informer holds, as cache.Options.ByObject (or
// the cache defaults) restrict a controller-runtime informer's list/watch.
type selector struct {
	label      labels.Selector
	field      fields.Selector
	namespaces map[string]bool // nil = all
}

func (s selector) matches(o client.Object) bool {
	if s.namespaces != nil && !s.namespaces[o.GetNamespace()] {
		return false
	}
	if s.label != nil && !s.label.Matches(labels.Set(o.GetLabels())) {
		return false
	}
	if s.field != nil && !s.field.Empty() {
		ok, err := apiserver.MatchFields(o, s.field)
		return err == nil && ok
	}
	return true
}

func selectorFor(opts crcache.Options, proto client.Object, namespaced bool) selector {
	s := selector{label: opts.DefaultLabelSelector, field: opts.DefaultFieldSelector}
	nss := opts.DefaultNamespaces
	t := objType(proto)
	for o, by := range opts.ByObject {
		if objType(o) != t {
			continue
		}
		if by.Label != nil {
			s.label = by.Label
		}
		if by.Field != nil {
			s.field = by.Field
		}
		if by.Namespaces != nil {
			nss = by.Namespaces
		}
	}
	if namespaced && len(nss) > 0 {
		s.namespaces = map[string]bool{}
		for ns := range nss {
			s.namespaces[ns] = true
		}
		if s.namespaces[metav1.NamespaceAll] {
			s.namespaces = nil
		}
	}
	return s
}

// cache holds the manager's informers, keyed by Go type.
type cache struct {
	srv       *apiserver.Server
	c         *apiserver.Client // the manager's connection (its rate limiter)
	opts      crcache.Options
	informers map[reflect.Type]*informer
}

func newCache(srv *apiserver.Server, c *apiserver.Client, opts crcache.Options) *cache {
	return &cache{srv: srv, c: c, opts: opts, informers: map[reflect.Type]*informer{}}
}

func objType(o runtime.Object) reflect.Type {
	t := reflect.TypeOf(o)
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

// informerFor returns the informer of obj's kind, starting it (list, then
// watch, at the same virtual instant) if needed. The list is one request on
// the manager's connection, charged to its open session if any (a reconcile
// that reads a kind nobody watched yet waits for the list, as
// controller-runtime's lazily started informers make it wait).
func (c *cache) informerFor(obj runtime.Object) (*informer, error) {
	t := objType(obj)
	if inf, ok := c.informers[t]; ok {
		return inf, nil
	}
	proto := obj
	if l, ok := obj.(client.ObjectList); ok {
		gvk, err := c.srv.KindFor(l)
		if err != nil {
			return nil, err
		}
		p, err := c.srv.NewObject(gvk)
		if err != nil {
			return nil, err
		}
		proto = p
		if inf, ok := c.informers[objType(p)]; ok {
			c.informers[t] = inf
			return inf, nil
		}
	}
	gvk, err := c.srv.KindFor(proto)
	if err != nil {
		return nil, err
	}
	gr, _ := c.srv.GroupResource(proto)
	objs, rev, err := c.srv.ListObjects(proto)
	if err != nil {
		return nil, err
	}
	inf := &informer{gvk: gvk, gr: gr, objs: make(map[types.NamespacedName]client.Object, len(objs)), rev: rev,
		sel: selectorFor(c.opts, proto.(client.Object), c.srv.Namespaced(gvk))}
	for _, o := range objs {
		if inf.sel.matches(o) {
			inf.objs[client.ObjectKeyFromObject(o)] = o
		}
	}
	// The server filters by selector, so the response holds the matches only.
	inf.syncedAt = c.c.ChargeList(len(inf.objs))
	inf.watch = c.srv.Watch(proto.(client.Object), func(ev apiserver.WatchEvent) {
		k := client.ObjectKeyFromObject(ev.Object)
		old, had := inf.objs[k]
		inf.rev = ev.ResourceVersion
		// A selective watch sees an object that stops matching as deleted
		// and one that starts matching as added.
		switch {
		case ev.Type == apiserver.Deleted || !inf.sel.matches(ev.Object):
			if !had {
				return
			}
			delete(inf.objs, k)
			ev.Type = apiserver.Deleted
		case !had:
			inf.objs[k] = ev.Object
			ev.Type = apiserver.Added
		default:
			inf.objs[k] = ev.Object
		}
		for _, h := range inf.handlers {
			h(ev, old)
		}
	})
	c.informers[objType(proto)] = inf
	if t != objType(proto) {
		c.informers[t] = inf
	}
	return inf, nil
}

func (c *cache) stop() {
	for _, inf := range c.informers {
		inf.watch.Stop()
	}
	c.informers = map[reflect.Type]*informer{}
}

// cachedClient is what reconcilers get: reads from the cache, writes to the
// API server through the manager's connection.
type cachedClient struct {
	m *Manager
}

var _ client.Client = (*cachedClient)(nil)

func (cc *cachedClient) conn() *apiserver.Client { return cc.m.conn }

func (cc *cachedClient) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	inf, err := cc.m.cache.informerFor(obj)
	if err != nil {
		return err
	}
	if !cc.m.srv.Namespaced(inf.gvk) {
		key.Namespace = ""
	}
	o, ok := inf.objs[key]
	if !ok {
		return apierrors.NewNotFound(inf.gr, key.Name)
	}
	reflect.ValueOf(obj).Elem().Set(reflect.ValueOf(o.DeepCopyObject()).Elem())
	return nil
}

func (cc *cachedClient) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	inf, err := cc.m.cache.informerFor(list)
	if err != nil {
		return err
	}
	lo := (&client.ListOptions{}).ApplyOptions(opts)
	var sel labels.Selector = lo.LabelSelector
	var items []runtime.Object
	var keys []types.NamespacedName
	for k, o := range inf.objs {
		if lo.Namespace != "" && k.Namespace != lo.Namespace {
			continue
		}
		if sel != nil && !sel.Matches(labels.Set(o.GetLabels())) {
			continue
		}
		if lo.FieldSelector != nil && !lo.FieldSelector.Empty() {
			ok, err := apiserver.MatchFields(o, lo.FieldSelector)
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
		}
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].Namespace != keys[j].Namespace {
			return keys[i].Namespace < keys[j].Namespace
		}
		return keys[i].Name < keys[j].Name
	})
	for _, k := range keys {
		items = append(items, inf.objs[k].DeepCopyObject())
	}
	if err := meta.SetList(list, items); err != nil {
		return fmt.Errorf("driver cache: %w", err)
	}
	list.SetResourceVersion(strconv.FormatUint(inf.rev, 10))
	return nil
}

func (cc *cachedClient) Create(ctx context.Context, obj client.Object, opts ...client.CreateOption) error {
	return cc.conn().Create(ctx, obj, opts...)
}
func (cc *cachedClient) Delete(ctx context.Context, obj client.Object, opts ...client.DeleteOption) error {
	return cc.conn().Delete(ctx, obj, opts...)
}
func (cc *cachedClient) Update(ctx context.Context, obj client.Object, opts ...client.UpdateOption) error {
	return cc.conn().Update(ctx, obj, opts...)
}
func (cc *cachedClient) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
	return cc.conn().Patch(ctx, obj, patch, opts...)
}
func (cc *cachedClient) DeleteAllOf(ctx context.Context, obj client.Object, opts ...client.DeleteAllOfOption) error {
	return cc.conn().DeleteAllOf(ctx, obj, opts...)
}
func (cc *cachedClient) Status() client.SubResourceWriter { return cc.conn().Status() }
func (cc *cachedClient) SubResource(sub string) client.SubResourceClient {
	return cc.conn().SubResource(sub)
}
func (cc *cachedClient) Scheme() *runtime.Scheme     { return cc.conn().Scheme() }
func (cc *cachedClient) RESTMapper() meta.RESTMapper { return cc.conn().RESTMapper() }
func (cc *cachedClient) GroupVersionKindFor(obj runtime.Object) (schema.GroupVersionKind, error) {
	return cc.conn().GroupVersionKindFor(obj)
}
func (cc *cachedClient) IsObjectNamespaced(obj runtime.Object) (bool, error) {
	return cc.conn().IsObjectNamespaced(obj)
}
