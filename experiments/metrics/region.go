package metrics

import (
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/watch"

	"sluice.dev/sluice/platform/api/v1alpha1"
)

// regionOf says whether an event is of one of the trial Job's
// ConsistentRegions and returns it.
func (tr *Trace) regionOf(e Event) (*v1alpha1.ConsistentRegion, bool) {
	cr, ok := e.Object.(*v1alpha1.ConsistentRegion)
	if !ok || e.Type == watch.Deleted || cr.Namespace != tr.Namespace || cr.Spec.JobName != tr.Job {
		return nil, false
	}
	return cr, true
}

// regionRow is one measurement of a region.
type regionRow struct {
	subject string
	d       time.Duration
}

// checkpoints lists every checkpoint a region of the Job completed, as its
// status measured it (lastDrainDuration: Draining entered -> every PE
// reported the checkpoint), once per completed sequence id seen.
func (tr *Trace) checkpoints() []regionRow {
	last := map[string]int64{}
	var out []regionRow
	for _, e := range tr.Events {
		cr, ok := tr.regionOf(e)
		if !ok {
			continue
		}
		st := cr.Status
		if st.LastCompletedSeq > last[cr.Name] && st.LastDrainDuration != nil {
			out = append(out, regionRow{fmt.Sprintf("%s#%d", cr.Name, st.LastCompletedSeq), st.LastDrainDuration.Duration})
		}
		last[cr.Name] = max(last[cr.Name], st.LastCompletedSeq)
	}
	return out
}

// resets measures, for each fault on a PE, the first reset of each region
// of the Job that completes after it (Healthy again at a higher epoch than
// at the fault), as the region's status measured it (lastResetDuration:
// Resetting entered -> every PE in sync at the new epoch, which includes
// replacing a lost PE's pod). The time from the fault to the reset's start
// is fault detection, not part of it.
func (tr *Trace) resets() []regionRow {
	var out []regionRow
	tr.firstResetEnds(func(f Action, cr *v1alpha1.ConsistentRegion, _ Event) {
		out = append(out, regionRow{fmt.Sprintf("%s/pe-%d", cr.Name, f.PE), cr.Status.LastResetDuration.Duration})
	})
	return out
}

// replays measures, for each fault on a PE, the catch-up after the first
// reset of each region of the Job completed after it: from the reset's end
// (the region seen Healthy at the new epoch) until every source of the
// region has emitted again everything it had emitted before the reset.
// It reads the sources' emitted-tuple counters (SourceTuples samples,
// cumulative per source process, replays included): c0 at the start of the
// drain of the restored checkpoint (sources stop there for it; 0 for the
// initial state), c1 the last sample at or before the reset's end (sources
// are paused while it resets); caught up when the counter reaches
// c1 + (c1 - c0). A source without samples around both moments (its
// process was replaced) is not followed; a region none of whose sources
// caught up by the end of the trial yields no row.
func (tr *Trace) replays() []regionRow {
	series := map[string][]Sample{}
	var names []string
	for _, s := range tr.Samples {
		if s.Name != SourceTuples {
			continue
		}
		if _, ok := series[s.Subject]; !ok {
			names = append(names, s.Subject)
		}
		series[s.Subject] = append(series[s.Subject], s)
	}
	var out []regionRow
	tr.firstResetEnds(func(f Action, cr *v1alpha1.ConsistentRegion, e Event) {
		st := cr.Status
		drain, ok := tr.drainStart(cr.Name, st.RestoreSeq, e.Time)
		if !ok {
			return
		}
		var caught time.Duration
		n := 0
		for _, name := range names {
			d, ok := catchUp(series[name], drain, e.Time, st.RestoreSeq == 0)
			if ok {
				caught = max(caught, d)
				n++
			}
		}
		if n > 0 {
			out = append(out, regionRow{fmt.Sprintf("%s/pe-%d", cr.Name, f.PE), caught})
		}
	})
	return out
}

// firstResetEnds calls fn for each fault on a PE and each region of the
// Job with the event at which the region's first reset after the fault
// ended (seen Healthy at a later epoch, with the reset's duration).
func (tr *Trace) firstResetEnds(fn func(f Action, cr *v1alpha1.ConsistentRegion, e Event)) {
	for _, f := range tr.faults() {
		epochAt := map[string]int64{}
		done := map[string]bool{}
		for _, e := range tr.Events {
			cr, ok := tr.regionOf(e)
			if !ok {
				continue
			}
			st := cr.Status
			if !e.Time.After(f.Time) {
				epochAt[cr.Name] = st.Epoch
				continue
			}
			if done[cr.Name] || st.State != v1alpha1.RegionHealthy || st.Epoch <= epochAt[cr.Name] || st.LastResetDuration == nil {
				continue
			}
			done[cr.Name] = true
			fn(f, cr, e)
		}
	}
}

// drainStart is when the region was first seen Draining for checkpoint
// seq (before the given time); seq 0 is the initial state, before any.
func (tr *Trace) drainStart(region string, seq int64, before time.Time) (time.Time, bool) {
	if seq == 0 {
		return time.Time{}, true
	}
	for _, e := range tr.Events {
		cr, ok := tr.regionOf(e)
		if !ok || cr.Name != region || !e.Time.Before(before) {
			continue
		}
		if cr.Status.State == v1alpha1.RegionDraining && cr.Status.CurrentSeq == seq {
			return e.Time, true
		}
	}
	return time.Time{}, false
}

// catchUp is how long after end a source's counter took to grow by what
// it had emitted between drain and end (initial: since it started).
func catchUp(s []Sample, drain, end time.Time, initial bool) (time.Duration, bool) {
	if len(s) == 0 || s[0].Time.After(end) {
		return 0, false
	}
	c0 := 0.0
	if !initial {
		v, ok := valueAt(s, drain)
		if !ok {
			return 0, false
		}
		c0 = v
	}
	c1 := s[0].Value
	for _, x := range s {
		if x.Time.After(end) {
			break
		}
		c1 = x.Value
	}
	target := c1 + (c1 - c0)
	for i := 1; i < len(s); i++ {
		a, b := s[i-1], s[i]
		if !b.Time.After(end) || b.Value < target {
			continue
		}
		t := b.Time
		if b.Value > a.Value {
			t = a.Time.Add(time.Duration((target - a.Value) / (b.Value - a.Value) * float64(b.Time.Sub(a.Time))))
		}
		if t.Before(end) {
			t = end
		}
		return t.Sub(end), true
	}
	return 0, false
}

// valueAt interpolates a counter linearly between the samples around t.
func valueAt(s []Sample, t time.Time) (float64, bool) {
	for i := 1; i < len(s); i++ {
		a, b := s[i-1], s[i]
		if b.Time.Before(t) {
			continue
		}
		if a.Time.After(t) {
			return 0, false
		}
		if !b.Time.After(a.Time) {
			return b.Value, true
		}
		return a.Value + (b.Value-a.Value)*float64(t.Sub(a.Time))/float64(b.Time.Sub(a.Time)), true
	}
	if len(s) == 1 && s[0].Time.Equal(t) {
		return s[0].Value, true
	}
	return 0, false
}
