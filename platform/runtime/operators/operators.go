// Package operators implements the operator kinds a PE runs. Operators are
// driven by the PE engine, one call at a time (the engine serialises calls
// for all operators of a PE), so they keep plain fields and need no locks
// except where another goroutine reads their results (the sink).
package operators

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"slices"

	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/runtime/wire"
)

// Emitter receives an operator's output tuples. Emit must not keep t.
type Emitter interface {
	Emit(port int, t *wire.Tuple)
}

// Operator processes tuples arriving on its input ports.
type Operator interface {
	// Process handles one tuple. t and its payload are valid only during
	// the call; the operator may modify t before emitting it.
	Process(port int, t *wire.Tuple)
	// Finish is called once every stream into the operator has ended; the
	// operator emits what it still holds. The engine then ends its outputs.
	Finish()
}

// BatchProcessor is an operator that takes a whole input batch at once
// (the sink, to take its lock once per batch rather than per tuple).
type BatchProcessor interface {
	ProcessBatch(port int, ts []wire.Tuple)
}

// Ticker is an operator that wants the time now and then (to close windows
// when input stops).
type Ticker interface {
	Tick(now int64)
}

// Stateful operators keep state that a consistent-region checkpoint can
// save and restore. Both are called with the engine's lock held, between
// tuples.
type Stateful interface {
	Snapshot() ([]byte, error)
	Restore([]byte) error
}

// Runner is driven by its own goroutine (a source). Do runs f with the
// engine's lock held and returns true, or, when the engine holds the
// source paused (a consistent region draining or resetting), waits until
// it may go on and returns false without running f; flush sends the PE's
// partial output batches. A source flushes before it waits, so a paced
// source's tuples leave at once while an unpaced one fills whole frames.
type Runner interface {
	Run(ctx context.Context, do func(f func()) bool, flush func()) error
}

// Env is what an operator gets from the engine.
type Env struct {
	PE    string
	Out   Emitter
	Epoch uint32
	// Names maps origin IDs to operator names (for summaries).
	Names map[uint32]string
	// Now is the current time in Unix nanoseconds; the engine reads the
	// clock once per batch. Nil means time.Now.
	Now func() int64
	// Exchange is what export and import operators need (export.go).
	Exchange *ExchangeEnv
}

// OriginID is the stable 32-bit ID of an operator that numbers tuples.
func OriginID(name string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(name))
	return h.Sum32()
}

// New makes the operator for op.
func New(op *v1alpha1.Operator, env Env) (Operator, error) {
	p := op.Params
	if p == nil {
		p = &v1alpha1.OperatorParams{}
	}
	switch op.Kind {
	case v1alpha1.KindSource:
		return NewSource(op.Name, p, env), nil
	case v1alpha1.KindMap:
		return &Map{out: env.Out, work: deref32(p.Work, 0)}, nil
	case v1alpha1.KindFilter:
		return NewFilter(deref32(p.KeepPercent, 100), env.Out), nil
	case v1alpha1.KindAggregate:
		return NewAggregate(op.Name, p, env)
	case v1alpha1.KindSplit:
		return NewSplit(int(deref32(p.Outputs, 2)), p.SplitBy, env.Out), nil
	case v1alpha1.KindUnion:
		return &Union{out: env.Out}, nil
	case v1alpha1.KindSink:
		return NewSink(op.Name, env), nil
	case v1alpha1.KindExport:
		return NewExport(op, env)
	case v1alpha1.KindImport:
		return NewImport(op, p, env)
	}
	return nil, fmt.Errorf("operator %q: unknown kind %q", op.Name, op.Kind)
}

func deref32(p *int32, def int32) int32 {
	if p == nil {
		return def
	}
	return *p
}

func deref64(p *int64, def int64) int64 {
	if p == nil {
		return def
	}
	return *p
}

// mix64 is a fast, well-spread 64-bit hash (the splitmix64 finaliser).
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// Map does Work rounds of hashing per tuple and passes it on unchanged.
type Map struct {
	out  Emitter
	work int32
	// acc keeps the hashing from being optimised away.
	acc uint64
}

func (m *Map) Process(_ int, t *wire.Tuple) {
	h := t.Key ^ uint64(t.Value)
	for i := int32(0); i < m.work; i++ {
		h = mix64(h + uint64(i))
	}
	m.acc += h
	m.out.Emit(0, t)
}

func (m *Map) Finish() {}

// Union passes tuples from all its inputs to its one output.
type Union struct{ out Emitter }

func (u *Union) Process(_ int, t *wire.Tuple) { u.out.Emit(0, t) }
func (u *Union) Finish()                      {}

// pending accumulates, per origin, what a dropping operator owes the next
// tuple it forwards from that origin: the sequence numbers it dropped and
// any loss those dropped tuples reported.
type pending struct{ m map[uint64]owed }

type owed struct{ skip, lost uint32 }

func originKey(t *wire.Tuple) uint64 { return uint64(t.Origin)<<32 | uint64(t.Epoch) }

func (p *pending) drop(t *wire.Tuple) {
	if p.m == nil {
		p.m = make(map[uint64]owed)
	}
	k := originKey(t)
	o := p.m[k]
	o.skip += 1 + t.Skip
	o.lost += t.Lost
	p.m[k] = o
}

// pendingEntry is one origin's debt in a snapshot.
type pendingEntry struct {
	Origin uint64 `json:"o"`
	Skip   uint32 `json:"s"`
	Lost   uint32 `json:"l,omitempty"`
}

func (p *pending) entries() []pendingEntry {
	out := make([]pendingEntry, 0, len(p.m))
	for k, o := range p.m {
		out = append(out, pendingEntry{Origin: k, Skip: o.skip, Lost: o.lost})
	}
	slices.SortFunc(out, func(a, b pendingEntry) int { return cmpU64(a.Origin, b.Origin) })
	return out
}

func (p *pending) restore(es []pendingEntry) {
	p.m = nil
	for _, e := range es {
		if p.m == nil {
			p.m = make(map[uint64]owed, len(es))
		}
		p.m[e.Origin] = owed{skip: e.Skip, lost: e.Lost}
	}
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (p *pending) settle(t *wire.Tuple) {
	if len(p.m) == 0 {
		return
	}
	k := originKey(t)
	if o, ok := p.m[k]; ok {
		t.Skip += o.skip
		t.Lost += o.lost
		delete(p.m, k)
	}
}

// Filter keeps KeepPercent of tuples, chosen by a hash of (origin, seq) so
// that the choice is the same on every run. Dropped tuples are accounted
// for in the Skip of the next tuple forwarded from the same origin.
type Filter struct {
	out  Emitter
	keep uint64
	owe  pending
}

func NewFilter(keepPercent int32, out Emitter) *Filter {
	return &Filter{out: out, keep: uint64(keepPercent)}
}

// Keeps reports whether a filter with keepPercent keeps the tuple.
func Keeps(keepPercent uint64, origin uint32, seq uint64) bool {
	return mix64(uint64(origin)<<40^seq)%100 < keepPercent
}

func (f *Filter) Process(_ int, t *wire.Tuple) {
	if !Keeps(f.keep, t.Origin, t.Seq) {
		f.owe.drop(t)
		return
	}
	f.owe.settle(t)
	f.out.Emit(0, t)
}

func (f *Filter) Finish() {}

// Snapshot saves the skips the filter owes.
func (f *Filter) Snapshot() ([]byte, error) { return json.Marshal(f.owe.entries()) }

// Restore replaces the owed skips.
func (f *Filter) Restore(b []byte) error {
	var es []pendingEntry
	if err := json.Unmarshal(b, &es); err != nil {
		return fmt.Errorf("filter restore: %w", err)
	}
	f.owe.restore(es)
	return nil
}

// Split sends each tuple to one of its output ports, by key hash or round
// robin. The ports not chosen owe the tuple as a Skip, so a sink behind
// one branch does not count the other branch's tuples as gaps.
type Split struct {
	out   Emitter
	n     int
	byKey bool
	next  int
	owe   []pending
}

func NewSplit(n int, by string, out Emitter) *Split {
	if n < 1 {
		n = 1
	}
	return &Split{out: out, n: n, byKey: by != "roundRobin", owe: make([]pending, n)}
}

// Port is the output port a split of n ports by key chooses for key.
func Port(key uint64, n int) int { return int(mix64(key) % uint64(n)) }

func (s *Split) Process(_ int, t *wire.Tuple) {
	var p int
	if s.byKey {
		p = Port(t.Key, s.n)
	} else {
		p = s.next
		s.next = (s.next + 1) % s.n
	}
	for q := range s.owe {
		if q != p {
			// Only the chosen branch carries the tuple's own Lost.
			lost := t.Lost
			t.Lost = 0
			s.owe[q].drop(t)
			t.Lost = lost
		}
	}
	s.owe[p].settle(t)
	s.out.Emit(p, t)
}

func (s *Split) Finish() {}

type splitSnapshot struct {
	Next int              `json:"next"`
	Owe  [][]pendingEntry `json:"owe"`
}

// Snapshot saves the round-robin cursor and the skips owed per port.
func (s *Split) Snapshot() ([]byte, error) {
	snap := splitSnapshot{Next: s.next, Owe: make([][]pendingEntry, len(s.owe))}
	for i := range s.owe {
		snap.Owe[i] = s.owe[i].entries()
	}
	return json.Marshal(snap)
}

// Restore replaces the cursor and the owed skips.
func (s *Split) Restore(b []byte) error {
	var snap splitSnapshot
	if err := json.Unmarshal(b, &snap); err != nil {
		return fmt.Errorf("split restore: %w", err)
	}
	if len(snap.Owe) == 0 || snap.Next < 0 || snap.Next >= len(snap.Owe) {
		return fmt.Errorf("split restore: snapshot of %d ports (next %d)", len(snap.Owe), snap.Next)
	}
	if len(snap.Owe) != s.n {
		s.restoreOtherWidth(snap)
		return nil
	}
	s.next = snap.Next
	for i := range s.owe {
		s.owe[i].restore(snap.Owe[i])
	}
	return nil
}

// restoreOtherWidth restores a snapshot taken with another port count: the
// split feeds a parallel region whose width changed, and the channels
// behind its ports were rebuilt from every old channel's state
// (Redistribution). Port q owed, per origin, the tuples sent elsewhere
// since its last one; a rebuilt channel's tracker expects the highest
// Next of the old channels, which is the split's own position (the
// channel that took the split's last tuple of an origin has Next just
// past it). So no new port owes a skip. Loss reports are kept (only the
// chosen port carries a tuple's Lost, so they are zero in practice).
func (s *Split) restoreOtherWidth(snap splitSnapshot) {
	s.next = snap.Next % s.n
	lost := map[uint64]uint32{}
	for _, es := range snap.Owe {
		for _, e := range es {
			lost[e.Origin] += e.Lost
		}
	}
	var keep []pendingEntry
	for o, l := range lost {
		if l > 0 {
			keep = append(keep, pendingEntry{Origin: o, Lost: l})
		}
	}
	for i := range s.owe {
		s.owe[i].restore(nil)
	}
	s.owe[0].restore(keep)
}
