// Package engine runs one PE: it builds the PE's operators from its
// configuration, joins them in-process where both ends are in the PE and
// over transport otherwise, and drives them. All operator calls of a PE are
// serialised by one lock, held per input batch or source step, so that
// operators stay simple and fused operators call each other directly.
//
// With Options.Region set the PE takes part in a consistent region
// (region.go, docs/consistent-regions.md): drains, checkpoints, resets.
package engine

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/app"
	"sluice.dev/sluice/platform/peconfig"
	"sluice.dev/sluice/platform/runtime/exchange"
	"sluice.dev/sluice/platform/runtime/metrics"
	"sluice.dev/sluice/platform/runtime/operators"
	"sluice.dev/sluice/platform/runtime/regionctl"
	"sluice.dev/sluice/platform/runtime/transport"
	"sluice.dev/sluice/platform/runtime/wire"
)

// Resolver gives the host:port of a PE's input port.
type Resolver func(pe string, port int32) string

// ServiceResolver resolves through the PE's Kubernetes Service.
func ServiceResolver(namespace string) Resolver {
	return func(pe string, port int32) string {
		return net.JoinHostPort(peconfig.ServiceHost(pe, namespace), strconv.Itoa(int(peconfig.TCPPort(port))))
	}
}

// Options configure an engine.
type Options struct {
	PE    *peconfig.PE
	Ports *peconfig.PortTable
	// ListenHost and ListenBase: input port i listens on
	// ListenHost:ListenBase+i. ListenBase defaults to 10000.
	ListenHost string
	ListenBase int
	// Resolve defaults to ServiceResolver(PE.Namespace).
	Resolve Resolver
	Metrics *metrics.Metrics
	Log     *slog.Logger
	// Epoch identifies this incarnation of the PE in the tuples its
	// sources and aggregates number. Inside a consistent region it is
	// ignored: tuples carry RegionTupleEpoch, so that a replay continues
	// the sequence its receivers restored.
	Epoch      uint32
	BatchBytes int
	Queue      int
	// TickEvery is how often time-driven operators are ticked (50ms).
	TickEvery time.Duration
	// OnComplete is called (on its own goroutine) when every sink of the
	// PE has seen all its streams end. In a consistent region a reset
	// un-finishes the PE, and OnComplete is called again when the replay
	// completes.
	OnComplete func()
	// Region, when set, makes the PE take part in the consistent region
	// PE.Region names: Start calls Region.Run, follows Region.Commands and
	// reports progress with Region.Report. Nil: no region (sources start
	// at once, nothing is checkpointed).
	Region regionctl.Control
	// Store keeps the PE's checkpoints; required with Region.
	Store CheckpointStore
	// NoRedistribution makes a channel PE of a parallel region restore
	// only its own checkpoint (or its initial state if it has none) after
	// a width change, as before keyed state moved with its keys. Only the
	// tests' control uses it: it loses or repeats the keys that moved.
	NoRedistribution bool
	// ImportWatch gives the watcher of an import operator's Import object
	// (exchange.Kube.For in a cluster, exchange.Files.For locally).
	ImportWatch exchange.WatchFunc
}

type dest struct {
	node *node
	port int
	w    *transport.Writer
}

type node struct {
	e       *Engine
	name    string
	kind    v1alpha1.OperatorKind
	op      operators.Operator
	outs    [][]dest
	in, out prometheus.Counter
	// nIn and nOut count under the engine's lock; publish adds them to
	// the Prometheus counters once per batch, not per tuple.
	nIn, nOut uint64
	scratch   wire.Tuple
	needed    int // streams that must end before the operator finishes
	ended     int
	finished  bool

	// Consistent region, under the engine's lock: the highest marker seen
	// and on how many input streams; for a source, whether it waits for a
	// drain it asked for and where it last asked.
	markSeq   uint64
	markCount int
	src       *operators.Source
	hold      bool
	lastAsk   uint64
}

// Emit routes an operator's output to every stream of the port.
func (n *node) Emit(port int, t *wire.Tuple) {
	n.nOut++
	ds := n.outs[port]
	if len(ds) == 1 {
		n.e.send(&ds[0], t)
		return
	}
	// Fan-out: each destination gets its own copy, since operators may
	// change the tuple they are given.
	for i := range ds {
		n.scratch = *t
		n.e.send(&ds[i], &n.scratch)
	}
}

type route struct {
	node  *node
	port  int
	batch operators.BatchProcessor // set when the operator takes batches
}

// Engine runs one PE.
type Engine struct {
	opts    Options
	log     *slog.Logger
	m       *metrics.Metrics
	mu      sync.Mutex
	nodes   []*node
	writers []*transport.Writer
	inputs  map[int32]route
	server  *transport.Server
	sinks   []*operators.Sink
	aggs    map[string]*operators.Aggregate
	imports []*operators.Import
	exports []*operators.Export
	tickers []operators.Ticker
	sources []*node

	ctx       context.Context
	cancel    context.CancelFunc
	srcCancel context.CancelFunc
	wg        sync.WaitGroup // writers, ticker
	srcWG     sync.WaitGroup
	complete  bool
	// now is the clock read once per batch, under mu.
	now int64
	// ended holds the cross-PE streams whose end has been seen: an
	// upstream that reconnects and ends again is counted once.
	ended map[int32]bool
	// epoch is the consistent-region epoch applied (always 0 outside a
	// region); input from links of another epoch is dropped.
	epoch uint64
	// appliedEpoch mirrors epoch for readers that must not wait for mu
	// (a reset arriving while a source blocked in a writer holds it).
	appliedEpoch atomic.Uint64
	rg           *regionState // nil outside a region
}

// New builds the PE's operators and routes; Start runs them.
func New(opts Options) (*Engine, error) {
	pe := opts.PE
	if opts.ListenBase == 0 {
		opts.ListenBase = v1alpha1.PEInputPortBase
	}
	if opts.Resolve == nil {
		opts.Resolve = ServiceResolver(pe.Namespace)
	}
	if opts.Metrics == nil {
		opts.Metrics = metrics.New()
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.TickEvery <= 0 {
		opts.TickEvery = 50 * time.Millisecond
	}
	e := &Engine{opts: opts, log: opts.Log, m: opts.Metrics, inputs: map[int32]route{}, aggs: map[string]*operators.Aggregate{},
		ended: map[int32]bool{}}
	tupleEpoch := opts.Epoch
	if opts.Region != nil {
		if pe.Region == nil {
			return nil, fmt.Errorf("PE %s: a region control is given but the PE config names no region", pe.Name)
		}
		if opts.Store == nil {
			return nil, fmt.Errorf("PE %s: region %s needs a checkpoint store", pe.Name, pe.Region.Name)
		}
		e.rg = newRegionState(opts.Region, opts.Store, pe.Region.Name)
		tupleEpoch = RegionTupleEpoch
	}
	names := map[uint32]string{}
	if opts.Ports != nil {
		for name := range opts.Ports.Operators {
			names[operators.OriginID(name)] = name
		}
	}
	// Export and import operators share this (exchange package).
	xenv := &operators.ExchangeEnv{Job: pe.Job, ListenHost: opts.ListenHost, ListenBase: opts.ListenBase,
		Exports: pe.Exports, Imports: pe.Imports, Watch: opts.ImportWatch,
		Metrics: exchange.NewMetrics(e.m.Registry), Log: e.log}
	byName := map[string]*node{}
	for i := range pe.Operators {
		op := &pe.Operators[i]
		n := &node{e: e, name: op.Name, kind: op.Kind, in: e.m.OperatorIn.WithLabelValues(op.Name),
			out: e.m.OperatorOut.WithLabelValues(op.Name), outs: make([][]dest, app.OutputPorts(op))}
		names[operators.OriginID(op.Name)] = op.Name
		o, err := operators.New(op, operators.Env{PE: pe.Name, Out: n, Epoch: tupleEpoch, Names: names,
			Now: func() int64 { return e.now }, Exchange: xenv})
		if err != nil {
			return nil, err
		}
		n.op = o
		switch x := o.(type) {
		case *operators.Sink:
			x.Observer = e.m.SinkObserver(op.Name)
			e.m.RegisterSinkLatency(op.Name, x.LatencyCumulative)
			e.sinks = append(e.sinks, x)
		case *operators.Aggregate:
			e.aggs[op.Name] = x
		case *operators.Import:
			e.imports = append(e.imports, x)
		case *operators.Export:
			e.exports = append(e.exports, x)
		}
		if t, ok := o.(operators.Ticker); ok {
			e.tickers = append(e.tickers, t)
		}
		if _, ok := o.(operators.Runner); ok {
			e.sources = append(e.sources, n)
		}
		n.src, _ = o.(*operators.Source)
		e.nodes = append(e.nodes, n)
		byName[op.Name] = n
	}
	for _, st := range pe.Streams {
		from, to := byName[st.From.Operator], byName[st.To.Operator]
		if to != nil {
			to.needed++
		}
		if from == nil {
			continue // arrives through an input port
		}
		if int(st.From.Port) >= len(from.outs) {
			return nil, fmt.Errorf("stream %d: operator %q has no output port %d", st.ID, st.From.Operator, st.From.Port)
		}
		d := dest{node: to, port: int(st.To.Port)}
		if to == nil {
			if opts.Ports == nil {
				return nil, fmt.Errorf("stream %d leaves the PE but there is no port table", st.ID)
			}
			entry, ok := opts.Ports.Lookup(st.To.Operator, st.To.Port)
			if !ok {
				return nil, fmt.Errorf("stream %d: port table has no entry for %s:%d", st.ID, st.To.Operator, st.To.Port)
			}
			resolve := opts.Resolve
			d.w = transport.NewWriter(transport.WriterConfig{Stream: st.ID, PE: pe.Name, Metrics: e.m, Log: e.log,
				BatchBytes: opts.BatchBytes, Queue: opts.Queue,
				Addr: func() string { return resolve(entry.PE, entry.PEPort) }})
			e.writers = append(e.writers, d.w)
		}
		from.outs[st.From.Port] = append(from.outs[st.From.Port], d)
	}
	for _, n := range e.nodes {
		for p, ds := range n.outs {
			if len(ds) == 0 {
				return nil, fmt.Errorf("operator %q: output port %d feeds no stream", n.name, p)
			}
		}
	}
	var ins []transport.Input
	for _, in := range pe.Inputs {
		n := byName[in.Operator]
		if n == nil {
			return nil, fmt.Errorf("input port %d: operator %q is not in this PE", in.Port, in.Operator)
		}
		bp, _ := n.op.(operators.BatchProcessor)
		e.inputs[in.Port] = route{node: n, port: int(in.OperatorPort), batch: bp}
		ins = append(ins, transport.Input{Port: in.Port, Streams: in.Streams})
	}
	e.server = transport.NewServer(transport.ServerConfig{Inputs: ins, Host: opts.ListenHost, Base: opts.ListenBase,
		Deliver: e, Metrics: e.m, Log: e.log, AnyEpoch: e.rg == nil, OncePerEpoch: e.rg != nil})
	if e.rg != nil {
		// RestoreSeq 0 restores these: the operators' state as built.
		init, err := e.snapshotAll()
		if err != nil {
			return nil, err
		}
		e.rg.initial = init
	}
	return e, nil
}

func (e *Engine) send(d *dest, t *wire.Tuple) {
	if d.w != nil {
		d.w.Add(t)
		return
	}
	d.node.nIn++
	d.node.op.Process(d.port, t)
}

func (e *Engine) flush() {
	for _, w := range e.writers {
		w.Flush()
	}
	e.publish()
}

// publish moves the per-operator counts to Prometheus. Called with mu held.
func (e *Engine) publish() {
	for _, n := range e.nodes {
		if n.nIn > 0 {
			n.in.Add(float64(n.nIn))
			n.nIn = 0
		}
		if n.nOut > 0 {
			n.out.Add(float64(n.nOut))
			n.nOut = 0
		}
	}
}

// Deliver runs a batch that arrived on an input port.
func (e *Engine) Deliver(l transport.Link, ts []wire.Tuple) {
	r, ok := e.inputs[l.Port]
	if !ok {
		return
	}
	e.mu.Lock()
	if l.Epoch != e.epoch {
		// Sent before a reset that this PE has applied since.
		e.mu.Unlock()
		return
	}
	e.now = time.Now().UnixNano()
	r.node.nIn += uint64(len(ts))
	if r.batch != nil {
		r.batch.ProcessBatch(r.port, ts)
	} else {
		for i := range ts {
			r.node.op.Process(r.port, &ts[i])
		}
	}
	e.flush()
	e.mu.Unlock()
}

// Final records the end of an incoming stream.
func (e *Engine) Final(l transport.Link) {
	r, ok := e.inputs[l.Port]
	if !ok {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if l.Epoch != e.epoch || e.ended[l.Stream] {
		return
	}
	e.ended[l.Stream] = true
	e.now = time.Now().UnixNano()
	e.streamEnded(r.node)
	e.flush()
}

// streamEnded counts one ended input stream of n and, when it was the
// last, finishes n and ends its outputs. Called with e.mu held.
func (e *Engine) streamEnded(n *node) {
	n.ended++
	if n.ended >= n.needed {
		e.finish(n)
	}
}

func (e *Engine) finish(n *node) {
	if n.finished {
		return
	}
	n.finished = true
	n.op.Finish()
	for _, ds := range n.outs {
		for i := range ds {
			if ds[i].w != nil {
				ds[i].w.Final()
			} else {
				e.streamEnded(ds[i].node)
			}
		}
	}
	if n.kind == v1alpha1.KindSink && !e.complete {
		for _, x := range e.nodes {
			if x.kind == v1alpha1.KindSink && !x.finished {
				return
			}
		}
		e.complete = true
		if e.opts.OnComplete != nil {
			go e.opts.OnComplete()
		}
	}
}

// Start listens, connects and starts the sources once every output of the
// PE is connected.
func (e *Engine) Start(ctx context.Context) error {
	e.ctx, e.cancel = context.WithCancel(ctx)
	if err := e.server.Start(); err != nil {
		return err
	}
	for _, w := range e.writers {
		e.wg.Add(1)
		go func() { defer e.wg.Done(); w.Run(e.ctx) }()
	}
	e.wg.Add(1)
	go e.tick()
	if e.rg != nil {
		e.startRegion()
	}
	var sctx context.Context
	sctx, e.srcCancel = context.WithCancel(e.ctx)
	for _, n := range e.sources {
		e.srcWG.Add(1)
		if e.rg != nil {
			go e.runRegionSource(sctx, n)
		} else {
			go e.runSource(sctx, n)
		}
	}
	return nil
}

func (e *Engine) runSource(ctx context.Context, n *node) {
	defer e.srcWG.Done()
	// Wait for the outputs so that the first tuples are not queued behind
	// a connection that is not there yet.
	for !e.outputsConnected() {
		select {
		case <-ctx.Done():
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
	e.log.Info("source starting", "operator", n.name)
	do := func(f func()) bool {
		e.mu.Lock()
		e.now = time.Now().UnixNano()
		f()
		e.publish()
		e.mu.Unlock()
		return true
	}
	flush := func() {
		e.mu.Lock()
		e.flush()
		e.mu.Unlock()
	}
	err := n.op.(operators.Runner).Run(ctx, do, flush)
	flush()
	if err != nil {
		return
	}
	e.log.Info("source finished", "operator", n.name)
	e.mu.Lock()
	e.finish(n)
	e.flush()
	e.mu.Unlock()
}

func (e *Engine) tick() {
	defer e.wg.Done()
	t := time.NewTicker(e.opts.TickEvery)
	defer t.Stop()
	for {
		select {
		case <-e.ctx.Done():
			return
		case now := <-t.C:
			// Inside a region windows close on event time only: a close
			// driven by the wall clock would depend on how long a drain
			// or reset paused the sources, and a replay would differ.
			if len(e.tickers) > 0 {
				e.mu.Lock()
				e.now = time.Now().UnixNano()
				if e.rg == nil {
					for _, x := range e.tickers {
						x.Tick(now.UnixNano())
					}
				}
				for name, a := range e.aggs {
					e.m.AggregateLate.WithLabelValues(name).Set(float64(a.Late()))
				}
				e.flush()
				e.mu.Unlock()
			}
			for _, w := range e.writers {
				e.m.QueueDepth.WithLabelValues(strconv.Itoa(int(w.Stream()))).Set(float64(w.QueueLen()))
			}
			ok, _ := e.Ready()
			if ok {
				e.m.Ready.Set(1)
			} else {
				e.m.Ready.Set(0)
			}
		}
	}
}

func (e *Engine) outputsConnected() bool {
	for _, w := range e.writers {
		if !w.Connected() {
			return false
		}
	}
	return true
}

// Ready reports whether every input stream and every output stream of the
// PE has a live connection, and if not, which are missing.
func (e *Engine) Ready() (bool, string) {
	var missing []string
	for _, st := range e.server.Missing() {
		missing = append(missing, fmt.Sprintf("input stream %d", st))
	}
	for _, w := range e.writers {
		if !w.Connected() {
			missing = append(missing, fmt.Sprintf("output stream %d", w.Stream()))
		}
	}
	if len(missing) == 0 {
		return true, "all streams connected"
	}
	sort.Strings(missing)
	return false, "not connected: " + strings.Join(missing, ", ")
}

// Summaries returns what each sink of the PE has seen.
func (e *Engine) Summaries() []operators.Summary {
	out := make([]operators.Summary, 0, len(e.sinks))
	for _, s := range e.sinks {
		out = append(out, s.Summary())
	}
	return out
}

// Imports are the PE's import operators (their Summary says what they
// received and missed).
func (e *Engine) Imports() []*operators.Import { return e.imports }

// Exports are the PE's export operators.
func (e *Engine) Exports() []*operators.Export { return e.exports }

// Sinks are the PE's sink operators.
func (e *Engine) Sinks() []*operators.Sink { return e.sinks }

// InputAddrs are the listening addresses of the PE's input ports.
func (e *Engine) InputAddrs() []net.Addr { return e.server.Addrs() }

// Shutdown stops sources, stops taking input, flushes what is in flight,
// and closes the connections, all within grace.
func (e *Engine) Shutdown(grace time.Duration) {
	if e.ctx == nil {
		return
	}
	deadline := time.Now().Add(grace)
	e.srcCancel()
	stopped := make(chan struct{})
	go func() {
		e.server.Close()
		e.srcWG.Wait()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(grace / 2):
		// Something is blocked on a peer that is not draining: give up on
		// the outputs so that the rest can stop.
		e.log.Warn("shutdown: outputs not draining, aborting them")
		for _, w := range e.writers {
			w.Abort()
		}
		<-stopped
	}
	e.mu.Lock()
	e.flush()
	e.mu.Unlock()
	var wg sync.WaitGroup
	for _, w := range e.writers {
		wg.Add(1)
		go func() { defer wg.Done(); w.Close(deadline) }()
	}
	wg.Wait()
	e.cancel()
	e.wg.Wait()
}

// Snapshot saves the state of every stateful operator of the PE, between
// batches.
func (e *Engine) Snapshot() (map[string][]byte, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.snapshotAll()
}

func (e *Engine) snapshotAll() (map[string][]byte, error) {
	out := map[string][]byte{}
	for _, n := range e.nodes {
		if s, ok := n.op.(operators.Stateful); ok {
			b, err := s.Snapshot()
			if err != nil {
				return nil, fmt.Errorf("snapshot of %s: %w", n.name, err)
			}
			out[n.name] = b
		}
	}
	return out, nil
}

// Restore gives each stateful operator named in states its saved state.
func (e *Engine) Restore(states map[string][]byte) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.restoreAll(states)
}

func (e *Engine) restoreAll(states map[string][]byte) error {
	for _, n := range e.nodes {
		b, ok := states[n.name]
		if !ok {
			continue
		}
		s, ok := n.op.(operators.Stateful)
		if !ok {
			return fmt.Errorf("operator %s has no state to restore", n.name)
		}
		if err := s.Restore(b); err != nil {
			return err
		}
	}
	return nil
}
