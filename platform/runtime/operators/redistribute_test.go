package operators

import (
	"encoding/json"
	"fmt"
	"testing"

	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/runtime/wire"
)

// toPorts feeds output port p to ops[p] (a split's channels in-process).
type toPorts []Operator

func (o toPorts) Emit(p int, t *wire.Tuple) { o[p].Process(0, t) }

// stage is a parallel region at one width, fused in one process: a split
// by key, one aggregate per channel, all feeding the same sink (the union).
type stage struct {
	split *Split
	aggs  []*Aggregate
}

const (
	redistKeys   = 16
	redistWindow = 100 // ms; a tuple every ms, so 100 tuples per window
)

// srcTuple is tuple seq of a source with monotone event time.
func srcTuple(seq uint64) wire.Tuple {
	return wire.Tuple{Origin: 7, Epoch: 1, Seq: seq, Key: mix64(seq) % redistKeys, Event: int64(seq) * 1e6, Value: int64(1 + seq%10)}
}

// newStage builds width w. With prev, it restores from prev's snapshots
// (taken at checkpoint seq) the way a reset does: the split from its own
// snapshot, each aggregate redistributed from every old channel's, or,
// without redistribute, each aggregate from its own old channel's only
// (initial state for a new channel), as before redistribution existed.
func newStage(t *testing.T, w int, sink Operator, prev *stage, seq uint64, redistribute bool) *stage {
	t.Helper()
	s := &stage{}
	var outs toPorts
	for c := 0; c < w; c++ {
		a, err := NewAggregate(fmt.Sprintf("agg-%d", c), &v1alpha1.OperatorParams{WindowMillis: i64(redistWindow), Function: "sum"},
			Env{Out: toPorts{sink}, Epoch: 1})
		if err != nil {
			t.Fatal(err)
		}
		s.aggs = append(s.aggs, a)
		outs = append(outs, a)
	}
	s.split = NewSplit(w, "key", outs)
	if prev == nil {
		return s
	}
	b, err := prev.split.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.split.Restore(b); err != nil {
		t.Fatal(err)
	}
	var parts [][]byte
	for _, a := range prev.aggs {
		b, err := a.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		parts = append(parts, b)
	}
	for c, a := range s.aggs {
		var b []byte
		switch {
		case redistribute:
			if b, err = a.Redistribute(Redistribution{Parts: parts, Channel: c, Width: w, ByKey: true, RestoreSeq: seq}); err != nil {
				t.Fatal(err)
			}
		case c < len(parts):
			b = parts[c]
		default:
			continue
		}
		if err := a.Restore(b); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func (s *stage) feed(from, to uint64) {
	for seq := from; seq < to; seq++ {
		t := srcTuple(seq)
		s.split.Process(0, &t)
	}
}

func (s *stage) finish() {
	for _, a := range s.aggs {
		a.Finish()
	}
}

// runWidths feeds 0..n through stages of the given widths, changing width
// at each boundary, and returns the sink's summary and what the aggregates
// found missing on their input.
func runWidths(t *testing.T, n uint64, widths []int, redistribute bool) (Summary, uint64) {
	t.Helper()
	sink := NewSink("sink", Env{Now: func() int64 { return 0 }})
	var st *stage
	step := n / uint64(len(widths))
	var missing uint64
	for i, w := range widths {
		from := uint64(i) * step
		st = newStage(t, w, sink, st, uint64(i), redistribute)
		to := from + step
		if i == len(widths)-1 {
			to = n
		}
		// Change width in the middle of a window, not at its edge.
		st.feed(from, to)
		for _, a := range st.aggs {
			missing += a.st.PendingLost
			for _, o := range a.tracker.Origins() {
				missing += o.Missing
				if o.Duplicates > 0 {
					t.Errorf("width %d: an aggregate counted %d duplicates", w, o.Duplicates)
				}
			}
		}
	}
	st.finish()
	return sink.Summary(), missing
}

// Keyed state follows its keys across width changes: the sink receives the
// same results (by content), exactly once, as at a fixed width, and neither
// the aggregates nor the sink count gaps or duplicates, even when a channel
// comes back after having gone (its origin is known to the sink).
func TestAggregateRedistributeAcrossWidths(t *testing.T) {
	const n = 10_050 // ~100 windows; changes fall mid-window
	want, _ := runWidths(t, n, []int{1}, true)
	if want.Tuples < redistKeys*(n/redistWindow) || want.Gaps != 0 || want.Duplicates != 0 {
		t.Fatalf("fixed width: %+v", want)
	}
	var sum int64
	for s := uint64(0); s < n; s++ {
		sum += int64(1 + s%10)
	}
	if want.ValueSum != sum {
		t.Fatalf("fixed width value sum %d, want %d", want.ValueSum, sum)
	}
	for _, widths := range [][]int{{2}, {2, 4}, {4, 2}, {2, 3, 1, 4}, {3, 1, 3}, {2, 4, 2, 4}} {
		got, missing := runWidths(t, n, widths, true)
		if got.ContentDigest != want.ContentDigest || got.Tuples != want.Tuples || got.ValueSum != want.ValueSum {
			t.Errorf("widths %v: tuples %d sum %d content %x, fixed width %d %d %x", widths, got.Tuples, got.ValueSum,
				got.ContentDigest, want.Tuples, want.ValueSum, want.ContentDigest)
		}
		if got.Gaps != 0 || got.Duplicates != 0 || missing != 0 {
			t.Errorf("widths %v: sink gaps %d duplicates %d, aggregates missing %d", widths, got.Gaps, got.Duplicates, missing)
		}
	}
	// The control: restoring each channel from its own old state only loses
	// the keys that moved and repeats or drops windows.
	for _, widths := range [][]int{{2, 4}, {4, 2}} {
		got, _ := runWidths(t, n, widths, false)
		if got.ContentDigest == want.ContentDigest && got.ValueSum == want.ValueSum {
			t.Errorf("widths %v without redistribution gave the fixed-width result", widths)
		}
	}
}

// A channel rebuilt from several old ones: it keeps only its keys, takes
// the smallest ClosedBelow, continues its own output sequence if it
// existed, and starts a fresh epoch if not.
func TestAggregateRedistributeMergeRules(t *testing.T) {
	snap := func(st aggState, tr []OriginStats) []byte {
		b, err := (&Aggregate{st: st, tracker: func() *Tracker { x := NewTracker(true); x.Restore(tr); return x }()}).Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	var k0, k1 uint64 // keys that a 3-channel split sends to channels 0 and 1
	for k := uint64(0); k0 == 0 || k1 == 0; k++ {
		switch Port(k, 3) {
		case 0:
			k0 = max(k0, k)
		case 1:
			k1 = max(k1, k)
		}
	}
	parts := [][]byte{
		snap(aggState{Seq: 40, Epoch: 1, ClosedBelow: 9, Late: 2, PendingLost: 1, MaxEvent: 950, Seen: true,
			Windows: map[int64]map[uint64]*acc{9: {k0: {Count: 2, Sum: 5, Min: 2, Max: 3, MaxTime: 1}, k1: {Count: 1, Sum: 4, Min: 4, Max: 4}}}},
			[]OriginStats{{ID: 7, Epoch: 1, Next: 500, Tuples: 300}}),
		snap(aggState{Seq: 30, Epoch: 1, ClosedBelow: 8, Late: 5, MaxEvent: 890, Seen: true,
			Windows: map[int64]map[uint64]*acc{8: {k0: {Count: 1, Sum: 7, Min: 7, Max: 7, MaxTime: 2}}}},
			[]OriginStats{{ID: 7, Epoch: 1, Next: 498, Tuples: 200}}),
	}
	a, _ := NewAggregate("agg-0", &v1alpha1.OperatorParams{}, Env{Out: &fakeOut{}, Epoch: 1})
	read := func(c int) aggSnapshot {
		b, err := a.Redistribute(Redistribution{Parts: parts, Channel: c, Width: 3, ByKey: true, RestoreSeq: 6})
		if err != nil {
			t.Fatal(err)
		}
		var s aggSnapshot
		if err := jsonUnmarshal(b, &s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	s0 := read(0)
	if s0.State.ClosedBelow != 8 || s0.State.MaxEvent != 950 || s0.State.Seq != 40 || s0.State.Epoch != 1 ||
		s0.State.Late != 2 || s0.State.PendingLost != 1 {
		t.Fatalf("channel 0: %+v", s0.State)
	}
	if len(s0.State.Windows) != 2 || s0.State.Windows[9][k0].Sum != 5 || s0.State.Windows[8][k0].Sum != 7 || s0.State.Windows[9][k1] != nil {
		t.Fatalf("channel 0 windows: %+v", s0.State.Windows)
	}
	if tr := s0.Tracker; len(tr) != 1 || tr[0].Next != 500 || !tr[0].Rejoin || tr[0].Tuples != 300 {
		t.Fatalf("channel 0 tracker: %+v", tr)
	}
	s1 := read(1)
	if s1.State.Seq != 30 || s1.State.Late != 5 || s1.State.Windows[9][k1].Sum != 4 || s1.Tracker[0].Next != 500 || s1.Tracker[0].Tuples != 200 {
		t.Fatalf("channel 1: %+v %+v", s1.State, s1.Tracker)
	}
	s2 := read(2)
	if s2.State.Seq != 0 || s2.State.Epoch != 7 || s2.State.Late != 0 || len(s2.State.Windows) != 0 || s2.Tracker[0].Next != 500 {
		t.Fatalf("new channel 2: %+v %+v", s2.State, s2.Tracker)
	}
}

// A rejoining tracker takes the next tuple at or above Next as its
// position whatever its skip, and still counts one below Next as a
// duplicate.
func TestTrackerRejoin(t *testing.T) {
	tr := NewTracker(true)
	tr.Restore([]OriginStats{{ID: 1, Epoch: 1, Next: 10, Rejoin: true}})
	if m := tr.Observe(&wire.Tuple{Origin: 1, Epoch: 1, Seq: 15, Skip: 2}); m != 0 {
		t.Fatalf("rejoin counted %d missing", m)
	}
	if m := tr.Observe(&wire.Tuple{Origin: 1, Epoch: 1, Seq: 18}); m != 2 {
		t.Fatalf("after rejoining, a gap of 2 counted %d", m)
	}
	tr.Restore([]OriginStats{{ID: 1, Epoch: 1, Next: 10, Rejoin: true}})
	tr.Observe(&wire.Tuple{Origin: 1, Epoch: 1, Seq: 9})
	if o := tr.Origins()[0]; o.Duplicates != 1 || o.Next != 10 {
		t.Fatalf("a tuple below Next while rejoining: %+v", o)
	}
}

// Filters in a channel keep each old channel's owed loss once and drop
// skips owed to the old channels.
func TestFilterRedistribute(t *testing.T) {
	f := NewFilter(0, &fakeOut{})
	f.Process(0, &wire.Tuple{Origin: 1, Seq: 0, Lost: 3})
	a, _ := f.Snapshot()
	g := NewFilter(0, &fakeOut{})
	g.Process(0, &wire.Tuple{Origin: 1, Seq: 1, Lost: 4})
	b, _ := g.Snapshot()
	total := uint32(0)
	for c := 0; c < 3; c++ {
		s, err := f.Redistribute(Redistribution{Parts: [][]byte{a, b}, Channel: c, Width: 3, ByKey: true, RestoreSeq: 2})
		if err != nil {
			t.Fatal(err)
		}
		h := NewFilter(100, &fakeOut{})
		if err := h.Restore(s); err != nil {
			t.Fatal(err)
		}
		o := &fakeOut{}
		h.out = o
		h.Process(0, &wire.Tuple{Origin: 1, Seq: 9})
		if got := o.port(0)[0]; got.Skip != 0 {
			t.Fatalf("channel %d forwarded skip %d", c, got.Skip)
		} else {
			total += got.Lost
		}
	}
	if total != 7 {
		t.Fatalf("loss reported %d times in total, want 7", total)
	}
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

// Round robin spreads a key over every channel: old channel c's whole
// state goes to channel c mod width, and the partial accumulators of a key
// that meet there are added.
func TestAggregateRedistributeRoundRobin(t *testing.T) {
	part := func(sum int64) []byte {
		b, err := (&Aggregate{st: aggState{Seq: 3, Epoch: 1, ClosedBelow: 4,
			Windows: map[int64]map[uint64]*acc{4: {9: {Count: 1, Sum: sum, Min: sum, Max: sum}}}}, tracker: NewTracker(true)}).Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	parts := [][]byte{part(5), part(7), part(11)}
	a, _ := NewAggregate("agg-0", &v1alpha1.OperatorParams{}, Env{Out: &fakeOut{}, Epoch: 1})
	var total int64
	counts := []int64{2, 1}
	for c, want := range []int64{5 + 11, 7} {
		b, err := a.Redistribute(Redistribution{Parts: parts, Channel: c, Width: 2, RestoreSeq: 8})
		if err != nil {
			t.Fatal(err)
		}
		var s aggSnapshot
		if err := json.Unmarshal(b, &s); err != nil {
			t.Fatal(err)
		}
		got := s.State.Windows[4][9]
		if got == nil || got.Sum != want || got.Count != counts[c] {
			t.Fatalf("channel %d: key 9 in window 4 = %+v, want sum %d", c, got, want)
		}
		total += got.Sum
	}
	if total != 23 {
		t.Fatalf("sums add up to %d, want 23", total)
	}
}
