package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// RegionState is the state of a consistent region (docs/consistent-regions.md).
// +kubebuilder:validation:Enum=Initializing;Healthy;Draining;Resetting;Failed
type RegionState string

const (
	RegionInitializing RegionState = "Initializing"
	RegionHealthy      RegionState = "Healthy"
	RegionDraining     RegionState = "Draining"
	RegionResetting    RegionState = "Resetting"
	RegionFailed       RegionState = "Failed"
)

// AnnotationRegionProgress is the pod annotation a PE process writes with
// its RegionProgress as JSON; the PE controller copies it into the PE's
// status.
const AnnotationRegionProgress = "streams.sluice.dev/region-progress"

// RegionProgress is what a PE reports about its consistent region.
type RegionProgress struct {
	// Region is the region's name in the application.
	Region string `json:"region"`
	// Epoch is the last reset epoch the PE process applied; 0 for a process
	// that has applied none (it is then never in sync).
	Epoch int64 `json:"epoch"`
	// Checkpointed is the last sequence id whose checkpoint the PE wrote.
	// +optional
	Checkpointed int64 `json:"checkpointed,omitempty"`
	// Bytes is the size of that checkpoint.
	// +optional
	Bytes int64 `json:"bytes,omitempty"`
	// DrainRequested: an operator of the PE asks for a checkpoint
	// (operator-driven regions).
	// +optional
	DrainRequested bool `json:"drainRequested,omitempty"`
}

// ConsistentRegionSpec is a region of a Job, as the Job controller derived
// it from the application.
type ConsistentRegionSpec struct {
	// JobName owning the region.
	JobName string `json:"jobName"`
	// Region name in the application.
	Region string `json:"region"`
	// Operators in the region.
	// +listType=atomic
	Operators []string `json:"operators"`
	// PEs hosting the region's operators (names of ProcessingElements).
	// +listType=atomic
	PEs []string `json:"pes"`
	// Trigger of checkpoints.
	Trigger RegionTrigger `json:"trigger"`
	// Period between checkpoints of a periodic region.
	Period metav1.Duration `json:"period"`
	// DrainTimeout: a longer drain becomes a reset.
	DrainTimeout metav1.Duration `json:"drainTimeout"`
	// ResetTimeout: a longer reset is retried.
	ResetTimeout metav1.Duration `json:"resetTimeout"`
	// MaxConsecutiveResets before the region is Failed.
	MaxConsecutiveResets int32 `json:"maxConsecutiveResets"`
	// ParallelWidths are the widths of the parallel regions inside this
	// region, by parallel region name, as the Job's plan runs them now.
	// +optional
	ParallelWidths map[string]int32 `json:"parallelWidths,omitempty"`
}

// RegionPEStatus is one PE's progress as the region coordinator last saw it.
type RegionPEStatus struct {
	Name string `json:"name"`
	// Epoch the PE reported.
	// +optional
	Epoch int64 `json:"epoch,omitempty"`
	// Checkpointed is the last sequence id the PE checkpointed.
	// +optional
	Checkpointed int64 `json:"checkpointed,omitempty"`
	// Connected is the PE's connectivity.
	// +optional
	Connected bool `json:"connected,omitempty"`
}

// ConsistentRegionStatus is the region's state machine; PEs watch it to
// learn of drains and resets.
type ConsistentRegionStatus struct {
	// ObservedGeneration is the generation this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// State of the region.
	// +optional
	State RegionState `json:"state,omitempty"`
	// StateSince is when the region entered State.
	// +optional
	StateSince *metav1.Time `json:"stateSince,omitempty"`
	// Epoch is the reset epoch every PE must have applied to be in sync.
	// +optional
	Epoch int64 `json:"epoch,omitempty"`
	// CurrentSeq is the checkpoint being taken (Draining).
	// +optional
	CurrentSeq int64 `json:"currentSeq,omitempty"`
	// LastCompletedSeq is the last checkpoint every PE wrote.
	// +optional
	LastCompletedSeq int64 `json:"lastCompletedSeq,omitempty"`
	// LastCompletedTime is when LastCompletedSeq completed.
	// +optional
	LastCompletedTime *metav1.Time `json:"lastCompletedTime,omitempty"`
	// RestoreSeq is the checkpoint the current or last reset restores
	// (0: the initial state).
	// +optional
	RestoreSeq int64 `json:"restoreSeq,omitempty"`
	// ParallelWidths are the parallel regions' widths the current epoch
	// runs at: the spec's, taken when the epoch's reset began, so that
	// every PE of an epoch agrees on them. A channel PE restores its keyed
	// state for its channel at these widths, and a width change needs no
	// new configuration (nor new pods) for the channels it keeps.
	// +optional
	ParallelWidths map[string]int32 `json:"parallelWidths,omitempty"`
	// ConsecutiveResets since the last completed checkpoint.
	// +optional
	ConsecutiveResets int32 `json:"consecutiveResets,omitempty"`
	// Resets in total.
	// +optional
	Resets int64 `json:"resets,omitempty"`
	// Checkpoints completed in total.
	// +optional
	Checkpoints int64 `json:"checkpoints,omitempty"`
	// LastDrainDuration is how long the last completed drain took.
	// +optional
	LastDrainDuration *metav1.Duration `json:"lastDrainDuration,omitempty"`
	// LastResetDuration is how long the last completed reset took.
	// +optional
	LastResetDuration *metav1.Duration `json:"lastResetDuration,omitempty"`
	// CheckpointBytes is the total size of the last complete checkpoint.
	// +optional
	CheckpointBytes int64 `json:"checkpointBytes,omitempty"`
	// PEs of the region, as last seen.
	// +listType=map
	// +listMapKey=name
	// +optional
	PEs []RegionPEStatus `json:"pes,omitempty"`
	// Conditions: Healthy.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// ConsistentRegion is a consistent region of a running Job.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:path=streamsconsistentregions,singular=streamsconsistentregion,shortName=scr,categories=streams
// +kubebuilder:printcolumn:name="Job",type=string,JSONPath=`.spec.jobName`
// +kubebuilder:printcolumn:name="State",type=string,JSONPath=`.status.state`
// +kubebuilder:printcolumn:name="Epoch",type=integer,JSONPath=`.status.epoch`
// +kubebuilder:printcolumn:name="Checkpoint",type=integer,JSONPath=`.status.lastCompletedSeq`
// +kubebuilder:printcolumn:name="Resets",type=integer,JSONPath=`.status.resets`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ConsistentRegion struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   ConsistentRegionSpec   `json:"spec,omitempty"`
	Status ConsistentRegionStatus `json:"status,omitempty"`
}

// ConsistentRegionList is a list of ConsistentRegions.
//
// +kubebuilder:object:root=true
type ConsistentRegionList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ConsistentRegion `json:"items"`
}

func init() {
	SchemeBuilder.Register(&ConsistentRegion{}, &ConsistentRegionList{})
}
