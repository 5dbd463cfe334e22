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
			out = append(out, regionRow{fmt.Sprintf("%s/pe-%d", cr.Name, f.PE), st.LastResetDuration.Duration})
		}
	}
	return out
}
