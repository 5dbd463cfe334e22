// Package metrics turns a stream of timestamped observations of a cluster
// into experiment metrics. Both backends feed it the same kind of stream
// (watch events of the API server stamped when they are received, the
// harness's own actions, and data-plane samples), so a metric has one
// definition whether the cluster is simulated or real.
//
// Pod phases follow clusterloader2: create -> schedule -> run -> watch. Every
// moment is when the watcher saw the transition, except "run" of
// pod_run_to_watch, which is the container's startedAt from the pod status
// (second resolution, as the API serialises it).
package metrics

import "sort"

// Info describes one metric of the catalogue.
type Info struct {
	Name string
	// Unit as written in result rows and on axes.
	Unit string
	// Label is the axis label without the unit.
	Label string
	// Doc is the definition in one sentence.
	Doc string
}

// Metric names.
const (
	Submission          = "submission"
	PodCreateToSchedule = "pod_create_to_schedule"
	PodScheduleToRun    = "pod_schedule_to_run"
	PodRunToWatch       = "pod_run_to_watch"
	PodRunToReady       = "pod_run_to_ready"
	PodStartup          = "pod_startup"
	PendingPods         = "pending_pods"
	Throughput          = "throughput"
	TupleLatencyP50     = "tuple_latency_p50"
	TupleLatencyP99     = "tuple_latency_p99"
	GCJob               = "gc_job"
	GCDependents        = "gc_dependents"
	FaultDetected       = "fault_detected"
	RecoveryPodReady    = "recovery_pod_ready"
	RecoveryConnected   = "recovery_connected"
	RecoveryFlowing     = "recovery_flowing"
	CheckpointDuration  = "checkpoint_duration"
	ResetDuration       = "reset_duration"
	ReplayDuration      = "replay_duration"
)

// Units.
const (
	Seconds      = "s"
	Milliseconds = "ms"
	Count        = "count"
	TuplesPerSec = "tuples/s"
)

var catalogue = map[string]Info{
	Submission:          {Submission, Seconds, "submission time", "Job created -> Job condition Submitted=True"},
	PodCreateToSchedule: {PodCreateToSchedule, Seconds, "pod create to schedule", "PE pod ADDED -> PodScheduled=True, per pod"},
	PodScheduleToRun:    {PodScheduleToRun, Seconds, "pod schedule to run", "PodScheduled=True -> phase Running, per pod"},
	PodRunToWatch:       {PodRunToWatch, Seconds, "pod run to watch", "latest container startedAt (pod status, 1 s resolution) -> phase Running seen, per pod"},
	PodRunToReady:       {PodRunToReady, Seconds, "pod run to ready", "phase Running -> Ready=True (PE connected), per pod"},
	PodStartup:          {PodStartup, Seconds, "pod startup", "PE pod ADDED -> Ready=True, per pod"},
	PendingPods:         {PendingPods, Count, "pending PE pods", "PE pods never scheduled by the end of the trial"},
	Throughput:          {Throughput, TuplesPerSec, "sink throughput", "tuples received by all sinks per second over the observation window"},
	TupleLatencyP50:     {TupleLatencyP50, Milliseconds, "tuple latency p50", "median source-to-sink tuple latency over the observation window"},
	TupleLatencyP99:     {TupleLatencyP99, Milliseconds, "tuple latency p99", "99th percentile source-to-sink tuple latency over the observation window"},
	GCJob:               {GCJob, Seconds, "Job deletion", "delete issued -> Job gone"},
	GCDependents:        {GCDependents, Seconds, "garbage collection", "delete issued -> every object of the Job gone"},
	FaultDetected:       {FaultDetected, Seconds, "fault detection", "fault injected -> PE seen not connected"},
	RecoveryPodReady:    {RecoveryPodReady, Seconds, "recovery (pod ready)", "fault injected -> a pod of the PE Ready again in a later incarnation (the kubelet's view, before the operator's)"},
	RecoveryConnected:   {RecoveryConnected, Seconds, "recovery (connected)", "fault injected -> PE Connected again (new pod or container restarted in place)"},
	RecoveryFlowing:     {RecoveryFlowing, Seconds, "recovery (flowing)", "fault injected -> the PE's tuples flow again after it reconnected"},
	CheckpointDuration:  {CheckpointDuration, Seconds, "checkpoint (drain) time", "consistent region Draining -> every PE wrote the checkpoint (status lastDrainDuration), per checkpoint"},
	ResetDuration:       {ResetDuration, Seconds, "reset time", "consistent region Resetting -> every PE in sync at the new epoch (status lastResetDuration), first reset after each PE fault"},
	ReplayDuration:      {ReplayDuration, Seconds, "replay (catch-up) time", "reset done -> the region's sources emitted again what they had emitted since the restored checkpoint (source counters), first reset after each PE fault"},
}

// Lookup returns the catalogue entry of a metric.
func Lookup(name string) (Info, bool) {
	i, ok := catalogue[name]
	return i, ok
}

// Names lists the catalogue, sorted.
func Names() []string {
	out := make([]string, 0, len(catalogue))
	for n := range catalogue {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
