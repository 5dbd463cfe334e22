package dataplane

import "time"

// Backlog is the time a PE needs to work off what it has accepted but not
// processed yet (the batch in service and its input queue) at its current
// CPU rate, or at PEMaxCores when idle. The checkpointing model uses it as
// the part of a drain spent on tuples that arrived before the marker.
func (d *DataPlane) Backlog(namespace, peName string) time.Duration {
	x := d.pes[peKey(namespace, peName)]
	if x == nil || !x.running {
		return 0
	}
	work := 0.0
	if x.cur != nil {
		work = max(0, x.remaining-(d.e.Now()-x.last).Seconds()*x.rate)
	}
	for _, it := range x.queue {
		work += it.n * it.prof.cost
	}
	rate := x.rate
	if rate <= 0 {
		rate = d.p.PEMaxCores
	}
	if work <= 0 || rate <= 0 {
		return 0
	}
	return time.Duration(work / rate * float64(time.Second))
}
