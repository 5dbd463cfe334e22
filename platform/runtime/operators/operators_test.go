package operators

import (
	"context"
	"math"
	"reflect"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/runtime/wire"
)

// fakeOut is a test Emitter that records copies of what it is given.
type fakeOut struct{ got [][]wire.Tuple }

func (f *fakeOut) Emit(port int, t *wire.Tuple) {
	for len(f.got) <= port {
		f.got = append(f.got, nil)
	}
	f.got[port] = append(f.got[port], *t)
}

func (f *fakeOut) port(p int) []wire.Tuple {
	if p < len(f.got) {
		return f.got[p]
	}
	return nil
}

func i64(v int64) *int64 { return &v }
func i32(v int32) *int32 { return &v }

func TestSourceIsDeterministic(t *testing.T) {
	run := func(epoch uint32) []wire.Tuple {
		out := &fakeOut{}
		s := NewSource("src", &v1alpha1.OperatorParams{Count: i64(1000), Keys: i64(7), TupleSize: i32(5)}, Env{Out: out, Epoch: epoch})
		if err := s.Run(context.Background(), func(f func()) bool { f(); return true }, func() {}); err != nil {
			t.Fatal(err)
		}
		return out.port(0)
	}
	a, b := run(1), run(2)
	if len(a) != 1000 {
		t.Fatalf("emitted %d tuples, want 1000", len(a))
	}
	for i := range a {
		if a[i].Seq != uint64(i) || a[i].Key >= 7 || len(a[i].Payload) != 5 || a[i].Origin != OriginID("src") || a[i].Epoch != 1 {
			t.Fatalf("tuple %d = %+v", i, a[i])
		}
		if a[i].Key != b[i].Key || a[i].Value != b[i].Value || a[i].Seq != b[i].Seq || a[i].Event != b[i].Event ||
			a[i].Event != int64(i)*1000 {
			t.Fatalf("tuple %d differs between runs: %+v vs %+v", i, a[i], b[i])
		}
	}
}

func TestSourceRateAndCancel(t *testing.T) {
	out := &fakeOut{}
	s := NewSource("src", &v1alpha1.OperatorParams{Rate: i64(1000)}, Env{Out: out})
	ctx, cancel := context.WithCancel(context.Background())
	calls, flushes := 0, 0
	err := s.Run(ctx, func(f func()) bool {
		f()
		calls++
		if s.Seq() >= 50 {
			cancel()
		}
		return true
	}, func() { flushes++ })
	if err != context.Canceled {
		t.Fatalf("Run = %v, want canceled", err)
	}
	// At 1000/s the source emits a few tuples per step, not one big burst.
	if calls < 5 {
		t.Fatalf("50 tuples at 1000/s came in %d steps", calls)
	}
	// A paced source flushes before it waits (it must wait: 50 tuples at
	// 1000/s take 49ms), and at most once per step.
	if flushes < 1 || flushes > calls {
		t.Fatalf("%d flushes for %d steps", flushes, calls)
	}
}

func TestFilterAccountsDropsAsSkips(t *testing.T) {
	out := &fakeOut{}
	f := NewFilter(30, out)
	tr := NewTracker(false)
	kept := 0
	for seq := uint64(0); seq < 10000; seq++ {
		tp := wire.Tuple{Origin: 9, Seq: seq}
		f.Process(0, &tp)
		if Keeps(30, 9, seq) {
			kept++
		}
	}
	got := out.port(0)
	if len(got) != kept || kept < 2500 || kept > 3500 {
		t.Fatalf("kept %d of 10000 (hash says %d), want about 3000", len(got), kept)
	}
	for i := range got {
		tr.Observe(&got[i])
	}
	o := tr.Origins()[0]
	if o.Missing != 0 || o.Duplicates != 0 {
		t.Fatalf("filtered stream looks lossy to a sink: %+v", o)
	}
	// The last tuple's trailing drops are owed but not yet forwarded.
	if o.Skipped+o.Tuples > 10000 || o.Skipped+o.Tuples < 9900 {
		t.Fatalf("skipped %d + tuples %d does not cover the input", o.Skipped, o.Tuples)
	}
}

func TestTrackerGapsDuplicatesRestarts(t *testing.T) {
	tr := NewTracker(false)
	// 3 and 4 are passed over; 5 comes twice; 3 comes late (reordered,
	// no longer missing) and then again (a duplicate).
	for _, s := range []uint64{0, 1, 2, 5, 5, 3, 3, 6} {
		tr.Observe(&wire.Tuple{Origin: 1, Epoch: 1, Seq: s})
	}
	tr.Observe(&wire.Tuple{Origin: 1, Epoch: 2, Seq: 0}) // restart
	tr.Observe(&wire.Tuple{Origin: 1, Epoch: 2, Seq: 1, Lost: 4})
	o := tr.Origins()[0]
	if o.Missing != 1 || o.Duplicates != 2 || o.Reordered != 1 || o.Restarts != 1 || o.UpstreamLost != 4 || o.Tuples != 8 {
		t.Fatalf("stats %+v", o)
	}
	if len(o.Holes) != 0 {
		t.Fatalf("holes %+v survive a restart", o.Holes)
	}
	join := NewTracker(true)
	if m := join.Observe(&wire.Tuple{Origin: 1, Seq: 500}); m != 0 {
		t.Fatalf("joining tracker reported %d missing for its first tuple", m)
	}
	if m := join.Observe(&wire.Tuple{Origin: 1, Seq: 503}); m != 2 {
		t.Fatalf("joining tracker missing = %d, want 2", m)
	}
}

func TestSplitBranchesLookComplete(t *testing.T) {
	for _, by := range []string{"key", "roundRobin"} {
		out := &fakeOut{}
		s := NewSplit(3, by, out)
		for seq := uint64(0); seq < 3000; seq++ {
			s.Process(0, &wire.Tuple{Origin: 1, Seq: seq, Key: seq * 7})
		}
		total := 0
		for p := 0; p < 3; p++ {
			tr := NewTracker(false)
			for i := range out.port(p) {
				tr.Observe(&out.port(p)[i])
			}
			total += len(out.port(p))
			if len(out.port(p)) == 0 {
				t.Fatalf("%s: port %d got nothing", by, p)
			}
			if o := tr.Origins()[0]; o.Missing != 0 || o.Duplicates != 0 {
				t.Fatalf("%s: port %d looks lossy: %+v", by, p, o)
			}
		}
		if total != 3000 {
			t.Fatalf("%s: %d tuples out of 3000", by, total)
		}
		if by == "key" {
			for i, tp := range out.port(1) {
				if Port(tp.Key, 3) != 1 {
					t.Fatalf("tuple %d with key %d on port 1", i, tp.Key)
				}
			}
		}
	}
}

// A diamond (split, two branches, union) delivers the tuples of one
// origin out of order but each once: the sink must count them as
// reordered, not duplicated, and see neither gaps nor skips at the end.
func TestTrackerDiamondReorderIsNotDuplication(t *testing.T) {
	for _, by := range []string{"key", "roundRobin"} {
		out := &fakeOut{}
		s := NewSplit(2, by, out)
		const n = 5000
		for seq := uint64(0); seq < n; seq++ {
			s.Process(0, &wire.Tuple{Origin: 1, Seq: seq, Key: seq * 7, Value: 1})
		}
		a, b := out.port(0), out.port(1)
		// The union interleaves the branches with one running behind.
		tr := NewTracker(false)
		var late int
		for i, j := 0, 0; i < len(a) || j < len(b); {
			if i < len(a) && (j >= len(b) || i%7 != 3) {
				late += b2i(tr.ObserveAll(&a[i]).Reordered)
				i++
				continue
			}
			late += b2i(tr.ObserveAll(&b[j]).Reordered)
			j++
		}
		o := tr.Origins()[0]
		if o.Duplicates != 0 || o.Missing != 0 || o.Skipped != 0 || o.Tuples != n || o.ValueSum != n {
			t.Fatalf("%s: diamond stats %+v", by, o)
		}
		if o.Reordered == 0 || int(o.Reordered) != late {
			t.Fatalf("%s: reordered %d, observations said %d", by, o.Reordered, late)
		}
		// Every sequence number again: all duplicates now.
		for seq := uint64(0); seq < n; seq++ {
			if !tr.ObserveAll(&wire.Tuple{Origin: 1, Seq: seq}).Duplicate {
				t.Fatalf("%s: second delivery of %d is not a duplicate", by, seq)
			}
		}
	}
}

// Holes are remembered in a bounded window; a tuple later than that cannot
// be told from a duplicate and counts as one. Filled holes and the window
// survive a snapshot and restore.
func TestTrackerHoleMemoryIsBoundedAndRestored(t *testing.T) {
	tr := NewTracker(false)
	tr.Observe(&wire.Tuple{Origin: 1, Seq: 0})
	tr.Observe(&wire.Tuple{Origin: 1, Seq: 10, Skip: 4}) // 1..5 missing, 6..9 owed
	o := tr.Origins()[0]
	if o.Missing != 5 || o.Skipped != 4 || len(o.Holes) != 2 {
		t.Fatalf("after the gap: %+v", o)
	}
	restored := NewTracker(false)
	restored.Restore(tr.Origins())
	for _, x := range []*Tracker{tr, restored} {
		if obs := x.ObserveAll(&wire.Tuple{Origin: 1, Seq: 3}); !obs.Reordered || !obs.Refound {
			t.Fatalf("late 3: %+v", obs)
		}
		if obs := x.ObserveAll(&wire.Tuple{Origin: 1, Seq: 7}); !obs.Reordered || obs.Refound {
			t.Fatalf("late owed 7: %+v", obs)
		}
		if obs := x.ObserveAll(&wire.Tuple{Origin: 1, Seq: 7}); !obs.Duplicate {
			t.Fatalf("7 again: %+v", obs)
		}
		if o := x.Origins()[0]; o.Missing != 4 || o.Skipped != 3 || o.Reordered != 2 || o.Duplicates != 1 ||
			!slices.Equal(o.Holes, []SeqRange{{1, 3, false}, {4, 6, false}, {6, 7, true}, {8, 10, true}}) {
			t.Fatalf("after the late tuples: %+v", o)
		}
	}
	// Far ahead: the old holes are forgotten, and a tuple from them is
	// counted as a duplicate, not as reordered.
	tr.Observe(&wire.Tuple{Origin: 1, Seq: 11 + HoleWindow})
	if o := tr.Origins()[0]; len(o.Holes) != 1 || o.Holes[0].From != 11 {
		t.Fatalf("holes after the window moved on: %+v", o.Holes)
	}
	if obs := tr.ObserveAll(&wire.Tuple{Origin: 1, Seq: 2}); !obs.Duplicate {
		t.Fatalf("a tuple older than the window: %+v", obs)
	}
	// Many holes: at most MaxHoles are kept.
	many := NewTracker(false)
	for i := uint64(0); i < 3*MaxHoles; i++ {
		many.Observe(&wire.Tuple{Origin: 1, Seq: 2 * i, Skip: 1})
	}
	if h := len(many.Origins()[0].Holes); h != MaxHoles {
		t.Fatalf("%d holes kept, want %d", h, MaxHoles)
	}
}

func TestMapAndUnionPassThrough(t *testing.T) {
	out := &fakeOut{}
	m := &Map{out: out, work: 100}
	u := &Union{out: out}
	m.Process(0, &wire.Tuple{Seq: 1, Value: 3})
	u.Process(1, &wire.Tuple{Seq: 2})
	if got := out.port(0); len(got) != 2 || got[0].Seq != 1 || got[0].Value != 3 || got[1].Seq != 2 {
		t.Fatalf("got %+v", got)
	}
	if m.acc == 0 {
		t.Fatal("map did no work")
	}
}

func aggTuple(seq uint64, key uint64, ms int64, v int64) *wire.Tuple {
	return &wire.Tuple{Origin: 1, Seq: seq, Key: key, Time: ms * 1e6, Event: ms * 1e6, Value: v}
}

func TestAggregateWindows(t *testing.T) {
	out := &fakeOut{}
	a, err := NewAggregate("agg", &v1alpha1.OperatorParams{WindowMillis: i64(100), Function: "sum"}, Env{Out: out, Epoch: 4})
	if err != nil {
		t.Fatal(err)
	}
	a.Process(0, aggTuple(0, 2, 10, 5))
	a.Process(0, aggTuple(1, 1, 20, 1))
	a.Process(0, aggTuple(2, 2, 90, 7))
	if len(out.port(0)) != 0 {
		t.Fatal("window emitted before it closed")
	}
	a.Process(0, aggTuple(5, 1, 150, 100)) // closes window 0; seqs 3,4 missing
	got := out.port(0)
	if len(got) != 2 || got[0].Key != 1 || got[0].Value != 1 || got[1].Key != 2 || got[1].Value != 12 {
		t.Fatalf("window 0 = %+v", got)
	}
	if got[0].Seq != 0 || got[1].Seq != 1 || got[0].Origin != OriginID("agg") || got[0].Epoch != 4 || got[1].Time != 90e6 || got[1].Event != 100e6-1 {
		t.Fatalf("output numbering %+v", got)
	}
	a.Process(0, aggTuple(6, 1, 50, 1000)) // late: goes to window 1
	if a.Late() != 1 {
		t.Fatalf("late = %d", a.Late())
	}
	a.Process(0, aggTuple(7, 3, 160, 1))
	// Snapshot, then restore into a fresh aggregate: it must finish the
	// same way the original does.
	snap, err := a.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	out2 := &fakeOut{}
	b, _ := NewAggregate("agg", &v1alpha1.OperatorParams{WindowMillis: i64(100), Function: "sum"}, Env{Out: out2, Epoch: 4})
	if err := b.Restore(snap); err != nil {
		t.Fatal(err)
	}
	a.Finish()
	b.Finish()
	w1 := out.port(0)[2:]
	if len(w1) != 2 || w1[0].Value != 1100 || w1[1].Value != 1 || w1[0].Seq != 2 {
		t.Fatalf("window 1 = %+v", w1)
	}
	// The missing seqs 3 and 4 were reported on window 0's first output.
	if out.port(0)[0].Lost != 2 || w1[0].Lost != 0 {
		t.Fatalf("lost = %d, %d", out.port(0)[0].Lost, w1[0].Lost)
	}
	if len(out2.port(0)) != 2 || !cmp.Equal(out2.port(0), w1) {
		t.Fatalf("restored aggregate emitted %+v, original %+v", out2.port(0), w1)
	}
	a.Tick(math.MaxInt64) // nothing open: no output
	if len(out.port(0)) != 4 {
		t.Fatal("tick emitted from an empty aggregate")
	}
}

func TestAggregateTickClosesQuietWindows(t *testing.T) {
	out := &fakeOut{}
	wall := int64(5e9)
	a, _ := NewAggregate("agg", &v1alpha1.OperatorParams{WindowMillis: i64(100)}, Env{Out: out, Now: func() int64 { return wall }})
	a.Tick(wall + 1e9) // nothing seen yet
	a.Process(0, aggTuple(0, 1, 10, 1))
	a.Process(0, aggTuple(1, 1, 20, 1)) // event clock 20ms at wall 5s
	a.Tick(wall + 170e6)                // event clock 190ms
	if len(out.port(0)) != 0 {
		t.Fatal("closed a window less than a window after its end")
	}
	a.Tick(wall + 180e6) // event clock 200ms: window 0 is a window behind
	if got := out.port(0); len(got) != 1 || got[0].Value != 2 {
		t.Fatalf("count window = %+v", got)
	}
}

func TestSinkSummary(t *testing.T) {
	s := NewSink("sink", Env{PE: "pe", Names: map[uint32]string{7: "src"}})
	s.Process(0, &wire.Tuple{Origin: 7, Seq: 0, Value: 2, Payload: []byte("xy")})
	s.ProcessBatch(0, []wire.Tuple{{Origin: 7, Seq: 1, Value: 2, Payload: []byte("xy")},
		{Origin: 7, Seq: 3, Value: 2, Payload: []byte("xy")}, {Origin: 7, Seq: 3, Value: 2, Payload: []byte("xy")}})
	s.Finish()
	sum := s.Summary()
	if !sum.Complete || sum.Tuples != 4 || sum.Gaps != 1 || sum.Duplicates != 1 || sum.Reordered != 0 || sum.ValueSum != 6 ||
		sum.Origins[0].Name != "src" || sum.Latency.Count != 4 || sum.Bytes != 4*(wire.TupleHeaderLen+2) {
		t.Fatalf("summary %+v", sum)
	}
}

func TestLatencyHistQuantiles(t *testing.T) {
	var h LatencyHist
	for v := int64(1); v <= 100000; v++ {
		h.Record(v * 10) // 10ns .. 1ms uniform
	}
	for _, c := range []struct{ q, want float64 }{{0.5, 500e3}, {0.99, 990e3}, {0.1, 100e3}} {
		got := h.Quantile(c.q)
		if math.Abs(got-c.want)/c.want > 0.04 {
			t.Fatalf("q%.2f = %.0f, want %.0f within 4%%", c.q, got, c.want)
		}
	}
	for i := 0; i < 1919; i++ {
		if histIndex(histLow(i)) != i || histIndex(histLow(i+1)-1) != i {
			t.Fatalf("bucket %d bounds inconsistent", i)
		}
	}
}

func TestNewByKind(t *testing.T) {
	for _, k := range []v1alpha1.OperatorKind{"source", "map", "filter", "aggregate", "split", "union", "sink"} {
		if _, err := New(&v1alpha1.Operator{Name: "x", Kind: k}, Env{Out: &fakeOut{}}); err != nil {
			t.Fatalf("%s: %v", k, err)
		}
	}
	if _, err := New(&v1alpha1.Operator{Name: "x", Kind: "join"}, Env{}); err == nil {
		t.Fatal("unknown kind accepted")
	}
	if _, err := New(&v1alpha1.Operator{Name: "x", Kind: "aggregate", Params: &v1alpha1.OperatorParams{Function: "median"}}, Env{}); err == nil {
		t.Fatal("unknown function accepted")
	}
}

func TestEventTime(t *testing.T) {
	for _, c := range []struct {
		seq  uint64
		per  int64
		want int64
	}{{0, 10, 0}, {1, 10, 1e8}, {25, 10, 25e8}, {3, 3, 1e9}, {1 << 40, 1000, (1 << 40) * 1e6}} {
		if got := EventTime(c.seq, c.per); got != c.want {
			t.Errorf("EventTime(%d, %d) = %d, want %d", c.seq, c.per, got, c.want)
		}
	}
}

// The source's incremental event clock agrees with EventTime.
func TestSourceEventClock(t *testing.T) {
	for _, rate := range []int64{1, 3, 7, 1000, 30000, 999983} {
		out := &fakeOut{}
		s := NewSource("src", &v1alpha1.OperatorParams{Rate: i64(rate)}, Env{Out: out})
		n := uint64(3*rate + 17)
		if n > 50000 {
			n = 50000
		}
		s.Emit(n, 0)
		for i, tp := range out.port(0) {
			if want := EventTime(uint64(i), rate); tp.Event != want {
				t.Fatalf("rate %d: tuple %d event %d, want %d", rate, i, tp.Event, want)
			}
		}
	}
}

func runAll(t *testing.T, s *Source) {
	t.Helper()
	if err := s.Run(context.Background(), func(f func()) bool { f(); return true }, func() {}); err != nil {
		t.Fatal(err)
	}
}

// A source restored from a snapshot replays exactly the tuples that
// followed the snapshot, event times included.
func TestSourceSnapshotReplays(t *testing.T) {
	p := &v1alpha1.OperatorParams{Count: i64(3000), Keys: i64(13), Rate: i64(0)}
	full := &fakeOut{}
	a := NewSource("src", p, Env{Out: full, Epoch: 1})
	runAll(t, a)

	out := &fakeOut{}
	b := NewSource("src", p, Env{Out: out, Epoch: 1})
	b.Emit(1234, 0)
	snap, err := b.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	b.Emit(500, 0) // progress that a reset rolls back
	c := NewSource("src", p, Env{Out: out, Epoch: 1})
	if err := c.Restore(snap); err != nil || c.Seq() != 1234 {
		t.Fatalf("restored at %d, %v", c.Seq(), err)
	}
	out.got = nil
	runAll(t, c)
	got, want := out.port(0), full.port(0)[1234:]
	if len(got) != len(want) || !c.Done() {
		t.Fatalf("replayed %d tuples, want %d", len(got), len(want))
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.Seq != w.Seq || g.Key != w.Key || g.Event != w.Event || g.Value != w.Value || g.Epoch != w.Epoch {
			t.Fatalf("replayed tuple %d = %+v, want %+v", i, g, w)
		}
	}
	if err := c.Restore([]byte("[")); err == nil {
		t.Fatal("corrupt snapshot accepted")
	}
}

// With checkpointEvery, steps end on its multiples; a paused step (do
// returns false) emits nothing.
func TestSourceStepsEndOnCheckpointBoundaries(t *testing.T) {
	out := &fakeOut{}
	s := NewSource("src", &v1alpha1.OperatorParams{Count: i64(1000), CheckpointEvery: i64(300)}, Env{Out: out})
	var ends []uint64
	paused := 0
	err := s.Run(context.Background(), func(f func()) bool {
		if paused < 2 && s.Seq() == 300 {
			paused++
			return false
		}
		f()
		ends = append(ends, s.Seq())
		return true
	}, func() {})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range []uint64{300, 600, 900, 1000} {
		if !slices.Contains(ends, b) {
			t.Fatalf("no step ended at %d: %v", b, ends)
		}
	}
	if len(out.port(0)) != 1000 || paused != 2 {
		t.Fatalf("%d tuples, %d pauses", len(out.port(0)), paused)
	}
}

func TestSplitAndFilterSnapshots(t *testing.T) {
	out := &fakeOut{}
	sp := NewSplit(3, "roundRobin", out)
	for i := uint64(0); i < 4; i++ {
		sp.Process(0, &wire.Tuple{Origin: 1, Seq: i})
	}
	snap, err := sp.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	next := func(s *Split) (int, wire.Tuple) {
		o := &fakeOut{}
		s.out = o
		s.Process(0, &wire.Tuple{Origin: 1, Seq: 4})
		for p := 0; p < 3; p++ {
			if ts := o.port(p); len(ts) == 1 {
				return p, ts[0]
			}
		}
		t.Fatal("split emitted nothing")
		return 0, wire.Tuple{}
	}
	wantPort, wantTuple := next(sp)
	again := NewSplit(3, "roundRobin", out)
	if err := again.Restore(snap); err != nil {
		t.Fatal(err)
	}
	if p, tp := next(again); p != wantPort || tp.Skip != wantTuple.Skip || wantTuple.Skip == 0 {
		t.Fatalf("restored split sent seq 4 to port %d skip %d, original to %d skip %d", p, tp.Skip, wantPort, wantTuple.Skip)
	}
	// Another port count (a parallel region's width changed): the cursor
	// wraps and no port owes a skip (the channels behind rebuilt their
	// trackers); a damaged snapshot is still refused.
	narrow := NewSplit(2, "roundRobin", out)
	if err := narrow.Restore(snap); err != nil {
		t.Fatal(err)
	}
	if o := (&fakeOut{}); true {
		narrow.out = o
		narrow.Process(0, &wire.Tuple{Origin: 1, Seq: 4})
		if ts := o.port(4 % 3 % 2); len(ts) != 1 || ts[0].Skip != 0 {
			t.Fatalf("3-port snapshot in a 2-port split: port %d got %+v, want seq 4 without skip", 4%3%2, ts)
		}
	}
	if err := NewSplit(2, "roundRobin", out).Restore([]byte(`{"next":3,"owe":[[],[]]}`)); err == nil {
		t.Fatal("a snapshot whose cursor is past its ports was restored")
	}

	f := NewFilter(0, out)
	f.Process(0, &wire.Tuple{Origin: 1, Seq: 0})
	f.Process(0, &wire.Tuple{Origin: 1, Seq: 1, Lost: 2})
	fs, _ := f.Snapshot()
	g := NewFilter(100, &fakeOut{})
	if err := g.Restore(fs); err != nil {
		t.Fatal(err)
	}
	o := &fakeOut{}
	g.out = o
	g.Process(0, &wire.Tuple{Origin: 1, Seq: 2})
	if tp := o.port(0)[0]; tp.Skip != 2 || tp.Lost != 2 {
		t.Fatalf("restored filter forwarded %+v, want skip 2 lost 2", tp)
	}
}

// The sink's digest does not depend on arrival order, and a restored sink
// reports exactly what it had at the snapshot.
func TestSinkDigestAndSnapshot(t *testing.T) {
	ts := []wire.Tuple{{Origin: 1, Seq: 0, Key: 3, Event: 10, Value: 4}, {Origin: 1, Seq: 1, Key: 5, Event: 11, Value: 6},
		{Origin: 2, Seq: 0, Key: 3, Event: 10, Value: 4}}
	a, b := NewSink("k", Env{}), NewSink("k", Env{})
	a.ProcessBatch(0, ts)
	b.ProcessBatch(0, []wire.Tuple{ts[2], ts[0]})
	b.ProcessBatch(0, ts[1:2])
	if a.Summary().Digest != b.Summary().Digest || a.Summary().Digest == 0 {
		t.Fatalf("digests %x %x", a.Summary().Digest, b.Summary().Digest)
	}
	one := NewSink("k", Env{})
	one.ProcessBatch(0, ts[:2])
	if one.Summary().Digest == a.Summary().Digest {
		t.Fatal("digest does not see a missing tuple")
	}
	snap, err := one.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	before := one.Summary()
	one.ProcessBatch(0, ts) // two duplicates and a new origin
	one.Finish()
	if one.Summary().Duplicates != 2 {
		t.Fatalf("%+v", one.Summary())
	}
	if err := one.Restore(snap); err != nil {
		t.Fatal(err)
	}
	after := one.Summary()
	after.Latency, before.Latency = LatencySummary{}, LatencySummary{}
	if !reflect.DeepEqual(after, before) {
		t.Fatalf("restored summary\n%+v\nwant\n%+v", after, before)
	}
}
