// Package dataplane models the flow of tuples between PEs for the
// simulator, per batch: each PE is one server whose speed is the CPU share
// the kubelet model gives its pod (CFS shares when the node is
// oversubscribed, at most PEMaxCores because the PE engine serialises its
// operators), its work per tuple is the sum of the per-tuple costs of the
// operators fused in it, and cross-PE streams carry batches over the
// network model's paths with bounded buffers (backpressure). Connections
// are made by the upstream PE through the downstream PE's Service, retried
// with the runtime's back-off, and lost when either end stops; a PE is
// ready when all its connections are up, which the kubelet's readiness
// probe asks. Sinks record delivered tuples and their latency.
package dataplane

import (
	"net/url"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/peconfig"
	"sluice.dev/sluice/sim/engine"
	"sluice.dev/sluice/sim/network"
)

// Env is what the data plane needs from the other models. Any nil function
// gets a simple default (single node, no delays), for tests of the model
// alone.
type Env struct {
	// Path is the network path between two pods.
	Path func(from, to types.NamespacedName) network.Path
	// NodeOf is a pod's node.
	NodeOf func(pod types.NamespacedName) string
	// Shares is the CPU, in cores, of each running pod of a node; it is
	// called whenever the set of busy PEs on the node changes.
	Shares func(node string) map[types.NamespacedName]float64
	// Reachable says whether a connection to the Service of a PE reaches
	// the given pod now (endpoints programmed).
	Reachable func(svc, pod types.NamespacedName) bool
	// ConnectTime is the time to open a connection from one pod to another.
	ConnectTime func(from, to types.NamespacedName) time.Duration
	// SharedCPU says that nodes share their host's cores (kind), so a busy
	// change on one node changes the shares on all.
	SharedCPU bool
	// Capacity (a node's cores) and Limit (a pod's cpu limit in cores, -1
	// for none), if given, let the model skip Shares while a node has room
	// for every busy PE: each then gets its own cap, as Shares would say.
	Capacity func(node string) float64
	Limit    func(pod types.NamespacedName) float64
}

type item struct {
	prof *profile
	n    float64
	emit time.Duration
	from *stream
}

type pe struct {
	ns, name string
	cfg      *peconfig.PE
	job      *jobIndex
	ops      map[string]*v1alpha1.Operator
	profiles map[string]*profile
	// profilesGen is the job's gen the profiles were built at; older
	// ones are stale (see AddPE).
	profilesGen uint64

	pod     types.NamespacedName
	running bool
	epoch   int

	queue     []*item
	cur       *item
	remaining float64 // CPU seconds left of cur
	rate      float64 // cores
	last      time.Duration
	done      *engine.Timer
	blocked   bool

	windows map[string]float64
	emitted map[string]float64 // per source
	srcAcc  map[string]float64

	ins, outs []*stream
	// crossIn and crossOut are crossStreams of cfg, counted once.
	crossIn, crossOut int
	key               string
	busyNode          string // node it is accounted busy on, while cur != nil
}

type stream struct {
	id         int32
	from, to   *pe
	toOp       string
	bytes      int64
	connected  bool
	dialing    bool
	backoff    time.Duration
	epoch      int // bumped on every disconnect
	inflight   float64
	linkFree   time.Duration
	lastArrive time.Duration
}

// Sample is one batch of tuples delivered to a sink.
type Sample struct {
	At      time.Duration
	Latency time.Duration
	Tuples  float64
	PE      string
}

// DataPlane is the model.
type DataPlane struct {
	e   *engine.Engine
	p   Params
	env Env

	jobs    map[string]*jobIndex // by namespace/job
	pes     map[string]*pe       // by namespace/name
	byPod   map[types.NamespacedName]*pe
	streams map[string]*stream // by namespace/job/id
	pending map[string]*corev1.Pod

	samples []Sample
	lost    float64
	// busy are the PEs with a batch in service, by node.
	busy map[string]map[*pe]struct{}
	// OtherDemand is the CPU demand of pods that are not PEs; default 0.
	OtherDemand func(pod types.NamespacedName) float64
	// OnReadyChange, if set, is told when a PE's connections all come up or
	// one goes down (to speed up readiness-driven tests and traces).
	OnReadyChange func(pod types.NamespacedName, ready bool)
}

// New returns an empty data plane.
func New(e *engine.Engine, p Params, env Env) *DataPlane {
	d := &DataPlane{e: e, p: p, env: env,
		jobs: map[string]*jobIndex{}, pes: map[string]*pe{}, byPod: map[types.NamespacedName]*pe{},
		streams: map[string]*stream{}, pending: map[string]*corev1.Pod{}, busy: map[string]map[*pe]struct{}{}}
	return d
}

func peKey(ns, name string) string { return ns + "/" + name }

// AddPE registers a PE's configuration (what its ConfigMap holds). A pod
// of the PE that already runs starts flowing at once.
func (d *DataPlane) AddPE(cfg *peconfig.PE) {
	ns := cfg.Namespace
	k := peKey(ns, cfg.Name)
	if _, ok := d.pes[k]; ok {
		return
	}
	jk := ns + "/" + cfg.Job
	j := d.jobs[jk]
	if j == nil {
		j = &jobIndex{pes: map[string]*pe{}, opPE: map[string]*pe{}, into: map[string][]streamRef{}}
		d.jobs[jk] = j
	}
	// Profiles depend on every PE of the job (tuple sizes): every PE starts
	// afresh, lazily (profile compares generations).
	j.gen++
	x := &pe{ns: ns, name: cfg.Name, key: k, cfg: cfg, job: j, ops: map[string]*v1alpha1.Operator{}, profiles: map[string]*profile{},
		profilesGen: j.gen, windows: map[string]float64{}, emitted: map[string]float64{}, srcAcc: map[string]float64{}}
	stale := j.cyclic
	for i := range cfg.Operators {
		name := cfg.Operators[i].Name
		x.ops[name] = &cfg.Operators[i]
		if j.opPE[name] != nil || j.payloadMisses[name] {
			stale = true
		}
		j.opPE[name] = x
	}
	for i, st := range cfg.Streams {
		if _, local := x.ops[st.From.Operator]; local {
			j.into[st.To.Operator] = append(j.into[st.To.Operator], streamRef{from: x, idx: i})
		}
	}
	x.crossIn, x.crossOut = crossStreams(x)
	j.pes[cfg.Name] = x
	j.added(stale)
	d.pes[k] = x
	d.link(jk, j, x)
	if pod := d.pending[k]; pod != nil {
		delete(d.pending, k)
		d.PodRunning(pod)
	}
}

// link creates the cross-PE streams whose two ends are known now that x
// has been added: those out of x and those into it. Every other stream with
// both ends known exists already. They are created in the order of a walk
// over the job's PEs by name, each PE's streams in configuration order.
func (d *DataPlane) link(jk string, j *jobIndex, x *pe) {
	var cands []streamRef
	for i, s := range x.cfg.Streams {
		if _, local := x.ops[s.From.Operator]; local {
			cands = append(cands, streamRef{from: x, idx: i})
		}
	}
	for op := range x.ops {
		refs := j.into[op][:0]
		for _, r := range j.into[op] {
			if j.pes[r.from.name] != r.from {
				continue // a PE since removed
			}
			refs = append(refs, r)
			if r.from != x {
				cands = append(cands, r)
			}
		}
		j.into[op] = refs
	}
	sort.Slice(cands, func(a, b int) bool {
		if cands[a].from.name != cands[b].from.name {
			return cands[a].from.name < cands[b].from.name
		}
		return cands[a].idx < cands[b].idx
	})
	for _, r := range cands {
		from, s := r.from, r.from.cfg.Streams[r.idx]
		to := j.opPE[s.To.Operator]
		if to == nil || to == from {
			continue
		}
		sk := jk + "/" + itoa(s.ID)
		if _, ok := d.streams[sk]; ok {
			continue
		}
		st := &stream{id: s.ID, from: from, to: to, toOp: s.To.Operator, bytes: d.wireBytes(j, s.From.Operator), backoff: d.p.ReconnectMin.D()}
		d.streams[sk] = st
		from.outs = append(from.outs, st)
		to.ins = append(to.ins, st)
		if from.running {
			d.dial(st)
		}
	}
}

func itoa(i int32) string {
	if i == 0 {
		return "0"
	}
	neg := i < 0
	var b [12]byte
	p := len(b)
	for i != 0 {
		p--
		d := i % 10
		if d < 0 {
			d = -d
		}
		b[p] = byte('0' + d)
		i /= 10
	}
	if neg {
		p--
		b[p] = '-'
	}
	return string(b[p:])
}

func (d *DataPlane) peOfPod(pod *corev1.Pod) *pe {
	name := pod.Labels[v1alpha1.LabelPE]
	if name == "" {
		return nil
	}
	return d.pes[peKey(pod.Namespace, name)]
}

// PodRunning is called when all containers of a pod run (kubelet model).
func (d *DataPlane) PodRunning(pod *corev1.Pod) {
	x := d.peOfPod(pod)
	if x == nil {
		if name := pod.Labels[v1alpha1.LabelPE]; name != "" {
			d.pending[peKey(pod.Namespace, name)] = pod.DeepCopy()
		}
		return
	}
	key := types.NamespacedName{Namespace: pod.Namespace, Name: pod.Name}
	if x.running && x.pod == key {
		return
	}
	if x.running {
		d.stop(x)
	}
	x.pod = key
	x.running = true
	x.epoch++
	x.last = d.e.Now()
	d.byPod[key] = x
	for _, s := range x.outs {
		d.dial(s)
	}
	for _, s := range x.ins {
		if s.from.running && !s.connected && !s.dialing {
			d.dial(s)
		}
	}
	d.startSources(x)
	d.startWindows(x)
}

// PodStopped is called when a pod's container stops or the pod goes away.
func (d *DataPlane) PodStopped(key types.NamespacedName) {
	for k, p := range d.pending {
		if p.Namespace == key.Namespace && p.Name == key.Name {
			delete(d.pending, k)
		}
	}
	x := d.byPod[key]
	if x == nil || !x.running || x.pod != key {
		return
	}
	delete(d.byPod, key)
	d.stop(x)
}

func (d *DataPlane) stop(x *pe) {
	node := d.nodeOf(x)
	x.running = false
	x.epoch++
	if x.done != nil {
		x.done.Stop()
		x.done = nil
	}
	for _, it := range x.queue {
		d.lost += it.n
	}
	if x.cur != nil {
		d.lost += x.cur.n
		d.markIdle(x)
	}
	x.queue, x.cur, x.blocked = nil, nil, false
	for k := range x.windows {
		x.windows[k] = 0
	}
	for _, s := range append(append([]*stream{}, x.ins...), x.outs...) {
		d.disconnect(s)
	}
	d.reshare(node)
}

func (d *DataPlane) disconnect(s *stream) {
	was := s.connected
	s.connected, s.dialing = false, false
	s.epoch++
	d.lost += s.inflight
	s.inflight = 0
	if was {
		d.readyChanged(s.from)
		d.readyChanged(s.to)
	}
	// A writer whose peer went away redials with back-off.
	if s.from.running {
		d.dial(s)
	}
}

func (d *DataPlane) readyChanged(x *pe) {
	if d.OnReadyChange != nil && x.running {
		d.OnReadyChange(x.pod, d.connected(x))
	}
}

// crossStreams counts the PE's configured cross-PE streams, in and out,
// whether or not the peer PE is known yet.
func crossStreams(x *pe) (in, out int) {
	for _, s := range x.cfg.Streams {
		_, from := x.ops[s.From.Operator]
		_, to := x.ops[s.To.Operator]
		switch {
		case from && !to:
			out++
		case to && !from:
			in++
		}
	}
	return in, out
}

func (d *DataPlane) connected(x *pe) bool {
	if len(x.ins) != x.crossIn || len(x.outs) != x.crossOut {
		return false
	}
	for _, s := range x.ins {
		if !s.connected {
			return false
		}
	}
	for _, s := range x.outs {
		if !s.connected {
			return false
		}
	}
	return true
}

// Ready is the readiness probe outcome of a pod's container: a PE's pod is
// ready when all its connections are up; other pods are always ready.
func (d *DataPlane) Ready(pod *corev1.Pod, _ string) bool {
	x := d.byPod[types.NamespacedName{Namespace: pod.Namespace, Name: pod.Name}]
	if x == nil {
		return d.peOfPod(pod) == nil && pod.Labels[v1alpha1.LabelPE] == ""
	}
	return x.running && d.connected(x)
}

// ReadyHold is how long a container's readiness endpoint holds a "not
// ready" answer: the hold parameter of its HTTP probe's path, as a PE's
// /readyz reads it (0 when there is none or it does not parse).
func ReadyHold(pod *corev1.Pod, container string) time.Duration {
	for _, c := range pod.Spec.Containers {
		if c.Name != container || c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil {
			continue
		}
		u, err := url.Parse(c.ReadinessProbe.HTTPGet.Path)
		if err != nil {
			return 0
		}
		d, err := time.ParseDuration(u.Query().Get("hold"))
		if err != nil || d < 0 {
			return 0
		}
		return d
	}
	return 0
}

// dial is the transport writer's connect loop for one stream.
func (d *DataPlane) dial(s *stream) {
	if s.dialing || s.connected || !s.from.running {
		return
	}
	s.dialing = true
	epoch, fromEpoch := s.epoch, s.from.epoch
	valid := func() bool { return s.epoch == epoch && s.from.epoch == fromEpoch && s.from.running }
	var attempt func()
	attempt = func() {
		if !valid() {
			return
		}
		to := s.to
		svc := types.NamespacedName{Namespace: to.ns, Name: to.name}
		if to.running && (d.env.Reachable == nil || d.env.Reachable(svc, to.pod)) {
			toEpoch := to.epoch
			ct := time.Duration(0)
			if d.env.ConnectTime != nil {
				ct = d.env.ConnectTime(s.from.pod, to.pod)
			}
			d.e.After(ct, func() {
				if !valid() {
					return
				}
				if !to.running || to.epoch != toEpoch {
					d.e.After(d.nextBackoff(s), attempt)
					return
				}
				s.dialing, s.connected = false, true
				s.backoff = d.p.ReconnectMin.D()
				s.linkFree, s.lastArrive = d.e.Now(), d.e.Now()
				d.readyChanged(s.from)
				d.readyChanged(s.to)
				d.kick(s.from)
			})
			return
		}
		d.e.After(d.nextBackoff(s), attempt)
	}
	attempt()
}

func (d *DataPlane) nextBackoff(s *stream) time.Duration {
	b := s.backoff
	jit := time.Duration(d.e.Rand().Float64() * d.p.ReconnectJitter * float64(b))
	s.backoff = min(2*s.backoff, d.p.ReconnectMax.D())
	return b + jit
}

func (d *DataPlane) outputsConnected(x *pe) bool {
	if len(x.outs) != x.crossOut {
		return false
	}
	for _, s := range x.outs {
		if !s.connected {
			return false
		}
	}
	return true
}

func (d *DataPlane) profile(x *pe, entry string, build func(b *builder)) *profile {
	if x.profilesGen != x.job.gen {
		x.profiles, x.profilesGen = map[string]*profile{}, x.job.gen
	}
	if p := x.profiles[entry]; p != nil {
		return p
	}
	b := d.newBuilder(x)
	build(b)
	p := b.finish()
	x.profiles[entry] = p
	return p
}

// startSources runs every source of the PE: it waits until the PE's
// outputs are connected (polling, as the runtime does), then emits at its
// rate, or as fast as the PE can go when the rate is 0.
func (d *DataPlane) startSources(x *pe) {
	for _, op := range x.cfg.Operators {
		if op.Kind != v1alpha1.KindSource {
			continue
		}
		name := op.Name
		prof := d.profile(x, "src:"+name, func(b *builder) { b.visit(name, 1, true) })
		rate := int64(0)
		count := int64(0)
		if op.Params != nil && op.Params.Rate != nil {
			rate = *op.Params.Rate
		}
		if op.Params != nil && op.Params.Count != nil {
			count = *op.Params.Count
		}
		epoch := x.epoch
		step := d.sourcePeriod(rate)
		var wait, tick func()
		tick = func() {
			if x.epoch != epoch || !x.running {
				return
			}
			d.sourceStep(x, name, prof, rate, count)
			if rate > 0 {
				d.e.After(step, tick)
			}
		}
		wait = func() {
			if x.epoch != epoch || !x.running {
				return
			}
			if !d.outputsConnected(x) {
				d.e.After(d.p.SourceWaitPoll.D(), wait)
				return
			}
			tick()
		}
		wait()
	}
}

// sourcePeriod is how often a rate-limited source emits in the model: once
// per tuple period as the runtime does, but no more often than SourceTick
// (faster sources emit rate*SourceTick tuples per step, stamped together).
func (d *DataPlane) sourcePeriod(rate int64) time.Duration {
	if rate <= 0 {
		return 0
	}
	return max(time.Second/time.Duration(rate), d.p.SourceTick.D())
}

// sourceStep makes the source's next batch. A rate-limited source emits
// rate*tick tuples per tick; a source that cannot keep up falls behind
// (at most two batches wait, the rest is not generated). An unlimited
// source keeps one chunk waiting and is re-armed when it is taken.
func (d *DataPlane) sourceStep(x *pe, name string, prof *profile, rate, count int64) {
	pendingSrc := 0
	for _, it := range x.queue {
		if it.prof == prof {
			pendingSrc++
		}
	}
	var n float64
	emit := d.e.Now()
	if rate > 0 {
		x.srcAcc[name] += float64(rate) * d.sourcePeriod(rate).Seconds()
		if pendingSrc >= 2 {
			x.srcAcc[name] = 0
			return
		}
		// Tuples are stamped when emitted, as the runtime's source does.
		n = x.srcAcc[name]
		x.srcAcc[name] = 0
	} else {
		if pendingSrc > 0 {
			return
		}
		n = d.p.SourceChunk
	}
	if count > 0 {
		n = min(n, float64(count)-x.emitted[name])
	}
	if n <= 0 {
		return
	}
	x.emitted[name] += n
	x.queue = append(x.queue, &item{prof: prof, n: n, emit: emit})
	d.kick(x)
}

func (d *DataPlane) startWindows(x *pe) {
	for _, op := range x.cfg.Operators {
		if op.Kind != v1alpha1.KindAggregate {
			continue
		}
		name := op.Name
		win := time.Second
		if op.Params != nil && op.Params.WindowMillis != nil {
			win = time.Duration(*op.Params.WindowMillis) * time.Millisecond
		}
		keys := x.job.keys(name, d.p.DefaultKeys, map[string]bool{})
		if keys <= 0 {
			keys = d.p.DefaultKeys
		}
		prof := d.profile(x, "agg:"+name, func(b *builder) { b.visit(name, 1, false) })
		epoch := x.epoch
		var tick func()
		tick = func() {
			if x.epoch != epoch || !x.running {
				return
			}
			if c := x.windows[name]; c > 0 {
				x.windows[name] = 0
				x.queue = append(x.queue, &item{prof: prof, n: min(c, float64(keys)), emit: d.e.Now()})
				d.kick(x)
			}
			d.e.After(win, tick)
		}
		d.e.After(win, tick)
	}
}

func (d *DataPlane) nodeOf(x *pe) string {
	if d.env.NodeOf == nil {
		return ""
	}
	return d.env.NodeOf(x.pod)
}

// capacity is how many tuples of a stream may be in flight or queued.
func (d *DataPlane) capacity(s *stream) float64 {
	return float64(d.p.StreamBufferBytes) / float64(max(s.bytes, 1))
}

// kick starts the PE's next batch if it is idle and its outputs have room.
func (d *DataPlane) kick(x *pe) {
	if !x.running || x.cur != nil || len(x.queue) == 0 {
		return
	}
	it := x.queue[0]
	for _, o := range it.prof.outs {
		s := d.outStream(x, o.stream)
		want := it.n * o.gain
		if s == nil || !s.connected || (s.inflight > 0 && s.inflight+want > d.capacity(s)) {
			x.blocked = true
			return
		}
	}
	x.blocked = false
	x.queue = x.queue[1:]
	if it.from != nil {
		it.from.inflight = max(0, it.from.inflight-it.n)
		d.kick(it.from.from)
	}
	x.cur = it
	x.remaining = it.n * it.prof.cost
	x.rate = 0
	x.last = d.e.Now()
	d.markBusy(x)
	d.reshare(x.busyNode)
	// An unlimited source refills as soon as its chunk is taken.
	d.refillSources(x)
}

func (d *DataPlane) refillSources(x *pe) {
	for _, op := range x.cfg.Operators {
		if op.Kind != v1alpha1.KindSource || !d.outputsConnected(x) {
			continue
		}
		if op.Params != nil && op.Params.Rate != nil && *op.Params.Rate > 0 {
			continue
		}
		count := int64(0)
		if op.Params != nil && op.Params.Count != nil {
			count = *op.Params.Count
		}
		name := op.Name
		prof := d.profile(x, "src:"+name, func(b *builder) { b.visit(name, 1, true) })
		d.sourceStep(x, name, prof, 0, count)
	}
}

func (d *DataPlane) outStream(x *pe, id int32) *stream {
	for _, s := range x.outs {
		if s.id == id {
			return s
		}
	}
	return nil
}

// Demand is the CPU a pod wants now, for the kubelet's share computation:
// a busy PE wants up to PEMaxCores, an idle one nothing.
func (d *DataPlane) Demand(pod types.NamespacedName) float64 {
	x := d.byPod[pod]
	if x == nil {
		if d.OtherDemand != nil {
			return d.OtherDemand(pod)
		}
		return 0
	}
	if x.running && x.cur != nil {
		return d.p.PEMaxCores
	}
	return 0
}

// reshare recomputes the CPU rate of every busy PE on a node (on every
// node when they share a host) and moves their completion times
// accordingly (processor sharing).
func (d *DataPlane) reshare(node string) {
	if !d.env.SharedCPU {
		d.reshareNode(node)
		return
	}
	nodes := map[string]bool{node: true}
	for n, m := range d.busy {
		if len(m) > 0 {
			nodes[n] = true
		}
	}
	names := make([]string, 0, len(nodes))
	for n := range nodes {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		d.reshareNode(n)
	}
}

func (d *DataPlane) reshareNode(node string) {
	if len(d.busy[node]) == 0 {
		return
	}
	var shares map[types.NamespacedName]float64
	// Fast path: only busy PEs want CPU and all of them fit.
	room := d.env.Capacity != nil && d.env.Limit != nil && d.OtherDemand == nil && !d.env.SharedCPU &&
		float64(len(d.busy[node]))*d.p.PEMaxCores <= d.env.Capacity(node)
	if d.env.Shares != nil && !room {
		shares = d.env.Shares(node)
	}
	now := d.e.Now()
	list := make([]*pe, 0, len(d.busy[node]))
	for x := range d.busy[node] {
		list = append(list, x)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].key < list[j].key })
	for _, x := range list {
		rate := d.p.PEMaxCores
		switch {
		case room:
			if l := d.env.Limit(x.pod); l >= 0 {
				rate = min(rate, l)
			}
		case shares != nil:
			rate = min(shares[x.pod], d.p.PEMaxCores)
		}
		if rate == x.rate && x.done != nil {
			continue // its completion time stands
		}
		x.remaining = max(0, x.remaining-(now-x.last).Seconds()*x.rate)
		x.last = now
		x.rate = rate
		if x.done != nil {
			x.done.Stop()
			x.done = nil
		}
		if rate <= 0 {
			continue
		}
		left := time.Duration(x.remaining / rate * float64(time.Second))
		epoch := x.epoch
		x.done = d.e.After(left, func() {
			if x.epoch == epoch {
				d.complete(x)
			}
		})
	}
}

func (d *DataPlane) complete(x *pe) {
	it := x.cur
	x.cur, x.done = nil, nil
	x.remaining = 0
	node := x.busyNode
	d.markIdle(x)
	now := d.e.Now()
	if s := it.n * it.prof.sink; s > 0 {
		d.samples = append(d.samples, Sample{At: now, Latency: now - it.emit, Tuples: s, PE: x.name})
	}
	for _, a := range it.prof.aggs {
		x.windows[a.op] += it.n * a.gain
	}
	for _, o := range it.prof.outs {
		s := d.outStream(x, o.stream)
		if s == nil {
			d.lost += it.n * o.gain
			continue
		}
		d.send(s, it.n*o.gain, it.emit)
	}
	d.kick(x)
	if x.cur == nil {
		d.reshare(node)
	}
}

func (d *DataPlane) markBusy(x *pe) {
	x.busyNode = d.nodeOf(x)
	m := d.busy[x.busyNode]
	if m == nil {
		m = map[*pe]struct{}{}
		d.busy[x.busyNode] = m
	}
	m[x] = struct{}{}
}

func (d *DataPlane) markIdle(x *pe) {
	delete(d.busy[x.busyNode], x)
}

// send puts n tuples on a connected stream: the link is busy for their
// transfer time, and they arrive after the path latency, in order.
func (d *DataPlane) send(s *stream, n float64, emit time.Duration) {
	if !s.connected {
		d.lost += n
		return
	}
	path := network.Path{}
	if d.env.Path != nil {
		path = d.env.Path(s.from.pod, s.to.pod)
	}
	now := d.e.Now()
	s.linkFree = max(s.linkFree, now) + path.Transfer(int64(n*float64(s.bytes)))
	arrive := max(s.linkFree+path.Sample(d.e.Rand()), s.lastArrive)
	s.lastArrive = arrive
	s.inflight += n
	epoch := s.epoch
	d.e.At(arrive, func() {
		if s.epoch != epoch || !s.to.running {
			return
		}
		to := s.to
		prof := d.profile(to, "in:"+itoa(s.id), func(b *builder) {
			b.prof.cost += sec(d.p.DeserializeCost.D()) + d.byteCost(s.bytes)
			b.visit(s.toOp, 1, true)
		})
		to.queue = append(to.queue, &item{prof: prof, n: n, emit: emit, from: s})
		d.kick(to)
	})
}

// Samples are the batches delivered to sinks so far.
func (d *DataPlane) Samples() []Sample { return d.samples }

// Lost is the number of tuples dropped by failures.
func (d *DataPlane) Lost() float64 { return d.lost }

// Delivered is the number of tuples sinks received in [from, to).
func (d *DataPlane) Delivered(from, to time.Duration) float64 {
	var n float64
	for _, s := range d.samples {
		if s.At >= from && s.At < to {
			n += s.Tuples
		}
	}
	return n
}

// DeliveredBy is Delivered for the sinks of one PE.
func (d *DataPlane) DeliveredBy(peName string, from, to time.Duration) float64 {
	var n float64
	for _, s := range d.samples {
		if s.PE == peName && s.At >= from && s.At < to {
			n += s.Tuples
		}
	}
	return n
}

// LatencyQuantile is the q-quantile of tuple latency over the samples
// delivered in [from, to), weighted by tuples.
func (d *DataPlane) LatencyQuantile(q float64, from, to time.Duration) time.Duration {
	var sel []Sample
	var total float64
	for _, s := range d.samples {
		if s.At >= from && s.At < to {
			sel = append(sel, s)
			total += s.Tuples
		}
	}
	if len(sel) == 0 {
		return 0
	}
	sort.Slice(sel, func(i, j int) bool { return sel[i].Latency < sel[j].Latency })
	var acc float64
	for _, s := range sel {
		acc += s.Tuples
		if acc >= q*total {
			return s.Latency
		}
	}
	return sel[len(sel)-1].Latency
}

// Connected reports whether all connections of a PE are up.
func (d *DataPlane) Connected(namespace, peName string) bool {
	x := d.pes[peKey(namespace, peName)]
	return x != nil && x.running && d.connected(x)
}

// RemovePE forgets a PE whose configuration was deleted (its job is gone):
// its flows stop and its streams are dropped.
func (d *DataPlane) RemovePE(namespace, name string) {
	k := peKey(namespace, name)
	x := d.pes[k]
	if x == nil {
		return
	}
	if x.running {
		delete(d.byPod, x.pod)
		d.stop(x)
	}
	x.epoch++
	delete(d.pes, k)
	delete(x.job.pes, name)
	x.job.invalidate()
	for op := range x.ops {
		if x.job.opPE[op] == x {
			delete(x.job.opPE, op)
		}
	}
	// x's streams, found from its own lists rather than among all streams.
	jk := namespace + "/" + x.cfg.Job
	for _, s := range append(append([]*stream(nil), x.outs...), x.ins...) {
		sk := jk + "/" + itoa(s.id)
		if d.streams[sk] != s {
			continue
		}
		s.epoch++
		delete(d.streams, sk)
		s.from.outs = without(s.from.outs, s)
		s.to.ins = without(s.to.ins, s)
	}
}

func without(ss []*stream, s *stream) []*stream {
	out := ss[:0]
	for _, x := range ss {
		if x != s {
			out = append(out, x)
		}
	}
	return out
}
