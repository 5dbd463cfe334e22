package exactlyonce

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"reflect"
	"strconv"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/app"
	"sluice.dev/sluice/platform/checkpoint"
	"sluice.dev/sluice/platform/region"
	"sluice.dev/sluice/platform/runtime/engine"
	"sluice.dev/sluice/platform/runtime/operators"
	"sluice.dev/sluice/platform/runtime/regionctl"
)

// The width-change workload: a paced keyed source, a split by key into the
// channels of parallel region "par" (a tumbling-window sum per key in each
// channel), their union and a sink, all in consistent region "main". Event
// time is a function of the sequence number and never goes back, so the
// sink's results (one sum per key and window) do not depend on the width.
const (
	wcCount  = 60_000
	wcRate   = 12_000
	wcKeys   = 32
	wcWindow = 250 // ms
	wcPeriod = 150 * time.Millisecond
)

func widthJob() *v1alpha1.JobSpec {
	i64 := func(v int64) *int64 { return &v }
	d := func(x time.Duration) *metav1.Duration { return &metav1.Duration{Duration: x} }
	return &v1alpha1.JobSpec{
		Application: v1alpha1.Application{
			Operators: []v1alpha1.Operator{
				{Name: "src", Kind: v1alpha1.KindSource, Params: &v1alpha1.OperatorParams{
					Rate: i64(wcRate), Count: i64(wcCount), Keys: i64(wcKeys), TupleSize: int32p(32)}},
				{Name: "agg", Kind: v1alpha1.KindAggregate, Params: &v1alpha1.OperatorParams{
					WindowMillis: i64(wcWindow), Function: "sum"}},
				{Name: "sink", Kind: v1alpha1.KindSink},
			},
			Streams: []v1alpha1.Stream{
				{From: v1alpha1.Endpoint{Operator: "src"}, To: v1alpha1.Endpoint{Operator: "agg"}},
				{From: v1alpha1.Endpoint{Operator: "agg"}, To: v1alpha1.Endpoint{Operator: "sink"}},
			},
			ParallelRegions: []v1alpha1.ParallelRegionDef{{Name: "par", Operators: []string{"agg"}, Width: 2, PartitionBy: "key"}},
			ConsistentRegions: []v1alpha1.ConsistentRegionDef{{
				Name: "main", Operators: []string{"src", "agg", "sink"}, Trigger: v1alpha1.TriggerPeriodic,
				Period: d(wcPeriod), DrainTimeout: d(10 * time.Second), ResetTimeout: d(15 * time.Second),
				MaxConsecutiveResets: 20,
			}},
		},
		CheckpointStore: &v1alpha1.CheckpointStore{Type: v1alpha1.StoreFilesystem, Path: "/unused"},
	}
}

// memControl carries a region's commands to one in-process PE and its
// progress back (what the kube and file controls do across processes).
type memControl struct {
	cmds   chan regionctl.Command
	mu     sync.Mutex
	closed bool
	last   *v1alpha1.RegionProgress
}

func newMemControl() *memControl { return &memControl{cmds: make(chan regionctl.Command, 1)} }

func (m *memControl) Commands() <-chan regionctl.Command { return m.cmds }

func (m *memControl) Report(_ context.Context, p v1alpha1.RegionProgress) error {
	m.mu.Lock()
	m.last = &p
	m.mu.Unlock()
	return nil
}

func (m *memControl) Run(ctx context.Context) error {
	<-ctx.Done()
	m.mu.Lock()
	m.closed = true
	close(m.cmds)
	m.mu.Unlock()
	return nil
}

func (m *memControl) progress() *v1alpha1.RegionProgress {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.last
}

// send delivers c, replacing a command not yet read (the latest wins).
func (m *memControl) send(c regionctl.Command) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	for {
		select {
		case m.cmds <- c:
			return
		default:
			select {
			case <-m.cmds:
			default:
			}
		}
	}
}

type wcPE struct {
	eng  *engine.Engine
	ctrl *memControl
}

// widthRun runs the region's PEs as engines in this process, over loopback
// TCP, with a filesystem checkpoint store, and plays the region
// coordinator with region.Next on the wall clock. A width change restarts
// every PE of the region from the new plan, as in a cluster (the PEs next
// to the region get a new configuration, the channels too, new channels
// join) while the region's status is kept: the new processes are out of
// sync, and the coordinator resets the region to its last checkpoint.
type widthRun struct {
	t        *testing.T
	rng      *rand.Rand
	store    checkpoint.Store
	noRedist bool
	log      *slog.Logger

	mu     sync.Mutex
	plan   *app.Plan
	width  int32
	spec   v1alpha1.ConsistentRegionSpec
	st     v1alpha1.ConsistentRegionStatus
	pes    map[string]*wcPE
	resets []time.Duration
	// kept counts the PEs that width changes left running.
	kept int

	bmu   sync.Mutex
	bases map[string]int
	stop  chan struct{}
	done  chan struct{}
}

func startWidthRun(t *testing.T, seed uint64, width int32, noRedist bool) *widthRun {
	t.Helper()
	store, err := checkpoint.Open(checkpoint.Config{Type: checkpoint.TypeFilesystem, Path: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	r := &widthRun{t: t, rng: rand.New(rand.NewPCG(seed, seed^0x5851f42d4c957f2d)), store: store, noRedist: noRedist,
		log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})), stop: make(chan struct{}), done: make(chan struct{})}
	r.mu.Lock()
	r.launch(width)
	r.mu.Unlock()
	go r.drive()
	t.Cleanup(func() {
		close(r.stop)
		<-r.done
		r.mu.Lock()
		r.killAll()
		r.mu.Unlock()
	})
	return r
}

// plan is the job's plan at width w.
func (r *widthRun) planAt(w int32) *app.Plan {
	r.t.Helper()
	plan, errs := app.BuildWidths("default", "wc", widthJob(), app.Widths{"par": w})
	if len(errs) > 0 {
		r.t.Fatal(errs)
	}
	if len(plan.Regions) != 1 || len(plan.Regions[0].Spec.PEs) != len(plan.PEs) || len(plan.PEs) != 2+int(w) {
		r.t.Fatalf("plan at width %d: %d PEs, regions %+v", w, len(plan.PEs), plan.Regions)
	}
	return plan
}

// base is where PE pe listens: a PE keeps its ports across launches, so
// that the PEs a width change keeps find the replaced ones.
func (r *widthRun) base(pe string) int {
	r.bmu.Lock()
	defer r.bmu.Unlock()
	if r.bases == nil {
		r.bases = map[string]int{}
	}
	if _, ok := r.bases[pe]; !ok {
		r.bases[pe] = freeBase(r.t, 8, r.rng)
	}
	return r.bases[pe]
}

func (r *widthRun) resolve(pe string, port int32) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(r.base(pe)+int(port)))
}

// launch plans the job at width w and starts every PE of the plan, sinks
// first. Called with r.mu held.
func (r *widthRun) launch(w int32) {
	r.t.Helper()
	plan := r.planAt(w)
	r.plan, r.width, r.spec, r.pes = plan, w, plan.Regions[0].Spec, map[string]*wcPE{}
	for i := len(plan.PEs) - 1; i >= 0; i-- {
		r.startPE(&plan.PEs[i])
	}
}

// startPE starts a process of pe and sends it the region's current
// command. Called with r.mu held.
func (r *widthRun) startPE(pe *app.PEPlan) {
	r.t.Helper()
	ctrl := newMemControl()
	e, err := engine.New(engine.Options{PE: &pe.Config, Ports: &r.plan.PortTable, ListenHost: "127.0.0.1",
		ListenBase: r.base(pe.Name), Resolve: r.resolve, Log: r.log, Region: ctrl, Store: r.store,
		NoRedistribution: r.noRedist})
	if err != nil {
		r.t.Fatal(err)
	}
	if err := e.Start(context.Background()); err != nil {
		r.t.Fatal(err)
	}
	r.pes[pe.Name] = &wcPE{eng: e, ctrl: ctrl}
	if r.st.State != "" {
		ctrl.send(regionctl.FromStatus(&r.st))
	}
}

// killAll stops every PE at once, as crashes would. Called with r.mu held.
func (r *widthRun) killAll() {
	var wg sync.WaitGroup
	for _, p := range r.pes {
		wg.Add(1)
		go func() { defer wg.Done(); p.eng.Kill() }()
	}
	wg.Wait()
}

// drive is the region coordinator: region.Next every few milliseconds.
func (r *widthRun) drive() {
	defer close(r.done)
	tick := time.NewTicker(3 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-tick.C:
		}
		r.mu.Lock()
		obs := region.Observation{Spec: r.spec, Status: r.st, Now: time.Now()}
		for _, name := range r.spec.PEs {
			pe := region.PE{Name: name}
			if p := r.pes[name]; p != nil {
				pe.Connected, _ = p.eng.Ready()
				pe.Progress = p.ctrl.progress()
			}
			obs.PEs = append(obs.PEs, pe)
		}
		d := region.Next(obs)
		if d.Changed {
			old := r.st
			r.st = d.Status
			if old.State == v1alpha1.RegionResetting && r.st.State == v1alpha1.RegionHealthy && r.st.LastResetDuration != nil {
				r.resets = append(r.resets, r.st.LastResetDuration.Duration)
			}
			cmd := regionctl.FromStatus(&r.st)
			for _, p := range r.pes {
				p.ctrl.send(cmd)
			}
		}
		r.mu.Unlock()
	}
}

func (r *widthRun) status() v1alpha1.ConsistentRegionStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.st
}

// sink is the summary of the sink, read live.
func (r *widthRun) sink() operators.Summary {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, pe := range r.plan.PEs {
		for _, op := range pe.Config.Operators {
			if op.Kind == v1alpha1.KindSink {
				if s := r.pes[pe.Name].eng.Summaries(); len(s) == 1 {
					return s[0]
				}
			}
		}
	}
	return operators.Summary{}
}

func (r *widthRun) waitUntil(d time.Duration, what string, f func() bool) {
	r.t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(3 * time.Millisecond) {
		if f() {
			return
		}
	}
	r.t.Fatalf("timed out after %s waiting for %s; region %+v; sink %+v", d, what, r.status(), r.sink())
}

// checkpoints waits until n more checkpoints have completed at the running
// width, the region Healthy.
func (r *widthRun) checkpoints(n int64) {
	r.t.Helper()
	from := r.status().LastCompletedSeq
	r.waitUntil(60*time.Second, fmt.Sprintf("%d checkpoints after %d", n, from), func() bool {
		s := r.status()
		if s.State == v1alpha1.RegionFailed {
			r.t.Fatalf("region failed: %+v", s)
		}
		return s.State == v1alpha1.RegionHealthy && s.LastCompletedSeq >= from+n
	})
}

// resize restarts every PE of the region at width w, keeping the store and
// the region's status. It returns the checkpoint the region will restore.
func (r *widthRun) resize(w int32) int64 {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.killAll()
	r.launch(w)
	return r.st.LastCompletedSeq
}

// resizeKeeping changes the width as the Job controller does now: only
// the PEs whose configuration changes are relaunched (those next to the
// region, the channels that go or come), the channels that stay keep
// running, and the region's spec gets the new PEs and widths; the region
// resets because its widths changed. It returns the checkpoint the region
// will restore.
func (r *widthRun) resizeKeeping(w int32) int64 {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	plan := r.planAt(w)
	old := map[string]*app.PEPlan{}
	for i := range r.plan.PEs {
		old[r.plan.PEs[i].Name] = &r.plan.PEs[i]
	}
	keep := map[string]bool{}
	for i := range plan.PEs {
		pe := &plan.PEs[i]
		if o := old[pe.Name]; o != nil && reflect.DeepEqual(o.Config, pe.Config) {
			keep[pe.Name] = true
		}
	}
	var wg sync.WaitGroup
	for name, p := range r.pes {
		if !keep[name] {
			wg.Add(1)
			go func() { defer wg.Done(); p.eng.Kill() }()
			delete(r.pes, name)
		}
	}
	wg.Wait()
	r.plan, r.width, r.spec = plan, w, plan.Regions[0].Spec
	for i := len(plan.PEs) - 1; i >= 0; i-- {
		if !keep[plan.PEs[i].Name] {
			r.startPE(&plan.PEs[i])
		}
	}
	r.kept += len(keep)
	return r.st.LastCompletedSeq
}

// finish waits until the sink has seen every stream end with the region
// Healthy, and returns its summary.
func (r *widthRun) finish() operators.Summary {
	r.t.Helper()
	r.waitUntil(90*time.Second, "the sink to complete", func() bool {
		return r.status().State == v1alpha1.RegionHealthy && r.sink().Complete
	})
	return r.sink()
}

func wcValueSum() int64 {
	var v int64
	for s := uint64(0); s < wcCount; s++ {
		v += int64(1 + s%10)
	}
	return v
}

var (
	wcBaseOnce sync.Once
	wcBase     operators.Summary
	wcBaseErr  string
)

// widthBaseline runs the workload at fixed width 2 without failures.
func widthBaseline(t *testing.T) operators.Summary {
	t.Helper()
	wcBaseOnce.Do(func() {
		wcBaseErr = "the fixed-width run failed (in " + t.Name() + ")"
		r := startWidthRun(t, 1, 2, false)
		s := r.finish()
		wcBaseErr = ""
		if s.Gaps != 0 || s.Duplicates != 0 || s.ValueSum != wcValueSum() || s.Tuples == 0 {
			wcBaseErr = fmt.Sprintf("fixed-width run: %+v (value sum want %d)", s, wcValueSum())
		}
		wcBase = s
	})
	if wcBaseErr != "" {
		t.Fatal(wcBaseErr)
	}
	return wcBase
}

// widthChanges runs the workload at width 2, restarts the region at width
// 4 after a few checkpoints, then at width 2 again, each time while the
// source is mid-stream, and returns the sink's final summary, the
// checkpoints restored and the reset durations.
func widthChanges(t *testing.T, seed uint64, noRedist, keeping bool) (operators.Summary, []int64, []time.Duration, operators.Summary) {
	t.Helper()
	r := startWidthRun(t, seed, 2, noRedist)
	var restored []int64
	var before operators.Summary
	for _, w := range []int32{4, 2} {
		// Long enough at each width for windows to close in every channel.
		r.checkpoints(5)
		// Change in the middle of the stream, between checkpoints.
		time.Sleep(time.Duration(r.rng.IntN(int(wcPeriod/time.Millisecond))) * time.Millisecond)
		if s := r.sink(); s.Complete {
			t.Fatalf("the source finished before the width change to %d; the test needs a longer stream", w)
		} else if w == 4 {
			before = s
		}
		if keeping {
			restored = append(restored, r.resizeKeeping(w))
		} else {
			restored = append(restored, r.resize(w))
		}
	}
	if keeping {
		t.Logf("PEs kept running across the width changes: %d", r.kept)
	}
	got := r.finish()
	if !noRedist {
		r.removedChannelsPruned()
	}
	r.mu.Lock()
	resets := append([]time.Duration(nil), r.resets...)
	r.mu.Unlock()
	return got, restored, resets, before
}

// removedChannelsPruned checks that, once a checkpoint at width 2 is
// complete, the checkpoints of channels 2 and 3 (removed by 4 -> 2) are
// deleted while channel 0 keeps its latest.
func (r *widthRun) removedChannelsPruned() {
	r.t.Helper()
	r.checkpoints(1)
	ctx := context.Background()
	seqs := func(pe string) []uint64 {
		s, err := r.store.Seqs(ctx, "default", "wc", "main", pe)
		if err != nil {
			r.t.Fatalf("listing checkpoints of %s: %v", pe, err)
		}
		return s
	}
	at4 := r.planAt(4)
	var removed []string
	for i := range at4.PEs {
		if ch := at4.PEs[i].Config.Channel; ch != nil && ch.Index >= 2 {
			removed = append(removed, at4.PEs[i].Name)
		}
	}
	if len(removed) != 2 {
		r.t.Fatalf("channels 2 and 3 of the width-4 plan: %v", removed)
	}
	r.waitUntil(30*time.Second, "checkpoints of the removed channels pruned", func() bool {
		return len(seqs(removed[0])) == 0 && len(seqs(removed[1])) == 0
	})
	ch0 := app.ChannelPEName("wc", "par", 0, 0, 1)
	if len(seqs(ch0)) == 0 {
		r.t.Fatalf("channel 0 (%s) has no checkpoint left", ch0)
	}
}

// Keyed state moves with its keys when a parallel region inside a
// consistent region changes width 2 -> 4 -> 2 mid-stream: the sink's
// results equal those of a failure-free run at fixed width (same tuple
// count, value sum and content digest), with no tuple lost or duplicated.
func TestWidthChangeExactlyOnce(t *testing.T) {
	want := widthBaseline(t)
	for _, keeping := range []bool{false, true} {
		name := "whole region restarted"
		if keeping {
			name = "unchanged channels kept running"
		}
		t.Run(name, func(t *testing.T) { checkWidthChanges(t, want, keeping) })
	}
}

func checkWidthChanges(t *testing.T, want operators.Summary, keeping bool) {
	got, restored, resets, before := widthChanges(t, 31, false, keeping)
	lost, dup := wcLostDup(got, want)
	report := fmt.Sprintf("width 2->4->2 (%s): restored checkpoints %v; sink tuples %d (fixed width %d): lost %d, duplicated %d; gaps %d, sink duplicates %d; value sum delta %d; content digest equal %v; sink had %d tuples at the first change; reset durations %v",
		t.Name(), restored, got.Tuples, want.Tuples, lost, dup, got.Gaps, got.Duplicates, got.ValueSum-want.ValueSum,
		got.ContentDigest == want.ContentDigest, before.Tuples, roundAll(resets))
	t.Log(report)
	fmt.Println("exactlyonce:", report)
	for _, s := range restored {
		if s < 5 {
			t.Fatalf("restored checkpoint %d: the change did not happen after checkpoints", s)
		}
	}
	if before.Tuples == 0 || before.Tuples >= want.Tuples {
		t.Fatalf("the first width change was not mid-stream: the sink had %d of %d tuples", before.Tuples, want.Tuples)
	}
	if lost != 0 || dup != 0 || got.Gaps != 0 || got.Duplicates != 0 || got.ValueSum != want.ValueSum ||
		got.ContentDigest != want.ContentDigest || !got.Complete {
		t.Fatalf("width changes are not exactly-once:\n got  %+v\n want %+v", got, want)
	}
	// Channels 2 and 3 existed only at width 4 and sent results (the
	// sink's port table at width 2 no longer names them: by origin ID).
	byID := map[uint32]uint64{}
	for _, o := range got.Origins {
		byID[o.ID] = o.Tuples
	}
	per := map[string]uint64{}
	for c := int32(0); c < 4; c++ {
		name := app.ChannelOperator("agg", c)
		per[name] = byID[operators.OriginID(name)]
		if per[name] == 0 {
			t.Fatalf("results at the sink per channel %v: %s sent nothing", per, name)
		}
	}
	t.Logf("results at the sink per channel: %v", per)
}

// The control: the same width changes with every channel restoring only its
// own checkpoint (new channels their initial state) lose or repeat the
// keys that moved, and the comparison above sees it.
func TestWidthChangeWithoutRedistributionDiffers(t *testing.T) {
	want := widthBaseline(t)
	got, restored, _, _ := widthChanges(t, 37, true, false)
	lost, dup := wcLostDup(got, want)
	t.Logf("without redistribution: restored %v; sink tuples %d (fixed width %d), lost %d, duplicated %d, value sum delta %d, content digest equal %v",
		restored, got.Tuples, want.Tuples, lost, dup, got.ValueSum-want.ValueSum, got.ContentDigest == want.ContentDigest)
	if got.ContentDigest == want.ContentDigest && got.ValueSum == want.ValueSum && got.Tuples == want.Tuples {
		t.Fatalf("width changes without redistribution gave the fixed-width result: %+v", got)
	}
}

// wcLostDup counts, against the fixed-width run, the results missing and
// in excess at the sink (by count), plus what the sink's own sequence
// accounting saw.
func wcLostDup(got, want operators.Summary) (lost, dup int64) {
	if got.Tuples < want.Tuples {
		lost = int64(want.Tuples - got.Tuples)
	} else {
		dup = int64(got.Tuples - want.Tuples)
	}
	return lost + int64(got.Gaps), dup + int64(got.Duplicates)
}

func roundAll(ds []time.Duration) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.Round(time.Millisecond).String())
	}
	return out
}
