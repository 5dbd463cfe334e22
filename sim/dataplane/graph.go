package dataplane

import (
	"fmt"
	"sort"
	"time"

	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/peconfig"
)

// profile is what one tuple entering a PE at one point costs and causes,
// summed over the operators fused in the PE: the model is linear in the
// number of tuples between aggregates, so a batch of n tuples costs n times
// as much and yields n times the outputs.
type profile struct {
	// cost is CPU seconds per entering tuple.
	cost float64
	// outs are tuples sent on cross-PE streams per entering tuple.
	outs []gainOut
	// sink is tuples reaching sinks per entering tuple.
	sink float64
	// aggs are tuples folded into aggregate windows per entering tuple.
	aggs []gainAgg
}

type gainOut struct {
	stream int32
	gain   float64
}

type gainAgg struct {
	op   string
	gain float64
}

func sec(d time.Duration) float64 { return d.Seconds() }

func (d *DataPlane) opCost(op *v1alpha1.Operator) float64 {
	p := d.p
	switch op.Kind {
	case v1alpha1.KindSource:
		return sec(p.SourceCost.D())
	case v1alpha1.KindMap:
		c := sec(p.MapCost.D())
		if op.Params != nil && op.Params.Work != nil {
			c += float64(*op.Params.Work) * sec(p.MapRoundCost.D())
		}
		return c
	case v1alpha1.KindFilter:
		return sec(p.FilterCost.D())
	case v1alpha1.KindAggregate:
		return sec(p.AggregateCost.D())
	case v1alpha1.KindSplit:
		return sec(p.SplitCost.D())
	case v1alpha1.KindUnion:
		return sec(p.UnionCost.D())
	case v1alpha1.KindSink:
		return sec(p.SinkCost.D())
	}
	return 0
}

// portGain is the share of an operator's input tuples that leave on one of
// its output ports.
func portGain(op *v1alpha1.Operator) float64 {
	switch op.Kind {
	case v1alpha1.KindFilter:
		if op.Params != nil && op.Params.KeepPercent != nil {
			return float64(*op.Params.KeepPercent) / 100
		}
		return 1
	case v1alpha1.KindSplit:
		n := int32(2)
		if op.Params != nil && op.Params.Outputs != nil && *op.Params.Outputs > 0 {
			n = *op.Params.Outputs
		}
		return 1 / float64(n)
	}
	return 1
}

// wireBytes is the size on the wire of one tuple of a stream.
func (d *DataPlane) wireBytes(job *jobIndex, from string) int64 {
	return d.p.TupleHeaderBytes + int64(job.payload(from, map[string]bool{}))
}

func (d *DataPlane) byteCost(n int64) float64 { return float64(n) * d.p.ByteCostNanos * 1e-9 }

type builder struct {
	d    *DataPlane
	pe   *pe
	prof *profile
	outs map[int32]float64
	aggs map[string]float64
}

func (d *DataPlane) newBuilder(x *pe) *builder {
	return &builder{d: d, pe: x, prof: &profile{}, outs: map[int32]float64{}, aggs: map[string]float64{}}
}

func (b *builder) finish() *profile {
	ids := make([]int32, 0, len(b.outs))
	for id := range b.outs {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for _, id := range ids {
		b.prof.outs = append(b.prof.outs, gainOut{stream: id, gain: b.outs[id]})
	}
	names := make([]string, 0, len(b.aggs))
	for n := range b.aggs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		b.prof.aggs = append(b.prof.aggs, gainAgg{op: n, gain: b.aggs[n]})
	}
	return b.prof
}

// visit follows n tuples into operator name; self says whether the
// operator's own per-tuple work is charged (not for an aggregate's window
// output, whose folding was charged on the way in).
func (b *builder) visit(name string, n float64, self bool) {
	op := b.pe.ops[name]
	if op == nil {
		return
	}
	if self {
		b.prof.cost += n * b.d.opCost(op)
		switch op.Kind {
		case v1alpha1.KindSink:
			b.prof.sink += n
			return
		case v1alpha1.KindAggregate:
			b.aggs[name] += n
			return
		}
	}
	g := n * portGain(op)
	for _, s := range b.pe.cfg.Streams {
		if s.From.Operator != name {
			continue
		}
		if _, local := b.pe.ops[s.To.Operator]; local {
			b.visit(s.To.Operator, g, true)
			continue
		}
		bytes := b.d.wireBytes(b.pe.job, name)
		b.prof.cost += g * (sec(b.d.p.SerializeCost.D()) + b.d.byteCost(bytes))
		b.outs[s.ID] += g
	}
}

// jobIndex finds operators of one job across its PEs.
type jobIndex struct {
	pes map[string]*pe // by PE name
	// opPE maps an operator to the PE it is fused into.
	opPE map[string]*pe
	// Memos of payload and keys by operator; a PE added or removed
	// clears them (invalidate).
	payloadMemo map[string]int32
	keysMemo    map[string]int64
	// payloadMisses are the operators payload walks looked up and did not
	// find (their PE was not known yet); cyclic says a walk met an
	// operator twice (the graph has a cycle).
	payloadMisses map[string]bool
	cyclic        bool
	// into lists, by target operator, the cross-PE streams out of the
	// job's PEs (a PE's configuration also holds the streams into it).
	into map[string][]streamRef
	// gen counts PEs added; profiles built before are stale.
	gen uint64
}

// streamRef is stream idx of a PE's configuration.
type streamRef struct {
	from *pe
	idx  int
}

// invalidate forgets derived facts after the job's PEs changed.
func (j *jobIndex) invalidate() {
	j.payloadMemo, j.keysMemo, j.payloadMisses = nil, nil, nil
}

// added forgets derived facts after a PE was added. A memoised payload
// depends only on the operators its walk looked up, so in an acyclic graph
// it stays right unless the new PE brings an operator a walk missed (or
// moves one), which stale says. In a cyclic graph a memo depends on where
// the walk entered the cycle, so it is always dropped, as keys' memos are.
func (j *jobIndex) added(stale bool) {
	if stale {
		j.payloadMemo, j.payloadMisses = nil, nil
	}
	j.keysMemo = nil
}

// inbound lists the streams into an operator. Every stream into an operator
// is in the configuration of the PE that operator is fused into, so no walk
// over the whole job is needed.
func (j *jobIndex) inbound(name string) []peconfig.Stream {
	x := j.opPE[name]
	if x == nil {
		return nil
	}
	var out []peconfig.Stream
	for _, s := range x.cfg.Streams {
		if s.To.Operator == name {
			out = append(out, s)
		}
	}
	return out
}

// sorted lists the job's PEs by name, for walks whose result may depend on
// the order.
func (j *jobIndex) sorted() []*pe {
	out := make([]*pe, 0, len(j.pes))
	for _, x := range j.pes {
		out = append(out, x)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].name < out[b].name })
	return out
}

func (j *jobIndex) op(name string) *v1alpha1.Operator {
	if x := j.opPE[name]; x != nil {
		return x.ops[name]
	}
	return nil
}

// payload is the payload size of the tuples an operator emits: that of the
// source upstream of it (the first found, in stream order).
func (j *jobIndex) payload(name string, seen map[string]bool) int32 {
	if v, ok := j.payloadMemo[name]; ok {
		return v
	}
	v := j.payloadWalk(name, seen)
	if j.payloadMemo == nil {
		j.payloadMemo = map[string]int32{}
	}
	j.payloadMemo[name] = v
	return v
}

func (j *jobIndex) payloadWalk(name string, seen map[string]bool) int32 {
	if seen[name] {
		j.cyclic = true
		return 0
	}
	seen[name] = true
	op := j.op(name)
	if op == nil {
		if j.payloadMisses == nil {
			j.payloadMisses = map[string]bool{}
		}
		j.payloadMisses[name] = true
		return 0
	}
	if op.Kind == v1alpha1.KindSource {
		if op.Params != nil && op.Params.TupleSize != nil {
			return *op.Params.TupleSize
		}
		return 0
	}
	for _, s := range j.inbound(name) {
		if p := j.payload(s.From.Operator, seen); p > 0 {
			return p
		}
	}
	return 0
}

// keys is the key cardinality upstream of an operator.
func (j *jobIndex) keys(name string, def int64, seen map[string]bool) int64 {
	// Only a top-level answer is memoised: inside a walk, seen makes a
	// shared ancestor count once, which a memoised sub-answer would not.
	if len(seen) > 0 {
		return j.keysWalk(name, def, seen)
	}
	memo := fmt.Sprintf("%s|%d", name, def)
	if v, ok := j.keysMemo[memo]; ok {
		return v
	}
	v := j.keysWalk(name, def, seen)
	if j.keysMemo == nil {
		j.keysMemo = map[string]int64{}
	}
	j.keysMemo[memo] = v
	return v
}

func (j *jobIndex) keysWalk(name string, def int64, seen map[string]bool) int64 {
	if seen[name] {
		return 0
	}
	seen[name] = true
	op := j.op(name)
	if op == nil {
		return 0
	}
	if op.Kind == v1alpha1.KindSource {
		if op.Params != nil && op.Params.Keys != nil {
			return *op.Params.Keys
		}
		return def
	}
	var total int64
	for _, s := range j.inbound(name) {
		total += j.keysWalk(s.From.Operator, def, seen)
	}
	return total
}

func streamByID(cfg *peconfig.PE, id int32) (peconfig.Stream, bool) {
	for _, s := range cfg.Streams {
		if s.ID == id {
			return s, true
		}
	}
	return peconfig.Stream{}, false
}
