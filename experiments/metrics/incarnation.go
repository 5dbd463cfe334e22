package metrics

import "sluice.dev/sluice/platform/api/v1alpha1"

// Incarnation identifies which run of a PE's process a status describes:
// a new pod (launch count) or the same pod's container restarted in place
// by the kubelet (restart count). A PE has recovered from a fault when it
// is connected in a later incarnation than at the fault.
type Incarnation struct {
	Launch   int32
	Restarts int32
}

// IncarnationOf reads a PE's status.
func IncarnationOf(pe *v1alpha1.ProcessingElement) Incarnation {
	return Incarnation{Launch: pe.Status.PodLaunch, Restarts: pe.Status.Restarts}
}

// After reports whether i is a later run than old: a higher launch count,
// or the same launch restarted more often.
func (i Incarnation) After(old Incarnation) bool {
	return i.Launch > old.Launch || (i.Launch == old.Launch && i.Restarts > old.Restarts)
}

// Recovered reports whether pe is connected in a later incarnation than old.
func Recovered(pe *v1alpha1.ProcessingElement, old Incarnation) bool {
	return pe.Status.Connectivity == v1alpha1.ConnectivityConnected && IncarnationOf(pe).After(old)
}
