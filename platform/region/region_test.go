package region

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"sluice.dev/sluice/platform/api/v1alpha1"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func spec(trigger v1alpha1.RegionTrigger) v1alpha1.ConsistentRegionSpec {
	return v1alpha1.ConsistentRegionSpec{
		JobName: "j", Region: "r", Operators: []string{"src", "agg", "sink"}, PEs: []string{"j-pe-0", "j-pe-1"},
		Trigger: trigger, Period: metav1.Duration{Duration: 5 * time.Second},
		DrainTimeout: metav1.Duration{Duration: 30 * time.Second}, ResetTimeout: metav1.Duration{Duration: 20 * time.Second},
		MaxConsecutiveResets: 3,
	}
}

// world plays the PEs: each reports what a well-behaved PE process would.
type world struct {
	t    *testing.T
	spec v1alpha1.ConsistentRegionSpec
	st   v1alpha1.ConsistentRegionStatus
	now  time.Time
	pes  map[string]*PE
	last Decision
}

func newWorld(t *testing.T, trigger v1alpha1.RegionTrigger) *world {
	w := &world{t: t, spec: spec(trigger), now: t0, pes: map[string]*PE{}}
	for _, n := range w.spec.PEs {
		w.pes[n] = &PE{Name: n, Connected: true, Progress: &v1alpha1.RegionProgress{Region: "r"}}
	}
	return w
}

func (w *world) next() Decision {
	var pes []PE
	for _, n := range w.spec.PEs {
		if pe := w.pes[n]; pe != nil {
			p := *pe
			if pe.Progress != nil {
				cp := *pe.Progress
				p.Progress = &cp
			}
			pes = append(pes, p)
		}
	}
	d := Next(Observation{Spec: w.spec, Status: w.st, PEs: pes, Now: w.now})
	w.st = d.Status
	w.last = d
	return d
}

// applyEpoch makes every PE apply the region's epoch (what PEs do on a reset).
func (w *world) applyEpoch() {
	for _, pe := range w.pes {
		pe.Progress.Epoch = w.st.Epoch
	}
}

func (w *world) checkpoint(seq int64) {
	for _, pe := range w.pes {
		pe.Progress.Checkpointed = seq
		pe.Progress.Bytes = 100
	}
}

func (w *world) want(state v1alpha1.RegionState) {
	w.t.Helper()
	if w.st.State != state {
		w.t.Fatalf("state %s, want %s (status %+v)", w.st.State, state, w.st)
	}
}

func TestInitialResetThenPeriodicCheckpoints(t *testing.T) {
	w := newWorld(t, v1alpha1.TriggerPeriodic)
	w.pes["j-pe-1"].Connected = false
	w.next()
	w.want(v1alpha1.RegionInitializing)
	w.now = w.now.Add(time.Hour) // no timeout while the PEs start
	if d := w.next(); d.Changed || d.RequeueAfter != 0 {
		t.Fatalf("initializing: changed=%v requeue=%v", d.Changed, d.RequeueAfter)
	}
	w.pes["j-pe-1"].Connected = true
	w.next()
	w.want(v1alpha1.RegionResetting)
	if w.st.Epoch != 1 || w.st.Resets != 0 || w.st.ConsecutiveResets != 0 {
		t.Fatalf("initial alignment must be epoch 1 and not count as a reset: %+v", w.st)
	}
	// Nothing changes until every PE applied epoch 1.
	w.now = w.now.Add(time.Second)
	if d := w.next(); d.Changed || d.RequeueAfter != 19*time.Second {
		t.Fatalf("waiting reset: changed=%v requeue=%v", d.Changed, d.RequeueAfter)
	}
	w.applyEpoch()
	w.next()
	w.want(v1alpha1.RegionHealthy)
	if w.last.RequeueAfter != 5*time.Second || w.st.LastResetDuration.Duration != time.Second {
		t.Fatalf("requeue %v, reset duration %v", w.last.RequeueAfter, w.st.LastResetDuration)
	}
	w.now = w.now.Add(4 * time.Second)
	if d := w.next(); d.RequeueAfter != time.Second {
		t.Fatalf("period not honoured: requeue %v", d.RequeueAfter)
	}
	w.want(v1alpha1.RegionHealthy)
	for seq := int64(1); seq <= 3; seq++ {
		w.now = w.now.Add(5 * time.Second)
		w.next()
		w.want(v1alpha1.RegionDraining)
		if w.st.CurrentSeq != seq {
			t.Fatalf("drain seq %d, want %d", w.st.CurrentSeq, seq)
		}
		w.pes["j-pe-0"].Progress.Checkpointed = seq
		w.now = w.now.Add(200 * time.Millisecond)
		w.next()
		w.want(v1alpha1.RegionDraining) // one PE is not done
		w.checkpoint(seq)
		w.now = w.now.Add(300 * time.Millisecond)
		w.next()
		w.want(v1alpha1.RegionHealthy)
		if w.st.LastCompletedSeq != seq || w.st.Checkpoints != seq || w.st.CheckpointBytes != 200 ||
			w.st.LastDrainDuration.Duration != 500*time.Millisecond {
			t.Fatalf("after checkpoint %d: %+v", seq, w.st)
		}
	}
}

func healthyAt(t *testing.T, trigger v1alpha1.RegionTrigger, seq int64) *world {
	w := newWorld(t, trigger)
	w.next()
	w.applyEpoch()
	w.next()
	for s := int64(1); s <= seq; s++ {
		w.now = w.now.Add(5 * time.Second)
		w.next()
		w.checkpoint(s)
		w.next()
	}
	w.want(v1alpha1.RegionHealthy)
	return w
}

func TestPELostResetsToLastCheckpoint(t *testing.T) {
	w := healthyAt(t, v1alpha1.TriggerPeriodic, 2)
	// The pod of PE 1 is replaced: disconnected, then a new process at epoch 0.
	w.pes["j-pe-1"].Connected = false
	w.now = w.now.Add(time.Second)
	d := w.next()
	w.want(v1alpha1.RegionResetting)
	if w.st.Epoch != 2 || w.st.RestoreSeq != 2 || w.st.Resets != 1 || w.st.ConsecutiveResets != 1 {
		t.Fatalf("reset status %+v", w.st)
	}
	if d.Event == nil || d.Event.Reason != "PEOutOfSync" || !strings.Contains(d.Event.Message, "j-pe-1") {
		t.Fatalf("event %+v", d.Event)
	}
	w.pes["j-pe-1"] = &PE{Name: "j-pe-1", Connected: true, Progress: &v1alpha1.RegionProgress{Region: "r"}}
	w.pes["j-pe-0"].Progress.Epoch = 2
	w.next()
	w.want(v1alpha1.RegionResetting) // the new process has not applied epoch 2
	w.applyEpoch()
	w.now = w.now.Add(time.Second)
	w.next()
	w.want(v1alpha1.RegionHealthy)
	if w.st.LastResetDuration.Duration != time.Second {
		t.Fatalf("reset took %v", w.st.LastResetDuration)
	}
	// The next checkpoint completes and clears the consecutive count.
	w.now = w.now.Add(5 * time.Second)
	w.next()
	w.want(v1alpha1.RegionDraining)
	if w.st.CurrentSeq != 3 {
		t.Fatalf("next seq %d", w.st.CurrentSeq)
	}
	w.checkpoint(3)
	w.next()
	if w.st.ConsecutiveResets != 0 || w.st.LastCompletedSeq != 3 {
		t.Fatalf("%+v", w.st)
	}
}

func TestPELostDuringDrainNeverReusesTheSeq(t *testing.T) {
	w := healthyAt(t, v1alpha1.TriggerPeriodic, 1)
	w.now = w.now.Add(5 * time.Second)
	w.next()
	w.want(v1alpha1.RegionDraining)
	w.pes["j-pe-0"].Progress.Checkpointed = 2 // one PE wrote checkpoint 2
	w.pes["j-pe-1"].Connected = false
	w.next()
	w.want(v1alpha1.RegionResetting)
	if w.st.RestoreSeq != 1 {
		t.Fatalf("restore %d, want the last complete checkpoint 1", w.st.RestoreSeq)
	}
	w.pes["j-pe-1"].Connected = true
	w.applyEpoch()
	w.next()
	w.want(v1alpha1.RegionHealthy)
	w.now = w.now.Add(5 * time.Second)
	w.next()
	w.want(v1alpha1.RegionDraining)
	if w.st.CurrentSeq != 3 {
		t.Fatalf("drain seq %d: an abandoned seq must not be reused", w.st.CurrentSeq)
	}
	w.next()
	w.want(v1alpha1.RegionDraining) // PE 0's old report of 2 does not complete 3
}

func TestDrainTimeoutResets(t *testing.T) {
	w := healthyAt(t, v1alpha1.TriggerPeriodic, 1)
	w.now = w.now.Add(5 * time.Second)
	w.next()
	w.now = w.now.Add(10 * time.Second)
	if d := w.next(); d.RequeueAfter != 20*time.Second {
		t.Fatalf("drain timer %v", d.RequeueAfter)
	}
	w.now = w.now.Add(20 * time.Second)
	d := w.next()
	w.want(v1alpha1.RegionResetting)
	if d.Event == nil || d.Event.Reason != "DrainTimeout" {
		t.Fatalf("event %+v", d.Event)
	}
}

func TestRepeatedResetsUpToTheLimitFail(t *testing.T) {
	w := healthyAt(t, v1alpha1.TriggerPeriodic, 1)
	w.pes["j-pe-0"].Connected = false // never comes back
	for i := int32(1); i <= 3; i++ {
		w.next()
		w.want(v1alpha1.RegionResetting)
		if w.st.ConsecutiveResets != i {
			t.Fatalf("consecutive %d, want %d", w.st.ConsecutiveResets, i)
		}
		w.now = w.now.Add(20 * time.Second) // reset timeout
	}
	d := w.next()
	w.want(v1alpha1.RegionFailed)
	if d.Event == nil || d.Event.Reason != "TooManyResets" {
		t.Fatalf("event %+v", d.Event)
	}
	// Failed is terminal.
	w.pes["j-pe-0"].Connected = true
	w.applyEpoch()
	w.now = w.now.Add(time.Hour)
	w.next()
	w.want(v1alpha1.RegionFailed)
}

func TestOperatorDrivenTrigger(t *testing.T) {
	w := healthyAt(t, v1alpha1.TriggerOperatorDriven, 0)
	w.now = w.now.Add(time.Hour)
	if d := w.next(); d.RequeueAfter != 0 {
		t.Fatalf("operator-driven region must not poll: %v", d.RequeueAfter)
	}
	w.want(v1alpha1.RegionHealthy)
	w.pes["j-pe-0"].Progress.DrainRequested = true
	w.next()
	w.want(v1alpha1.RegionDraining)
}

func TestNoChangeNoWrite(t *testing.T) {
	w := healthyAt(t, v1alpha1.TriggerPeriodic, 1)
	w.now = w.now.Add(time.Second)
	if d := w.next(); d.Changed {
		t.Fatalf("a quiet healthy region must not rewrite its status")
	}
}

// A parallel region's width change resets the region so that every PE
// restores at the new widths; the epoch records the widths, the reset is
// no failure, and a change arriving during a reset starts another.
func TestWidthChangeResetsAtTheNewWidths(t *testing.T) {
	w := newWorld(t, v1alpha1.TriggerPeriodic)
	w.spec.ParallelWidths = map[string]int32{"agg": 2}
	w.next()
	w.want(v1alpha1.RegionResetting)
	if w.st.ParallelWidths["agg"] != 2 {
		t.Fatalf("the initial epoch does not record the widths: %+v", w.st.ParallelWidths)
	}
	w.applyEpoch()
	w.next()
	w.want(v1alpha1.RegionHealthy)
	w.now = w.now.Add(5 * time.Second)
	w.next()
	w.want(v1alpha1.RegionDraining)
	w.checkpoint(w.st.CurrentSeq)
	w.next()
	w.want(v1alpha1.RegionHealthy)
	limit := w.spec.MaxConsecutiveResets

	for i := 0; i < int(limit)+2; i++ { // more changes than the reset limit: none fails the region
		width := int32(4 - 2*(i%2))
		w.spec.ParallelWidths = map[string]int32{"agg": width}
		d := w.next()
		w.want(v1alpha1.RegionResetting)
		if w.st.ParallelWidths["agg"] != width || d.Event == nil || d.Event.Reason != ReasonWidthChanged || w.st.RestoreSeq != 1 {
			t.Fatalf("change %d to width %d: status %+v, event %+v", i, width, w.st, d.Event)
		}
		if w.st.ConsecutiveResets != 0 {
			t.Fatalf("a width change counted as a failed reset: %+v", w.st)
		}
		w.applyEpoch()
		w.next()
		w.want(v1alpha1.RegionHealthy)
	}
	// A change while a reset runs starts another epoch at the new widths.
	w.pes["j-pe-0"].Connected = false
	w.next()
	w.want(v1alpha1.RegionResetting)
	epoch := w.st.Epoch
	w.spec.ParallelWidths = map[string]int32{"agg": 3}
	w.next()
	if w.st.Epoch != epoch+1 || w.st.ParallelWidths["agg"] != 3 {
		t.Fatalf("change during a reset: epoch %d -> %d, widths %v", epoch, w.st.Epoch, w.st.ParallelWidths)
	}
}
