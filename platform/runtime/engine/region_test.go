package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/app"
	"sluice.dev/sluice/platform/checkpoint"
	"sluice.dev/sluice/platform/region"
	"sluice.dev/sluice/platform/runtime/operators"
	"sluice.dev/sluice/platform/runtime/regionctl"
	"sluice.dev/sluice/platform/runtime/wire"
)

// The real store satisfies the engine's interface.
var _ CheckpointStore = checkpoint.Store(nil)

// fakeStore is a test double of the checkpoint store: a map in memory.
// Puts of a PE listed in block wait until its channel is closed.
type fakeStore struct {
	mu     sync.Mutex
	m      map[checkpoint.Key][]byte
	block  map[string]chan struct{}
	pruned map[string]uint64
}

func newFakeStore() *fakeStore {
	return &fakeStore{m: map[checkpoint.Key][]byte{}, block: map[string]chan struct{}{}, pruned: map[string]uint64{}}
}

func (s *fakeStore) Put(ctx context.Context, k checkpoint.Key, b []byte) error {
	s.mu.Lock()
	ch := s.block[k.PE]
	s.mu.Unlock()
	if ch != nil {
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[k] = bytes.Clone(b)
	return nil
}

func (s *fakeStore) Get(_ context.Context, k checkpoint.Key) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.m[k]
	if !ok {
		return nil, fmt.Errorf("%v: %w", k, checkpoint.ErrNotFound)
	}
	return bytes.Clone(b), nil
}

func (s *fakeStore) Prune(_ context.Context, ns, job, region, pe string, below uint64) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for k := range s.m {
		if k.Namespace == ns && k.Job == job && k.Region == region && k.PE == pe && k.Seq < below {
			delete(s.m, k)
			n++
		}
	}
	s.pruned[pe] = max(s.pruned[pe], below)
	return n, nil
}

// seqs lists the checkpoints stored for a PE.
func (s *fakeStore) seqs(pe string) []uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []uint64
	for k := range s.m {
		if k.PE == pe {
			out = append(out, k.Seq)
		}
	}
	slices.Sort(out)
	return out
}

// state returns one operator's snapshot in checkpoint seq of pe.
func (s *fakeStore) state(t *testing.T, pe, op string, seq uint64) []byte {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, b := range s.m {
		if k.PE == pe && k.Seq == seq {
			states, err := DecodeCheckpoint(b)
			if err != nil {
				t.Fatal(err)
			}
			return states[op]
		}
	}
	t.Fatalf("no checkpoint %d of %s", seq, pe)
	return nil
}

// fakeControl is a test double of regionctl.Control: the test sends
// commands as the coordinator would, and reads back the reports.
type fakeControl struct {
	cmds    chan regionctl.Command
	mu      sync.Mutex
	closed  bool
	reports []v1alpha1.RegionProgress
}

func newFakeControl() *fakeControl { return &fakeControl{cmds: make(chan regionctl.Command, 1)} }

func (f *fakeControl) Commands() <-chan regionctl.Command { return f.cmds }

func (f *fakeControl) Report(_ context.Context, p v1alpha1.RegionProgress) error {
	f.mu.Lock()
	f.reports = append(f.reports, p)
	f.mu.Unlock()
	return nil
}

func (f *fakeControl) Run(ctx context.Context) error {
	<-ctx.Done()
	f.mu.Lock()
	f.closed = true
	close(f.cmds)
	f.mu.Unlock()
	return nil
}

// send delivers c, replacing a command not yet read (only the latest
// matters).
func (f *fakeControl) send(c regionctl.Command) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return
	}
	for {
		select {
		case f.cmds <- c:
			return
		default:
			select {
			case <-f.cmds:
			default:
			}
		}
	}
}

func (f *fakeControl) all() []v1alpha1.RegionProgress {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.reports)
}

func (f *fakeControl) last() *v1alpha1.RegionProgress {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.reports) == 0 {
		return nil
	}
	p := f.reports[len(f.reports)-1]
	return &p
}

// member is one PE of the harness: its current engine (nil while dead).
type member struct {
	eng       *Engine
	ctrl      *fakeControl
	completes atomic.Int32
}

// harness runs the PEs of a one-region plan in this process over loopback
// TCP and plays the region coordinator with region.Next on a virtual
// clock: drains start only when the test advances the clock, and nothing
// times out.
type harness struct {
	t       *testing.T
	plan    *app.Plan
	bases   map[string]int
	store   *fakeStore
	spec    v1alpha1.ConsistentRegionSpec
	st      v1alpha1.ConsistentRegionStatus
	now     time.Time
	pes     map[string]*member
	down    map[string]bool // PEs observed as disconnected in the next step
	sinkIdx int             // index in plan.PEs of the PE whose sink is checked
	// want is the sink's result in a run without failures.
	want operators.Summary
}

func regionJob(src, agg *v1alpha1.OperatorParams, trigger v1alpha1.RegionTrigger) *v1alpha1.JobSpec {
	spec := chain(
		v1alpha1.Operator{Name: "src", Kind: "source", Params: src},
		v1alpha1.Operator{Name: "agg", Kind: "aggregate", Params: agg},
		v1alpha1.Operator{Name: "sink", Kind: "sink"})
	spec.Application.ConsistentRegions = []v1alpha1.ConsistentRegionDef{{Name: "main", Operators: []string{"src", "agg", "sink"},
		Trigger: trigger}}
	spec.CheckpointStore = &v1alpha1.CheckpointStore{Type: v1alpha1.StoreFilesystem, Path: "/unused"}
	return spec
}

// newHarness plans source -> aggregate -> sink, one PE each.
func newHarness(t *testing.T, src, agg *v1alpha1.OperatorParams, trigger v1alpha1.RegionTrigger) *harness {
	t.Helper()
	want := failureFree(t, src, agg)
	if want.ValueSum != *src.Count/10*55 {
		t.Fatalf("failure-free value sum %d", want.ValueSum)
	}
	h := newHarnessFor(t, regionJob(src, agg, trigger), 2, want)
	if len(h.plan.PEs) != 3 {
		t.Fatalf("plan has %d PEs", len(h.plan.PEs))
	}
	return h
}

func newHarnessFor(t *testing.T, job *v1alpha1.JobSpec, sinkIdx int, want operators.Summary) *harness {
	t.Helper()
	plan, errs := app.Build("test", "job", job)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if len(plan.Regions) != 1 {
		t.Fatalf("plan has %d regions", len(plan.Regions))
	}
	h := &harness{t: t, plan: plan, bases: map[string]int{}, store: newFakeStore(), spec: plan.Regions[0].Spec,
		now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), pes: map[string]*member{}, down: map[string]bool{},
		sinkIdx: sinkIdx, want: want}
	h.spec.Period = metav1.Duration{Duration: time.Second}
	h.spec.DrainTimeout = metav1.Duration{Duration: time.Hour}
	h.spec.ResetTimeout = metav1.Duration{Duration: time.Hour}
	h.spec.MaxConsecutiveResets = 5
	for _, pe := range plan.PEs {
		h.bases[pe.Name] = freePort(t)
	}
	t.Cleanup(func() {
		for _, m := range h.pes {
			if m.eng != nil {
				m.eng.Kill()
			}
		}
	})
	return h
}

// start runs a fresh engine for PE i (a new process for that PE) and
// sends it the region's current command.
func (h *harness) start(i int) *member {
	m := h.launch(i)
	if h.st.State != "" {
		m.ctrl.send(regionctl.FromStatus(&h.st))
	}
	return m
}

// launch runs a fresh engine for PE i without telling it anything yet.
func (h *harness) launch(i int) *member {
	h.t.Helper()
	pe := &h.plan.PEs[i]
	resolve := func(pe string, port int32) string {
		return net.JoinHostPort("127.0.0.1", strconv.Itoa(h.bases[pe]+int(port)))
	}
	m := &member{ctrl: newFakeControl()}
	e, err := New(Options{PE: &pe.Config, Ports: &h.plan.PortTable, ListenHost: "127.0.0.1", ListenBase: h.bases[pe.Name],
		Resolve: resolve, Epoch: uint32(1000 + i), Log: quiet, Region: m.ctrl, Store: h.store,
		OnComplete: func() { m.completes.Add(1) }})
	if err != nil {
		h.t.Fatal(err)
	}
	if err := e.Start(context.Background()); err != nil {
		h.t.Fatal(err)
	}
	m.eng = e
	h.pes[pe.Name] = m
	return m
}

func (h *harness) startAll() {
	for i := len(h.plan.PEs) - 1; i >= 0; i-- { // sinks first
		h.start(i)
	}
}

func (h *harness) kill(pe string) {
	m := h.pes[pe]
	m.eng.Kill()
	m.eng = nil
}

// step runs the coordinator once and sends a changed command to every PE.
func (h *harness) step() {
	obs := region.Observation{Spec: h.spec, Status: h.st, Now: h.now}
	for _, name := range h.spec.PEs {
		m := h.pes[name]
		pe := region.PE{Name: name}
		if m != nil && m.eng != nil && !h.down[name] {
			pe.Connected, _ = m.eng.Ready()
			pe.Progress = m.ctrl.last()
		}
		obs.PEs = append(obs.PEs, pe)
	}
	clear(h.down)
	d := region.Next(obs)
	if !d.Changed {
		return
	}
	h.st = d.Status
	cmd := regionctl.FromStatus(&h.st)
	for _, m := range h.pes {
		m.ctrl.send(cmd)
	}
}

// until steps the coordinator until cond holds.
func (h *harness) until(what string, cond func() bool) {
	h.t.Helper()
	for end := time.Now().Add(60 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		h.step()
		if cond() {
			return
		}
	}
	h.t.Fatalf("timed out waiting for %s; region %s epoch %d completed %d; sink %+v", what, h.st.State, h.st.Epoch,
		h.st.LastCompletedSeq, h.sink())
}

// wait polls cond without stepping the coordinator.
func (h *harness) wait(what string, cond func() bool) {
	h.t.Helper()
	for end := time.Now().Add(60 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	h.t.Fatalf("timed out waiting for %s", what)
}

func (h *harness) healthy(epoch, completed int64) func() bool {
	return func() bool {
		return h.st.State == v1alpha1.RegionHealthy && h.st.Epoch == epoch && h.st.LastCompletedSeq == completed
	}
}

func (h *harness) sinkPE() string { return h.plan.PEs[h.sinkIdx].Name }

func (h *harness) sink() operators.Summary {
	m := h.pes[h.sinkPE()]
	if m == nil || m.eng == nil {
		return operators.Summary{}
	}
	return m.eng.Summaries()[0]
}

// checkpoint takes the next checkpoint and waits until it is complete.
func (h *harness) checkpoint() int64 {
	h.t.Helper()
	want := max(h.st.CurrentSeq, h.st.LastCompletedSeq) + 1
	h.now = h.now.Add(h.spec.Period.Duration)
	h.until(fmt.Sprintf("checkpoint %d", want), h.healthy(h.st.Epoch, want))
	return want
}

// reset makes the coordinator see one PE disconnected, so that it resets
// the region, and waits until every PE has applied the new epoch (without
// letting the region become Healthy, so sources are still paused).
func (h *harness) reset(pe string) int64 {
	h.t.Helper()
	before := h.st.Epoch
	h.down[pe] = true
	h.step()
	if h.st.State != v1alpha1.RegionResetting || h.st.Epoch != before+1 {
		h.t.Fatalf("no reset: %s epoch %d", h.st.State, h.st.Epoch)
	}
	h.wait("every PE at the new epoch", func() bool {
		for _, m := range h.pes {
			if p := m.ctrl.last(); p == nil || p.Epoch != h.st.Epoch {
				return false
			}
		}
		return true
	})
	return h.st.Epoch
}

// finish drives the region until the sink has completed.
func (h *harness) finish() operators.Summary {
	h.t.Helper()
	h.until("sink complete", func() bool { return h.st.State == v1alpha1.RegionHealthy && h.sink().Complete })
	return h.sink()
}

// emitTo feeds an operator directly.
type emitTo struct{ op operators.Operator }

func (e emitTo) Emit(_ int, t *wire.Tuple) { e.op.Process(0, t) }

// failureFree runs the same operators in one goroutine with nothing in
// between: the result every run of the region must end with.
func failureFree(t *testing.T, src, agg *v1alpha1.OperatorParams) operators.Summary {
	t.Helper()
	sink := operators.NewSink("sink", operators.Env{})
	a, err := operators.NewAggregate("agg", agg, operators.Env{Out: emitTo{sink}, Epoch: RegionTupleEpoch})
	if err != nil {
		t.Fatal(err)
	}
	s := operators.NewSource("src", src, operators.Env{Out: emitTo{a}, Epoch: RegionTupleEpoch})
	s.Emit(uint64(*src.Count), 0)
	a.Finish()
	sink.Finish()
	return sink.Summary()
}

// result is what must match between runs: everything but timing.
func result(s operators.Summary) operators.Summary {
	s.PE, s.FirstNanos, s.LastNanos, s.Latency = "", 0, 0, operators.LatencySummary{}
	s.Origins = slices.Clone(s.Origins)
	for i := range s.Origins {
		s.Origins[i].Name = ""
	}
	return s
}

func (h *harness) checkExactlyOnce(got operators.Summary) {
	h.t.Helper()
	if d := cmp.Diff(result(h.want), result(got)); d != "" {
		h.t.Fatalf("sink result differs from the failure-free run (-want +got):\n%s", d)
	}
	if got.Gaps != 0 || got.Duplicates != 0 || got.Restarts != 0 || !got.Complete || got.Tuples == 0 {
		h.t.Fatalf("sink %+v", got)
	}
}

// sinkAt decodes the sink's state in checkpoint seq.
func (h *harness) sinkAt(seq int64) sinkState {
	var s sinkState
	if err := json.Unmarshal(h.store.state(h.t, h.sinkPE(), "sink", uint64(seq)), &s); err != nil {
		h.t.Fatal(err)
	}
	return s
}

type sinkState struct {
	Tuples   uint64 `json:"tuples"`
	Digest   uint64 `json:"digest"`
	Complete bool   `json:"complete"`
}

func params() (src, agg *v1alpha1.OperatorParams) {
	return &v1alpha1.OperatorParams{Count: i64(12000), Rate: i64(10000), Keys: i64(7)},
		&v1alpha1.OperatorParams{WindowMillis: i64(10), Function: "sum"}
}

// A checkpoint is written by every PE and reported; a reset after it
// rolls the sink back to the checkpoint, the sources replay, and the final
// result is the failure-free one.
func TestRegionCheckpointAndResetExactlyOnce(t *testing.T) {
	src, agg := params()
	h := newHarness(t, src, agg, v1alpha1.TriggerPeriodic)
	h.startAll()
	for _, m := range h.pes {
		h.wait("first report", func() bool { p := m.ctrl.last(); return p != nil && p.Epoch == 0 && p.Region == "main" })
	}
	h.until("healthy at epoch 1", h.healthy(1, 0))
	h.until("sink receiving", func() bool { return h.sink().Tuples > 30 })
	seq := h.checkpoint()
	for _, name := range h.spec.PEs {
		p := h.pes[name].ctrl.last()
		if got := h.store.seqs(name); !slices.Equal(got, []uint64{1}) || p.Checkpointed != 1 || p.Bytes == 0 || p.Epoch != 1 {
			t.Fatalf("%s: checkpoints %v, progress %+v", name, got, p)
		}
	}
	ck := h.sinkAt(seq)
	var srcAt struct{ Seq uint64 }
	json.Unmarshal(h.store.state(t, h.plan.PEs[0].Name, "src", 1), &srcAt)
	if srcAt.Seq == 0 || srcAt.Seq >= 12000 || ck.Tuples == 0 {
		t.Fatalf("checkpoint 1: source at %d, sink %+v", srcAt.Seq, ck)
	}
	h.until("tuples after the checkpoint", func() bool { return h.sink().Tuples > ck.Tuples+20 })

	epoch := h.reset(h.plan.PEs[1].Name)
	got := h.sink()
	if got.Tuples != ck.Tuples || got.Digest != ck.Digest || got.Complete {
		t.Fatalf("after reset to checkpoint 1 the sink has %d tuples (digest %x), the checkpoint %d (%x)",
			got.Tuples, got.Digest, ck.Tuples, ck.Digest)
	}
	for name, m := range h.pes {
		if p := m.ctrl.last(); p.Checkpointed != 1 || m.eng.Epoch() != uint64(epoch) {
			t.Fatalf("%s after reset: %+v", name, p)
		}
	}
	h.checkExactlyOnce(h.finish())
	if h.st.Resets != 1 {
		t.Fatalf("%d resets", h.st.Resets)
	}
	// A later checkpoint prunes the earlier one.
	h.checkpoint()
	h.until("pruned", func() bool { return slices.Equal(h.store.seqs(h.sinkPE()), []uint64{2}) })
}

// A reset while a drain is in progress (the sink PE has not written its
// checkpoint) restores the last complete checkpoint, here the initial
// state; the abandoned checkpoint's sequence id is never used again.
func TestRegionResetDuringDrain(t *testing.T) {
	src, agg := params()
	h := newHarness(t, src, agg, v1alpha1.TriggerPeriodic)
	h.startAll()
	h.until("healthy", h.healthy(1, 0))
	h.until("sink receiving", func() bool { return h.sink().Tuples > 30 })
	release := make(chan struct{})
	h.store.mu.Lock()
	h.store.block[h.sinkPE()] = release
	h.store.mu.Unlock()
	h.now = h.now.Add(h.spec.Period.Duration)
	h.until("source and aggregate checkpointed", func() bool {
		a, b := h.pes[h.plan.PEs[0].Name].ctrl.last(), h.pes[h.plan.PEs[1].Name].ctrl.last()
		return h.st.State == v1alpha1.RegionDraining && a.Checkpointed == 1 && b.Checkpointed == 1
	})
	if h.st.State != v1alpha1.RegionDraining {
		t.Fatalf("region %s while the sink's checkpoint is blocked", h.st.State)
	}
	h.reset(h.plan.PEs[0].Name)
	if h.st.RestoreSeq != 0 {
		t.Fatalf("restore seq %d", h.st.RestoreSeq)
	}
	if s := h.sink(); s.Tuples != 0 || s.Digest != 0 {
		t.Fatalf("sink not back at its initial state: %+v", s)
	}
	close(release)
	h.until("healthy at epoch 2", h.healthy(2, 0))
	if seq := h.checkpoint(); seq != 2 {
		t.Fatalf("checkpoint after the abandoned one is %d", seq)
	}
	h.checkExactlyOnce(h.finish())
}

// A PE process that dies is replaced by a fresh one, which reports epoch
// 0 until the region resets; the result is still exactly once, whichever
// PE it was.
func TestRegionKilledPERecovers(t *testing.T) {
	for i, what := range []string{"source", "aggregate", "sink"} {
		t.Run(what, func(t *testing.T) {
			src, agg := params()
			h := newHarness(t, src, agg, v1alpha1.TriggerPeriodic)
			h.startAll()
			h.until("healthy", h.healthy(1, 0))
			h.until("sink receiving", func() bool { return h.sink().Tuples > 30 })
			h.checkpoint()
			ck := h.sinkAt(1)
			h.until("tuples after the checkpoint", func() bool { return h.sink().Tuples > ck.Tuples+20 })

			h.kill(h.plan.PEs[i].Name)
			h.until("reset after the kill", func() bool { return h.st.State == v1alpha1.RegionResetting && h.st.Epoch == 2 })
			m := h.launch(i)
			h.wait("fresh process reports", func() bool { return m.ctrl.last() != nil })
			time.Sleep(50 * time.Millisecond)
			if rs := m.ctrl.all(); len(rs) != 1 || rs[0].Epoch != 0 || rs[0].Checkpointed != 0 || m.eng.Epoch() != 0 {
				t.Fatalf("fresh process reported %+v before any command", rs)
			}
			m.ctrl.send(regionctl.FromStatus(&h.st))
			// The fresh process applies epoch 2, or a later one if the
			// coordinator saw it out of sync first; either way the region
			// recovers from checkpoint 1.
			h.until("healthy again", func() bool { return h.st.State == v1alpha1.RegionHealthy && h.st.Epoch >= 2 })
			if h.st.LastCompletedSeq != 1 {
				t.Fatalf("completed %d", h.st.LastCompletedSeq)
			}
			h.checkExactlyOnce(h.finish())
		})
	}
}

// Fan-in across PEs: an operator snapshots only when the marker has come
// on each of its input streams. Two sources into a union, a filter (whose
// owed skips are state), a sink: after a reset each origin is complete,
// without gaps or duplicates.
func TestRegionFanIn(t *testing.T) {
	const n = 6000
	ep := func(op string, port int32) v1alpha1.Endpoint { return v1alpha1.Endpoint{Operator: op, Port: port} }
	srcA := &v1alpha1.OperatorParams{Count: i64(n), Rate: i64(8000), Keys: i64(5)}
	srcB := &v1alpha1.OperatorParams{Count: i64(n), Rate: i64(6000), Keys: i64(9)}
	job := &v1alpha1.JobSpec{Application: v1alpha1.Application{
		Operators: []v1alpha1.Operator{
			{Name: "a", Kind: "source", Params: srcA},
			{Name: "b", Kind: "source", Params: srcB},
			{Name: "u", Kind: "union"},
			{Name: "f", Kind: "filter", Params: &v1alpha1.OperatorParams{KeepPercent: i32(30)}},
			{Name: "sink", Kind: "sink"},
		},
		Streams: []v1alpha1.Stream{
			{From: ep("a", 0), To: ep("u", 0)}, {From: ep("b", 0), To: ep("u", 1)},
			{From: ep("u", 0), To: ep("f", 0)}, {From: ep("f", 0), To: ep("sink", 0)},
		},
		ConsistentRegions: []v1alpha1.ConsistentRegionDef{{Name: "main", Operators: []string{"a", "b", "u", "f", "sink"}}},
	}, CheckpointStore: &v1alpha1.CheckpointStore{Type: v1alpha1.StoreFilesystem, Path: "/unused"}}
	// Failure-free: each source through the filter into the sink.
	sink := operators.NewSink("sink", operators.Env{})
	f := operators.NewFilter(30, emitTo{sink})
	for _, s := range []*operators.Source{
		operators.NewSource("a", srcA, operators.Env{Out: emitTo{f}, Epoch: RegionTupleEpoch}),
		operators.NewSource("b", srcB, operators.Env{Out: emitTo{f}, Epoch: RegionTupleEpoch}),
	} {
		s.Emit(n, 0)
	}
	sink.Finish()
	want := sink.Summary()
	// Origins are listed in arrival order, which interleaving decides.
	sortOrigins := func(s operators.Summary) operators.Summary {
		s.Origins = slices.Clone(s.Origins)
		slices.SortFunc(s.Origins, func(x, y operators.OriginStats) int {
			if x.ID < y.ID {
				return -1
			}
			if x.ID > y.ID {
				return 1
			}
			return 0
		})
		return s
	}
	sinkIdx := -1
	h := newHarnessFor(t, job, 0, sortOrigins(want))
	for i, pe := range h.plan.PEs {
		if pe.Config.Operators[0].Name == "sink" {
			sinkIdx = i
		}
		if pe.Config.Operators[0].Name == "u" && len(pe.Config.Inputs) != 2 {
			t.Fatalf("union PE has %d inputs", len(pe.Config.Inputs))
		}
	}
	h.sinkIdx = sinkIdx
	h.startAll()
	h.until("healthy", h.healthy(1, 0))
	h.until("sink receiving", func() bool { return h.sink().Tuples > 100 })
	h.checkpoint()
	ck := h.sinkAt(1)
	h.until("tuples after the checkpoint", func() bool { return h.sink().Tuples > ck.Tuples+50 })
	h.reset(h.sinkPE())
	if s := h.sink(); s.Tuples != ck.Tuples || s.Digest != ck.Digest {
		t.Fatalf("sink after reset %+v, checkpoint %+v", s, ck)
	}
	got := sortOrigins(h.finish())
	if len(got.Origins) != 2 || got.Skipped == 0 {
		t.Fatalf("sink %+v", got)
	}
	h.checkExactlyOnce(got)
}

// The source finishes and the sink completes; a reset to a checkpoint
// taken before that un-finishes every PE and the replay completes again
// with the same result. A checkpoint taken after the end restores a
// finished region.
func TestRegionResetAfterFinish(t *testing.T) {
	src, agg := params()
	h := newHarness(t, src, agg, v1alpha1.TriggerPeriodic)
	h.startAll()
	h.until("healthy", h.healthy(1, 0))
	h.until("sink receiving", func() bool { return h.sink().Tuples > 30 })
	h.checkpoint()
	first := h.finish()
	h.checkExactlyOnce(first)
	sinkM := h.pes[h.sinkPE()]
	h.wait("OnComplete", func() bool { return sinkM.completes.Load() == 1 })

	h.reset(h.sinkPE())
	if s := h.sink(); s.Complete || s.Tuples != h.sinkAt(1).Tuples {
		t.Fatalf("after reset to checkpoint 1: %+v", s)
	}
	again := h.finish()
	h.checkExactlyOnce(again)
	h.wait("OnComplete again", func() bool { return sinkM.completes.Load() == 2 })

	// Checkpoint the finished region, then reset to it.
	seq := h.checkpoint()
	if ck := h.sinkAt(seq); !ck.Complete || ck.Digest != again.Digest {
		t.Fatalf("checkpoint %d of the finished sink: %+v", seq, ck)
	}
	var srcAt struct{ Seq uint64 }
	json.Unmarshal(h.store.state(t, h.plan.PEs[0].Name, "src", uint64(seq)), &srcAt)
	if srcAt.Seq != 12000 {
		t.Fatalf("source position in checkpoint %d: %d", seq, srcAt.Seq)
	}
	h.reset(h.plan.PEs[0].Name)
	h.checkExactlyOnce(h.finish())
	h.wait("OnComplete a third time", func() bool { return sinkM.completes.Load() == 3 })
}

// Operator-driven trigger: the source asks for a checkpoint every
// checkpointEvery tuples and waits for it, so checkpoints fall exactly on
// those positions.
func TestRegionOperatorDriven(t *testing.T) {
	src, agg := params()
	src.CheckpointEvery = i64(3000)
	h := newHarness(t, src, agg, v1alpha1.TriggerOperatorDriven)
	h.startAll()
	h.until("healthy", h.healthy(1, 0))
	h.until("checkpoint 2", func() bool { return h.st.LastCompletedSeq >= 2 })
	srcPE := h.plan.PEs[0].Name
	for _, seq := range h.store.seqs(srcPE) {
		var at struct{ Seq uint64 }
		json.Unmarshal(h.store.state(t, srcPE, "src", seq), &at)
		if at.Seq != 3000*seq {
			t.Fatalf("checkpoint %d: source at %d, want %d", seq, at.Seq, 3000*seq)
		}
	}
	h.reset(h.sinkPE())
	h.checkExactlyOnce(h.finish())
	if h.st.LastCompletedSeq < 3 {
		t.Fatalf("only %d checkpoints", h.st.LastCompletedSeq)
	}
}

func TestCheckpointContainer(t *testing.T) {
	in := map[string][]byte{"agg": []byte(`{"a":1}`), "sink": {}, "src": []byte("x")}
	b := EncodeCheckpoint(in)
	out, err := DecodeCheckpoint(b)
	if err != nil || len(out) != 3 || string(out["agg"]) != `{"a":1}` || len(out["sink"]) != 0 || string(out["src"]) != "x" {
		t.Fatalf("%v %v", out, err)
	}
	if !bytes.Equal(EncodeCheckpoint(out), b) {
		t.Fatal("encoding is not canonical")
	}
	for i := 0; i < len(b); i++ {
		if _, err := DecodeCheckpoint(b[:i]); err == nil {
			t.Fatalf("truncated to %d bytes accepted", i)
		}
	}
	bad := bytes.Clone(b)
	bad[4] = 9
	if _, err := DecodeCheckpoint(bad); err == nil {
		t.Fatal("unknown version accepted")
	}
	if _, err := DecodeCheckpoint(append(bytes.Clone(b), 0)); err == nil {
		t.Fatal("trailing byte accepted")
	}
	huge := bytes.Clone(b[:9])
	huge[5], huge[6], huge[7], huge[8] = 0xff, 0xff, 0xff, 0xff
	if _, err := DecodeCheckpoint(huge); err == nil {
		t.Fatal("hostile count accepted")
	}
}

// Inside a region the engine needs the PE's region and a store.
func TestRegionOptionsChecked(t *testing.T) {
	src, agg := params()
	plan, _ := app.Build("test", "job", regionJob(src, agg, v1alpha1.TriggerPeriodic))
	if _, err := New(Options{PE: &plan.PEs[0].Config, Ports: &plan.PortTable, Region: newFakeControl()}); err == nil {
		t.Fatal("region without a store accepted")
	}
	plain, _ := app.Build("test", "job", chain(v1alpha1.Operator{Name: "src", Kind: "source"}, v1alpha1.Operator{Name: "sink", Kind: "sink"}))
	if _, err := New(Options{PE: &plain.PEs[0].Config, Ports: &plain.PortTable, Region: newFakeControl(), Store: newFakeStore()}); err == nil {
		t.Fatal("region control for a PE outside any region accepted")
	}
}

// A PE of several operators (a source with the split of a parallel region
// fused into its PE, a union with the sink) writes one checkpoint holding
// every operator's state: the checkpoint completes inside the markers
// forwarded in-process, and must not be written again, empty, on the way
// out. A channel PE's checkpoint also says its channel and width.
func TestRegionFusedPECheckpointHoldsEveryOperator(t *testing.T) {
	src, agg := params()
	spec := regionJob(src, agg, v1alpha1.TriggerPeriodic)
	spec.Application.ParallelRegions = []v1alpha1.ParallelRegionDef{{Name: "par", Operators: []string{"agg"}, Width: 2}}
	h := newHarnessFor(t, spec, 1, operators.Summary{})
	if len(h.plan.PEs) != 4 || len(h.plan.PEs[0].Operators) != 2 || len(h.plan.PEs[1].Operators) != 2 {
		t.Fatalf("plan: %+v", h.plan.PEs)
	}
	h.startAll()
	h.until("healthy at epoch 1", h.healthy(1, 0))
	h.until("sink receiving", func() bool { return h.sink().Tuples > 10 })
	seq := uint64(h.checkpoint())
	// The store writes in the background: wait for the last write.
	time.Sleep(100 * time.Millisecond)
	for _, pe := range h.plan.PEs {
		for _, op := range pe.Operators {
			if op == "par-out0" {
				continue // a union has no state
			}
			if b := h.store.state(t, pe.Name, op, seq); len(b) == 0 {
				t.Fatalf("checkpoint %d of %s has no state for %s", seq, pe.Name, op)
			}
		}
	}
	var meta channelMeta
	if err := json.Unmarshal(h.store.state(t, "job-par-1", channelMetaKey, seq), &meta); err != nil ||
		meta != (channelMeta{Region: "par", Index: 1, Width: 2}) {
		t.Fatalf("channel 1's checkpoint says %+v (%v)", meta, err)
	}
}
