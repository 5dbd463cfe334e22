package apiserver

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Session accumulates the virtual time a sequence of synchronous requests
// takes: the driver opens one per reconcile. All fields are read-only for
// callers.
type Session struct {
	// Elapsed is the virtual time spent in requests so far: latencies plus
	// waits for rate-limit tokens.
	Elapsed time.Duration
	// QPSWait is the part of Elapsed spent waiting for tokens.
	QPSWait time.Duration
	// Requests is the number of requests made.
	Requests int
}

// TokenBucket is client-go's client-side rate limiter (golang.org/x/time/rate
// semantics) in virtual time: tokens accrue at QPS up to Burst; a request
// takes one token, waiting for it if none is left.
type TokenBucket struct {
	QPS    float64
	Burst  int
	tokens float64
	last   time.Duration
	init   bool
}

// NewTokenBucket returns a full bucket.
func NewTokenBucket(qps float64, burst int) *TokenBucket {
	return &TokenBucket{QPS: qps, Burst: burst}
}

// Reserve takes a token for a request issued at virtual time t and returns
// how long the request must wait for it.
func (b *TokenBucket) Reserve(t time.Duration) time.Duration {
	if b == nil || b.QPS <= 0 {
		return 0
	}
	if !b.init {
		b.init, b.tokens, b.last = true, float64(b.Burst), t
	}
	if t > b.last {
		b.tokens += (t - b.last).Seconds() * b.QPS
		if b.tokens > float64(b.Burst) {
			b.tokens = float64(b.Burst)
		}
		b.last = t
	}
	b.tokens--
	if b.tokens >= 0 {
		return 0
	}
	// The token is owed; it arrives when the deficit is paid back. Requests
	// issued "earlier" than last (another worker's timeline) wait from last.
	wait := time.Duration(-b.tokens / b.QPS * float64(time.Second))
	return b.last + wait - t
}

// ReadyAt is the earliest time not before t at which a request would get a
// token without waiting (t itself if the bucket is unlimited or has one).
func (b *TokenBucket) ReadyAt(t time.Duration) time.Duration {
	if b == nil || b.QPS <= 0 || !b.init {
		return t
	}
	tokens, ref := b.tokens, b.last
	if t > ref {
		tokens = min(float64(b.Burst), tokens+(t-ref).Seconds()*b.QPS)
		ref = t
	}
	if tokens >= 1 {
		return t
	}
	return ref + time.Duration((1-tokens)/b.QPS*float64(time.Second))
}

// ClientOptions configure a client.
type ClientOptions struct {
	// User names the client (for logs and stats).
	User string
	// Latency charges RequestLatency per request to the current session.
	Latency bool
	// Limited applies the Params' client QPS and burst.
	Limited bool
	// QPS and Burst override Params when Limited is set and QPS > 0.
	QPS   float64
	Burst int
}

// Client is a controller-runtime client.Client on the server. Reads see the
// store as of the call; writes are applied at the call and become visible
// on watches after the session's accumulated time plus WatchDelay.
type Client struct {
	s       *Server
	o       ClientOptions
	limiter *TokenBucket
	sess    *Session
	reqs    uint64
}

var _ client.Client = (*Client)(nil)

// Client returns a direct client: no latency, no rate limit; writes become
// visible on watches at now + WatchDelay. For simulated components that
// account their own time (scheduler, kubelet, tests).
func (s *Server) Client(user string) client.Client {
	return s.NewClient(ClientOptions{User: user})
}

// NewClient returns a client with the given options. A controller manager's
// client is NewClient(ClientOptions{User: name, Latency: true, Limited: true}).
func (s *Server) NewClient(o ClientOptions) *Client {
	c := &Client{s: s, o: o}
	if o.Limited {
		qps, burst := s.p.ClientQPS, s.p.ClientBurst
		if o.QPS > 0 {
			qps, burst = o.QPS, o.Burst
		}
		c.limiter = NewTokenBucket(qps, burst)
	}
	return c
}

// Begin opens a session: requests until End are charged to it. Sessions do
// not nest; the simulator is single-threaded, so one reconcile runs at a time.
func (c *Client) Begin() *Session {
	c.sess = &Session{}
	return c.sess
}

// End closes the current session and returns it.
func (c *Client) End() *Session {
	s := c.sess
	c.sess = nil
	return s
}

// Requests is the number of requests the client has made.
func (c *Client) Requests() uint64 { return c.reqs }

// Limiter is the client's token bucket (nil if unlimited).
func (c *Client) Limiter() *TokenBucket { return c.limiter }

// charge accounts one request and returns the virtual time at which its
// effects become visible.
func (c *Client) charge() time.Duration { return c.chargeExtra(0) }

// chargeExtra is charge with additional latency (a large response).
func (c *Client) chargeExtra(extra time.Duration) time.Duration {
	c.reqs++
	now := c.s.e.Now()
	if !c.o.Latency && c.limiter == nil {
		return now
	}
	sess := c.sess
	if sess == nil {
		sess = &Session{} // a request outside any session: charged alone
	}
	wait := c.limiter.Reserve(now + sess.Elapsed)
	var lat time.Duration
	if c.o.Latency {
		lat = c.s.latency() + extra
	}
	sess.Elapsed += wait + lat
	sess.QPSWait += wait
	sess.Requests++
	return now + sess.Elapsed
}

func (c *Client) Scheme() *runtime.Scheme     { return c.s.scheme }
func (c *Client) RESTMapper() meta.RESTMapper { return c.s.mapper }

func (c *Client) GroupVersionKindFor(obj runtime.Object) (schema.GroupVersionKind, error) {
	return c.s.KindFor(obj)
}

func (c *Client) IsObjectNamespaced(obj runtime.Object) (bool, error) {
	ks, err := c.s.kindOf(obj)
	if err != nil {
		return false, err
	}
	return ks.namespaced, nil
}

func (c *Client) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	ks, err := c.s.kindOf(obj)
	if err != nil {
		return err
	}
	c.charge()
	if err := c.intercept("get", "", ks, key.Namespace, key.Name); err != nil {
		return err
	}
	o, err := c.s.get(ks, key.Namespace, key.Name)
	if err != nil {
		return err
	}
	copyInto(obj, o.DeepCopyObject())
	return nil
}

func (c *Client) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	ks, err := c.s.kindOf(list)
	if err != nil {
		return err
	}
	lo := (&client.ListOptions{}).ApplyOptions(opts)
	if err := c.intercept("list", "", ks, lo.Namespace, ""); err != nil {
		c.charge()
		return err
	}
	objs, err := c.s.list(ks, lo)
	c.chargeExtra(time.Duration(len(objs)) * c.s.p.ListLatencyPerObject)
	if err != nil {
		return err
	}
	return fillList(list, objs, c.s.rev)
}

// fillList sets list's items to deep copies of objs.
func fillList(list client.ObjectList, objs []client.Object, rev uint64) error {
	items := make([]runtime.Object, len(objs))
	for i, o := range objs {
		items[i] = o.DeepCopyObject()
	}
	if err := meta.SetList(list, items); err != nil {
		return err
	}
	list.SetResourceVersion(rvString(rev))
	list.SetContinue("")
	return nil
}

func (c *Client) Create(ctx context.Context, obj client.Object, opts ...client.CreateOption) error {
	ks, err := c.s.kindOf(obj)
	if err != nil {
		return err
	}
	co := (&client.CreateOptions{}).ApplyOptions(opts)
	at := c.charge()
	if len(co.DryRun) > 0 {
		return fmt.Errorf("apiserver: dry run is not supported")
	}
	if err := c.intercept("create", "", ks, obj.GetNamespace(), obj.GetName()); err != nil {
		return err
	}
	o, err := c.s.create(ks, obj, at)
	if err != nil {
		return err
	}
	copyInto(obj, o.DeepCopyObject())
	return nil
}

func (c *Client) Update(ctx context.Context, obj client.Object, opts ...client.UpdateOption) error {
	return c.update(obj, false)
}

func (c *Client) update(obj client.Object, status bool) error {
	ks, err := c.s.kindOf(obj)
	if err != nil {
		return err
	}
	at := c.charge()
	sub := ""
	if status {
		sub = "status"
	}
	if err := c.intercept("update", sub, ks, obj.GetNamespace(), obj.GetName()); err != nil {
		return err
	}
	o, err := c.s.update(ks, obj, status, at)
	if err != nil {
		return err
	}
	copyInto(obj, o.DeepCopyObject())
	return nil
}

func (c *Client) Delete(ctx context.Context, obj client.Object, opts ...client.DeleteOption) error {
	ks, err := c.s.kindOf(obj)
	if err != nil {
		return err
	}
	do := (&client.DeleteOptions{}).ApplyOptions(opts)
	at := c.charge()
	if err := c.intercept("delete", "", ks, obj.GetNamespace(), obj.GetName()); err != nil {
		return err
	}
	_, err = c.s.delete(ks, obj.GetNamespace(), obj.GetName(), do, at)
	return err
}

func (c *Client) DeleteAllOf(ctx context.Context, obj client.Object, opts ...client.DeleteAllOfOption) error {
	ks, err := c.s.kindOf(obj)
	if err != nil {
		return err
	}
	dao := (&client.DeleteAllOfOptions{}).ApplyOptions(opts)
	// One request server-side (a collection delete).
	at := c.charge()
	if err := c.intercept("deletecollection", "", ks, dao.Namespace, ""); err != nil {
		return err
	}
	objs, err := c.s.list(ks, &dao.ListOptions)
	if err != nil {
		return err
	}
	for _, o := range objs {
		if _, err := c.s.delete(ks, o.GetNamespace(), o.GetName(), &dao.DeleteOptions, at); err != nil && !isNotFound(err) {
			return err
		}
	}
	return nil
}

func (c *Client) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
	return c.patch(obj, patch, false)
}

func (c *Client) patch(obj client.Object, patch client.Patch, status bool) error {
	ks, err := c.s.kindOf(obj)
	if err != nil {
		return err
	}
	data, err := patch.Data(obj)
	if err != nil {
		return err
	}
	at := c.charge()
	sub := ""
	if status {
		sub = "status"
	}
	if err := c.intercept("patch", sub, ks, obj.GetNamespace(), obj.GetName()); err != nil {
		return err
	}
	c.s.stats.Patch++
	cur, err := c.s.get(ks, obj.GetNamespace(), obj.GetName())
	c.s.stats.Get--
	if err != nil {
		return err
	}
	orig, err := json.Marshal(cur)
	if err != nil {
		return err
	}
	var patched []byte
	switch patch.Type() {
	case types.MergePatchType:
		patched, err = jsonpatch.MergePatch(orig, data)
	case types.JSONPatchType:
		var p jsonpatch.Patch
		if p, err = jsonpatch.DecodePatch(data); err == nil {
			patched, err = p.Apply(orig)
		}
	case types.StrategicMergePatchType:
		patched, err = strategicpatch.StrategicMergePatch(orig, data, reflect.New(ks.typ).Interface())
	default:
		return fmt.Errorf("apiserver: patch type %q is not supported", patch.Type())
	}
	if err != nil {
		return fmt.Errorf("apiserver: applying %s patch: %w", patch.Type(), err)
	}
	next := reflect.New(ks.typ).Interface().(client.Object)
	if err := json.Unmarshal(patched, next); err != nil {
		return err
	}
	o, err := c.s.update(ks, next, status, at)
	if err != nil {
		return err
	}
	copyInto(obj, o.DeepCopyObject())
	return nil
}

func (c *Client) Status() client.SubResourceWriter { return c.SubResource("status") }

func (c *Client) SubResource(sub string) client.SubResourceClient {
	return &subClient{c: c, sub: sub}
}

type subClient struct {
	c   *Client
	sub string
}

func (sc *subClient) Get(ctx context.Context, obj, subResource client.Object, opts ...client.SubResourceGetOption) error {
	return fmt.Errorf("apiserver: get of subresource %q is not supported", sc.sub)
}

func (sc *subClient) Create(ctx context.Context, obj, subResource client.Object, opts ...client.SubResourceCreateOption) error {
	if sc.sub != "binding" {
		return fmt.Errorf("apiserver: create of subresource %q is not supported", sc.sub)
	}
	b, ok := subResource.(*corev1.Binding)
	if !ok {
		return fmt.Errorf("apiserver: binding subresource needs a *corev1.Binding, got %T", subResource)
	}
	ks, err := sc.c.s.kindOf(obj)
	if err != nil {
		return err
	}
	if _, ok := obj.(*corev1.Pod); !ok {
		return fmt.Errorf("apiserver: binding subresource exists for pods only")
	}
	at := sc.c.charge()
	name := b.Name
	if name == "" {
		name = obj.GetName()
	}
	if err := sc.c.intercept("create", "binding", ks, obj.GetNamespace(), name); err != nil {
		return err
	}
	o, err := sc.c.s.bind(ks, obj.GetNamespace(), name, b, at)
	if err != nil {
		return err
	}
	copyInto(obj, o.DeepCopyObject())
	return nil
}

func (sc *subClient) Update(ctx context.Context, obj client.Object, opts ...client.SubResourceUpdateOption) error {
	if sc.sub != "status" {
		return fmt.Errorf("apiserver: update of subresource %q is not supported", sc.sub)
	}
	return sc.c.update(obj, true)
}

func (sc *subClient) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
	if sc.sub != "status" {
		return fmt.Errorf("apiserver: patch of subresource %q is not supported", sc.sub)
	}
	return sc.c.patch(obj, patch, true)
}

// Charge accounts one request that is not a store operation and returns
// when it completes.
func (c *Client) Charge() time.Duration { return c.charge() }

// ChargeList accounts one LIST returning n objects (for example an
// informer's initial list made on this client's connection).
func (c *Client) ChargeList(n int) time.Duration {
	return c.chargeExtra(time.Duration(n) * c.s.p.ListLatencyPerObject)
}

// Session is the open session, nil outside one.
func (c *Client) Session() *Session { return c.sess }

// Request describes one API request, for Server.Intercept.
type Request struct {
	User        string
	Verb        string // get, list, create, update, patch, delete, deletecollection
	Subresource string // "", "status" or "binding"
	GVK         schema.GroupVersionKind
	Namespace   string
	Name        string
}

// intercept asks the server's Intercept hook about a request; the request's
// latency has already been charged (a failed request still takes time).
func (c *Client) intercept(verb, sub string, ks *kindStore, namespace, name string) error {
	if c.s.Intercept == nil {
		return nil
	}
	return c.s.Intercept(Request{User: c.o.User, Verb: verb, Subresource: sub, GVK: ks.gvk, Namespace: namespace, Name: name})
}
