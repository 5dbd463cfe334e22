// Package driver runs controller-runtime reconcilers (platform/wiring
// descriptors) in virtual time, as a controller manager would run them in a
// cluster.
//
// A Manager is one operator process: an informer-like cache per watched
// kind fed by the API server's watches (so reads see the state as of the
// watch delay), a client that reads from that cache and writes to the API
// server through one rate-limited connection, and per controller a work
// queue with client-go's semantics and Workers workers.
//
// # Time model of a reconcile
//
// A worker that takes a request at virtual time t calls Reconcile
// synchronously at t, inside an API server Session. Every request the
// reconciler makes is charged to the session (latency, plus any wait for a
// client-side rate-limit token); its writes are applied to the store at once
// but become visible on watches at t + session time so far + watch delay.
// The reconcile also costs CPU (Params.ReconcileCPU), which competes for the
// manager's cores. The worker stays busy until
//
//	end = (time the CPU part finishes, >= t + cpu) + session elapsed
//
// and only then is the result applied (requeue, back-off) and the key
// released (workqueue Done), so a key is never reconciled by two workers at
// once and a busy controller builds up a queue. Reads inside the reconcile
// see the cache at t.
//
// Stop models a crash of the operator: queues, in-flight reconciles (their
// completions are dropped; writes already made stay) and the cache are lost.
// Start (again) re-lists every watched kind, enqueues every object as the
// initial Add events of informers do, and starts the workers once the lists
// have completed (WaitForCacheSync).
package driver

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"time"

	"k8s.io/apimachinery/pkg/types"
	crcache "sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"sluice.dev/sluice/platform/wiring"
	"sluice.dev/sluice/sim/apiserver"
	"sluice.dev/sluice/sim/engine"
)

// Options configure a manager.
type Options struct {
	// Name is the manager's user name on the API server.
	Name string
	// Params are the manager model's parameters (DefaultParams() if zero).
	Params *Params
	// QPS and Burst override the API server params' client limits (0 = keep).
	QPS   float64
	Burst int
	// PEImage is passed to reconcilers through Deps.
	PEImage string
	// Cache restricts what the cache holds, as the real manager's cache
	// options do (ByObject and default label/field selectors, namespaces;
	// transforms are ignored). Pass the operator's own options unchanged.
	Cache crcache.Options
	// LeaderElection makes a (re)started manager wait for the lease, as a
	// manager with leader election does: after a crash (Stop) the lease is
	// held until it expires; after StopGracefully it is released.
	LeaderElection bool
}

// Record describes one finished reconcile, for traces.
type Record struct {
	Controller string
	Request    reconcile.Request
	Start, End time.Duration
	// Queued is how long the request waited in the queue before Start.
	Queued   time.Duration
	Requests int
	QPSWait  time.Duration
	Result   reconcile.Result
	Err      error
}

// Stats are a controller's counters.
type Stats struct {
	Reconciles, Errors, Requeues uint64
	// Busy is the total virtual time workers spent reconciling.
	Busy time.Duration
	// MaxQueue is the longest the queue has been.
	MaxQueue int
}

// Manager is a simulated controller manager.
type Manager struct {
	srv      *apiserver.Server
	e        *engine.Engine
	o        Options
	p        Params
	rng      *rand.Rand
	conn     *apiserver.Client
	cache    *cache
	client   *cachedClient
	recorder *Recorder

	static []wiring.Controller
	build  func(wiring.Deps) []wiring.Controller
	ctrls  []*controller
	stats  map[string]*Stats

	running bool
	gen     int
	cores   []time.Duration
	// SyncedAt is when the cache of the current process finished its lists.
	syncedAt time.Duration
	// leaderAt is when the current process became leader; leaseExpiry is
	// until when a crashed predecessor's lease blocks a new leader.
	leaderAt, leaseExpiry time.Duration

	// OnReconcile, if set, is called after every reconcile completes.
	OnReconcile func(Record)
}

// New returns a stopped manager on srv.
func New(srv *apiserver.Server, o Options) *Manager {
	if o.Name == "" {
		o.Name = "manager"
	}
	p := DefaultParams()
	if o.Params != nil {
		p = *o.Params
	}
	m := &Manager{
		srv: srv, e: srv.Engine(), o: o, p: p,
		rng:   rand.New(rand.NewPCG(srv.Engine().Rand().Uint64(), 0xd71e)),
		stats: map[string]*Stats{},
	}
	m.client = &cachedClient{m: m}
	m.recorder = newRecorder(srv.Clock())
	m.newProcess()
	return m
}

// newProcess gives the manager a fresh connection and an empty cache.
func (m *Manager) newProcess() {
	m.conn = m.srv.NewClient(apiserver.ClientOptions{User: m.o.Name, Latency: true, Limited: true, QPS: m.o.QPS, Burst: m.o.Burst})
	m.cache = newCache(m.srv, m.conn, m.o.Cache)
	m.cores = make([]time.Duration, m.p.Cores)
}

// Client is the manager's client: reads from the cache, writes to the API
// server. It stays valid across restarts.
func (m *Manager) Client() client.Client { return m.client }

// Recorder is the manager's event recorder.
func (m *Manager) Recorder() *Recorder { return m.recorder }

// Deps are the dependencies reconcilers are built from.
func (m *Manager) Deps() wiring.Deps {
	return wiring.Deps{Client: m.client, Clock: m.srv.Clock(), Recorder: m.recorder, PEImage: m.o.PEImage}
}

// Add registers controllers built once by the caller; they are reused across
// restarts (any state a reconciler keeps in memory survives a restart, which
// a real crash would not allow: prefer Build).
func (m *Manager) Add(ctrls ...wiring.Controller) *Manager {
	m.static = append(m.static, ctrls...)
	if m.running {
		for _, c := range ctrls {
			m.startController(c)
		}
	}
	return m
}

// Build registers a constructor called with Deps() on every Start, so a
// restarted manager runs freshly built reconcilers, like a new process.
func (m *Manager) Build(fn func(wiring.Deps) []wiring.Controller) *Manager {
	m.build = fn
	return m
}

// QueueLen is the number of requests queued (ready, not processing) for a
// controller of the running process; 0 if there is none by that name.
func (m *Manager) QueueLen(name string) int {
	for _, c := range m.ctrls {
		if c.w.Name == name {
			return c.q.Len()
		}
	}
	return 0
}

// Running reports whether the manager is started.
func (m *Manager) Running() bool { return m.running }

// SyncedAt is when the current process's cache finished its initial lists
// (its workers start then).
func (m *Manager) SyncedAt() time.Duration { return m.syncedAt }

// Stats returns each controller's counters (they survive restarts).
func (m *Manager) Stats() map[string]Stats {
	out := map[string]Stats{}
	for k, v := range m.stats {
		out[k] = *v
	}
	return out
}

// Start starts the manager at the current virtual time.
func (m *Manager) Start() {
	if m.running {
		return
	}
	m.running = true
	m.gen++
	m.syncedAt = m.e.Now()
	m.leaderAt = m.e.Now()
	if m.o.LeaderElection {
		// Candidates try at once and then every RetryPeriod; acquiring is a
		// GET and an UPDATE of the Lease on the manager's connection.
		try := m.e.Now()
		if wait := m.leaseExpiry - try; wait > 0 && m.p.RetryPeriod > 0 {
			n := (wait + m.p.RetryPeriod - 1) / m.p.RetryPeriod
			try += n * m.p.RetryPeriod
		}
		sess := m.conn.Begin()
		m.conn.Charge()
		m.conn.Charge()
		m.conn.End()
		m.leaderAt = try + sess.Elapsed
	}
	ctrls := append([]wiring.Controller(nil), m.static...)
	if m.build != nil {
		ctrls = append(ctrls, m.build(m.Deps())...)
	}
	for _, c := range ctrls {
		m.startController(c)
	}
}

// Stop crashes the manager: queues, in-flight work and the cache are lost.
// With leader election, its lease stays held until it expires
// (LeaseDuration after its last renewal, renewals every RetryPeriod).
func (m *Manager) Stop() {
	if !m.running {
		return
	}
	if m.o.LeaderElection && m.e.Now() >= m.leaderAt {
		last := m.leaderAt
		if m.p.RetryPeriod > 0 {
			last += (m.e.Now() - m.leaderAt) / m.p.RetryPeriod * m.p.RetryPeriod
		}
		m.leaseExpiry = last + m.p.LeaseDuration
	}
	m.stop()
}

// StopGracefully stops the manager as on SIGTERM with the lease released
// (LeaderElectionReleaseOnCancel): a successor need not wait for it.
func (m *Manager) StopGracefully() {
	if !m.running {
		return
	}
	m.leaseExpiry = 0
	m.stop()
}

// LeaderAt is when the current process became (or will become) leader.
func (m *Manager) LeaderAt() time.Duration { return m.leaderAt }

func (m *Manager) stop() {
	m.running = false
	m.gen++
	for _, c := range m.ctrls {
		c.q.ShutDown()
	}
	m.ctrls = nil
	m.cache.stop()
	m.newProcess()
}

type controller struct {
	m       *Manager
	w       wiring.Controller
	q       *queue
	gen     int
	workers int
	idle    int
	kicked  bool
	stats   *Stats
}

func (m *Manager) startController(w wiring.Controller) {
	if w.Name == "" || w.For == nil || w.Reconciler == nil {
		panic(fmt.Sprintf("driver: controller %q needs Name, For and Reconciler", w.Name))
	}
	for _, other := range m.ctrls {
		if other.w.Name == w.Name {
			panic(fmt.Sprintf("driver: duplicate controller name %q", w.Name))
		}
	}
	st := m.stats[w.Name]
	if st == nil {
		st = &Stats{}
		m.stats[w.Name] = st
	}
	c := &controller{m: m, w: w, gen: m.gen, workers: max(w.Workers, 1), stats: st}
	c.q = newQueue(m.e, m.p, c.kick)
	m.ctrls = append(m.ctrls, c)

	watches := append([]wiring.Watch{{Object: w.For}}, w.Watches...)
	syncAt := m.e.Now()
	for _, wt := range watches {
		mapFn := wt.Map
		if mapFn == nil {
			mapFn = wiring.Self
		}
		inf, err := m.cache.informerFor(wt.Object)
		if err != nil {
			panic(fmt.Sprintf("driver: controller %q watches %T: %v", w.Name, wt.Object, err))
		}
		// Informers list in parallel; a controller starts when its own are synced.
		syncAt = max(syncAt, inf.syncedAt)
		handler := func(ev apiserver.WatchEvent, old client.Object) {
			for _, r := range mapFn(context.Background(), ev.Object) {
				c.q.Add(r)
			}
			if old != nil && ev.Type == apiserver.Modified {
				for _, r := range mapFn(context.Background(), old) {
					c.q.Add(r)
				}
			}
			c.noteQueue()
		}
		inf.handlers = append(inf.handlers, handler)
		// The informer's initial list arrives as Add events.
		keys := make([]types.NamespacedName, 0, len(inf.objs))
		for k := range inf.objs {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(i, j int) bool {
			if keys[i].Namespace != keys[j].Namespace {
				return keys[i].Namespace < keys[j].Namespace
			}
			return keys[i].Name < keys[j].Name
		})
		for _, k := range keys {
			handler(apiserver.WatchEvent{Type: apiserver.Added, Object: inf.objs[k]}, nil)
		}
	}
	m.syncedAt = max(m.syncedAt, syncAt)
	gen := m.gen
	m.e.At(max(syncAt, m.leaderAt), func() {
		if c.gen != gen || m.gen != gen {
			return
		}
		c.idle = c.workers
		c.kick()
	})
}

func (c *controller) noteQueue() {
	if n := c.q.Len(); n > c.stats.MaxQueue {
		c.stats.MaxQueue = n
	}
}

// kick schedules a dispatch if a worker is idle and work is queued. The
// dispatch is its own event so that reconciles never run inside a watch
// handler or inside another reconcile.
func (c *controller) kick() {
	if c.kicked || c.idle == 0 || c.q.Len() == 0 || c.gen != c.m.gen {
		return
	}
	c.kicked = true
	c.m.e.After(0, c.dispatch)
}

func (c *controller) dispatch() {
	c.kicked = false
	if c.gen != c.m.gen {
		return
	}
	for c.idle > 0 && c.q.Len() > 0 {
		// A worker whose first request would wait for a rate-limit token
		// is blocked until the token comes; start it then, so that a pool of
		// workers cannot book the connection far into the future.
		now := c.m.e.Now()
		if ready := c.m.conn.Limiter().ReadyAt(now); ready > now {
			c.kicked = true
			c.m.e.At(ready, c.dispatch)
			return
		}
		r, ok := c.q.Get()
		if !ok {
			return
		}
		c.idle--
		c.run(r, c.q.Waited())
	}
}

func (c *controller) run(r reconcile.Request, queued time.Duration) {
	m := c.m
	start := m.e.Now()
	sess := m.conn.Begin()
	res, err := c.reconcile(r)
	m.conn.End()
	end := m.cpu(start) + sess.Elapsed
	gen := c.gen
	m.e.At(end, func() {
		if gen != m.gen {
			return // the process crashed meanwhile
		}
		c.stats.Reconciles++
		c.stats.Busy += end - start
		switch {
		case err != nil:
			c.stats.Errors++
			if !errors.Is(err, reconcile.TerminalError(nil)) {
				c.q.AddRateLimited(r)
			}
		case res.RequeueAfter > 0:
			c.q.Forget(r)
			c.q.AddAfter(r, res.RequeueAfter)
		case res.Requeue:
			c.stats.Requeues++
			c.q.AddRateLimited(r)
		default:
			c.q.Forget(r)
		}
		c.q.Done(r)
		c.noteQueue()
		if m.OnReconcile != nil {
			m.OnReconcile(Record{Controller: c.w.Name, Request: r, Start: start, End: end, Queued: queued,
				Requests: sess.Requests, QPSWait: sess.QPSWait, Result: res, Err: err})
		}
		c.idle++
		c.kick()
	})
}

// reconcile calls the reconciler, turning a panic into an error as
// controller-runtime does by default (RecoverPanic).
func (c *controller) reconcile(r reconcile.Request) (res reconcile.Result, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic in reconciler %q: %v", c.w.Name, p)
		}
	}()
	return c.w.Reconciler.Reconcile(context.Background(), r)
}

// cpu books one reconcile's CPU cost on the earliest free core and returns
// when it is done.
func (m *Manager) cpu(start time.Duration) time.Duration {
	d := m.p.ReconcileCPU
	if j := m.p.ReconcileCPUJitter; j > 0 && d > 0 {
		d = time.Duration(float64(d) * (1 + j*(2*m.rng.Float64()-1)))
	}
	if len(m.cores) == 0 {
		return start + d
	}
	best := 0
	for i, free := range m.cores {
		if free < m.cores[best] {
			best = i
		}
	}
	begin := max(start, m.cores[best])
	m.cores[best] = begin + d
	return begin + d
}
