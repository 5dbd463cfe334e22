// Package region is the state machine of a consistent region: drain ->
// checkpoint -> resume, and reset on any failure. It is a pure function of
// what was observed (the region's status, its PEs' reported progress and the
// time) so that the operator's conductor, the local-mode supervisor and the
// simulator all run the very same decisions. docs/consistent-regions.md
// describes the protocol.
package region

import (
	"fmt"
	"maps"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/conditions"
)

// ConditionHealthy is the region's condition type.
const ConditionHealthy = "Healthy"

// PE is what is known of one PE of the region.
type PE struct {
	Name string
	// Connected is the PE's connectivity (from its pod's readiness).
	Connected bool
	// Progress is what the PE's current process reported; nil if nothing.
	Progress *v1alpha1.RegionProgress
}

// Observation is the input of Next.
type Observation struct {
	Spec   v1alpha1.ConsistentRegionSpec
	Status v1alpha1.ConsistentRegionStatus
	// PEs of the region; a PE of Spec.PEs missing here is disconnected.
	PEs []PE
	Now time.Time
}

// Event is a transition worth telling a user about.
type Event struct {
	Warning bool
	Reason  string
	Message string
}

// Decision is the output of Next.
type Decision struct {
	// Status is the region's next status; Changed says whether it differs.
	Status  v1alpha1.ConsistentRegionStatus
	Changed bool
	// RequeueAfter is when a timer of the current state fires (0: none).
	RequeueAfter time.Duration
	Event        *Event
}

type machine struct {
	spec  *v1alpha1.ConsistentRegionSpec
	st    *v1alpha1.ConsistentRegionStatus
	pes   map[string]PE
	now   time.Time
	event *Event
}

// Next decides the region's next status.
func Next(o Observation) Decision {
	st := o.Status.DeepCopy()
	m := &machine{spec: &o.Spec, st: st, pes: map[string]PE{}, now: o.Now}
	for _, pe := range o.PEs {
		m.pes[pe.Name] = pe
	}
	m.notePEs()
	requeue := m.step()
	if st.State != v1alpha1.RegionFailed {
		conditions.Set(&st.Conditions, m.healthyCondition(), o.Now)
	}
	return Decision{Status: *st, Changed: !equalStatus(&o.Status, st), RequeueAfter: requeue, Event: m.event}
}

func (m *machine) step() time.Duration {
	st := m.st
	switch st.State {
	case "", v1alpha1.RegionInitializing:
		// Wait (without a timeout: the Job has its own submission timeout)
		// until every PE runs and is connected, then align them all on
		// epoch 1 before any tuple flows; that first reset is no failure.
		if !m.allConnected() {
			if st.State == "" {
				m.enter(v1alpha1.RegionInitializing)
			}
			return 0
		}
		m.enter(v1alpha1.RegionResetting)
		st.Epoch++
		st.RestoreSeq = st.LastCompletedSeq
		st.ParallelWidths = maps.Clone(m.spec.ParallelWidths)
		return m.spec.ResetTimeout.Duration
	case v1alpha1.RegionHealthy:
		if msg := m.widthsChanged(); msg != "" {
			return m.reset(ReasonWidthChanged, msg)
		}
		if out := m.outOfSync(); out != "" {
			return m.reset("PEOutOfSync", out)
		}
		if m.spec.Trigger == v1alpha1.TriggerOperatorDriven {
			if m.drainRequested() {
				m.drain()
				return m.spec.DrainTimeout.Duration
			}
			return 0
		}
		due := st.StateSince.Add(m.spec.Period.Duration)
		if !m.now.Before(due) {
			m.drain()
			return m.spec.DrainTimeout.Duration
		}
		return due.Sub(m.now)
	case v1alpha1.RegionDraining:
		if msg := m.widthsChanged(); msg != "" {
			return m.reset(ReasonWidthChanged, msg)
		}
		if out := m.outOfSync(); out != "" {
			return m.reset("PEOutOfSync", out)
		}
		if m.allCheckpointed(st.CurrentSeq) {
			m.complete()
			return m.afterHealthy()
		}
		due := st.StateSince.Add(m.spec.DrainTimeout.Duration)
		if !m.now.Before(due) {
			return m.reset("DrainTimeout", fmt.Sprintf("checkpoint %d not written by every PE within %s", st.CurrentSeq, m.spec.DrainTimeout.Duration))
		}
		return due.Sub(m.now)
	case v1alpha1.RegionResetting:
		if msg := m.widthsChanged(); msg != "" {
			return m.reset(ReasonWidthChanged, msg)
		}
		if m.outOfSync() == "" {
			since := st.StateSince.Time
			m.enter(v1alpha1.RegionHealthy)
			st.LastResetDuration = &metav1.Duration{Duration: m.now.Sub(since)}
			return m.afterHealthy()
		}
		due := st.StateSince.Add(m.spec.ResetTimeout.Duration)
		if !m.now.Before(due) {
			return m.reset("ResetTimeout", fmt.Sprintf("epoch %d not applied by every PE within %s", st.Epoch, m.spec.ResetTimeout.Duration))
		}
		return due.Sub(m.now)
	}
	return 0 // Failed is terminal until the Job is retried.
}

// ReasonWidthChanged is the reset of a region whose parallel regions'
// widths changed: every channel restores the last checkpoint for its keys
// at the new widths.
const ReasonWidthChanged = "WidthChanged"

// widthsChanged describes how the spec's parallel widths differ from the
// epoch's, or returns "".
func (m *machine) widthsChanged() string {
	if maps.Equal(m.spec.ParallelWidths, m.st.ParallelWidths) {
		return ""
	}
	return fmt.Sprintf("parallel widths %v, the epoch runs at %v", m.spec.ParallelWidths, m.st.ParallelWidths)
}

// afterHealthy is the requeue of a region that just became Healthy.
func (m *machine) afterHealthy() time.Duration {
	if m.spec.Trigger == v1alpha1.TriggerOperatorDriven {
		return 0
	}
	return m.spec.Period.Duration
}

func (m *machine) enter(s v1alpha1.RegionState) {
	m.st.State = s
	t := metav1.NewTime(m.now)
	m.st.StateSince = &t
}

// drain starts the next checkpoint. Sequence ids are never reused, so a
// PE's report from an abandoned drain cannot complete a later one.
func (m *machine) drain() {
	next := max(m.st.CurrentSeq, m.st.LastCompletedSeq) + 1
	m.enter(v1alpha1.RegionDraining)
	m.st.CurrentSeq = next
}

func (m *machine) complete() {
	st := m.st
	since := st.StateSince.Time
	st.LastCompletedSeq = st.CurrentSeq
	t := metav1.NewTime(m.now)
	st.LastCompletedTime = &t
	st.Checkpoints++
	st.ConsecutiveResets = 0
	st.LastDrainDuration = &metav1.Duration{Duration: m.now.Sub(since)}
	var bytes int64
	for _, name := range m.spec.PEs {
		if p := m.pes[name].Progress; p != nil {
			bytes += p.Bytes
		}
	}
	st.CheckpointBytes = bytes
	m.enter(v1alpha1.RegionHealthy)
}

// reset starts a new epoch that restores the last complete checkpoint, or
// fails the region when it has reset too often in a row.
func (m *machine) reset(reason, msg string) time.Duration {
	st := m.st
	// A width change is the user's, not a failure: it neither counts
	// toward nor is stopped by the limit of consecutive resets.
	failure := reason != ReasonWidthChanged
	if failure && st.ConsecutiveResets >= m.spec.MaxConsecutiveResets {
		m.enter(v1alpha1.RegionFailed)
		m.event = &Event{Warning: true, Reason: "TooManyResets", Message: fmt.Sprintf("%d consecutive resets; last: %s", st.ConsecutiveResets, msg)}
		conditions.Set(&st.Conditions, metav1.Condition{Type: ConditionHealthy, Status: metav1.ConditionFalse,
			Reason: "TooManyResets", Message: m.event.Message}, m.now)
		return 0
	}
	m.enter(v1alpha1.RegionResetting)
	st.Epoch++
	st.RestoreSeq = st.LastCompletedSeq
	st.ParallelWidths = maps.Clone(m.spec.ParallelWidths)
	if failure {
		st.ConsecutiveResets++
	}
	st.Resets++
	m.event = &Event{Warning: true, Reason: reason, Message: fmt.Sprintf("reset to checkpoint %d (epoch %d): %s", st.RestoreSeq, st.Epoch, msg)}
	return m.spec.ResetTimeout.Duration
}

// outOfSync names the first PE that is not connected at the region's
// epoch, or returns "".
func (m *machine) outOfSync() string {
	for _, name := range m.spec.PEs {
		pe, ok := m.pes[name]
		switch {
		case !ok:
			return "PE " + name + " is missing"
		case !pe.Connected:
			return "PE " + name + " is not connected"
		case pe.Progress == nil || pe.Progress.Epoch != m.st.Epoch:
			var e int64
			if pe.Progress != nil {
				e = pe.Progress.Epoch
			}
			return fmt.Sprintf("PE %s is at epoch %d, the region at %d", name, e, m.st.Epoch)
		}
	}
	return ""
}

func (m *machine) allConnected() bool {
	for _, name := range m.spec.PEs {
		if !m.pes[name].Connected {
			return false
		}
	}
	return true
}

func (m *machine) allCheckpointed(seq int64) bool {
	for _, name := range m.spec.PEs {
		p := m.pes[name].Progress
		if p == nil || p.Checkpointed < seq {
			return false
		}
	}
	return true
}

func (m *machine) drainRequested() bool {
	for _, name := range m.spec.PEs {
		if p := m.pes[name].Progress; p != nil && p.DrainRequested {
			return true
		}
	}
	return false
}

// notePEs records the PEs' progress in the status, in spec order.
func (m *machine) notePEs() {
	out := make([]v1alpha1.RegionPEStatus, 0, len(m.spec.PEs))
	for _, name := range m.spec.PEs {
		pe := m.pes[name]
		s := v1alpha1.RegionPEStatus{Name: name, Connected: pe.Connected}
		if pe.Progress != nil {
			s.Epoch, s.Checkpointed = pe.Progress.Epoch, pe.Progress.Checkpointed
		}
		out = append(out, s)
	}
	m.st.PEs = out
}

func (m *machine) healthyCondition() metav1.Condition {
	st := m.st
	c := metav1.Condition{Type: ConditionHealthy, Status: metav1.ConditionTrue, Reason: string(st.State)}
	switch st.State {
	case v1alpha1.RegionHealthy:
		c.Message = fmt.Sprintf("checkpoint %d complete", st.LastCompletedSeq)
	case v1alpha1.RegionDraining:
		c.Message = fmt.Sprintf("taking checkpoint %d", st.CurrentSeq)
	case v1alpha1.RegionResetting:
		c.Status = metav1.ConditionFalse
		c.Message = fmt.Sprintf("resetting to checkpoint %d (epoch %d)", st.RestoreSeq, st.Epoch)
	}
	return c
}

func equalStatus(a, b *v1alpha1.ConsistentRegionStatus) bool {
	return equality.Semantic.DeepEqual(a, b)
}
