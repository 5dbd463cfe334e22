package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ProcessingElementSpec is one PE of a Job: a set of fused operators that
// runs as exactly one pod at a time.
type ProcessingElementSpec struct {
	// Job that the PE belongs to.
	// +kubebuilder:validation:MinLength=1
	JobName string `json:"jobName"`

	// Index of the PE within its Job, from 0.
	// +kubebuilder:validation:Minimum=0
	Index int32 `json:"index"`

	// Operators fused into this PE.
	// +kubebuilder:validation:MinItems=1
	// +listType=atomic
	Operators []string `json:"operators"`

	// InputPorts is the number of PE input ports (port i listens on 10000+i).
	// +kubebuilder:validation:Minimum=0
	// +optional
	InputPorts int32 `json:"inputPorts,omitempty"`

	// LaunchCount is how many times the PE has been asked to launch. Raising
	// it replaces the PE's pod. Written only by the PE coordinator.
	// +kubebuilder:validation:Minimum=0
	// +optional
	LaunchCount int32 `json:"launchCount,omitempty"`

	// Placement of the PE's pod.
	// +optional
	Placement PEPlacement `json:"placement,omitempty"`

	// Template of the PE's pod, copied from the Job.
	Template PETemplate `json:"template"`

	// Region is the name of the ConsistentRegion object of the PE's
	// operators, if they are in one.
	// +optional
	Region string `json:"region,omitempty"`

	// CheckpointStore of the Job, copied for PEs of a consistent region.
	// +optional
	CheckpointStore *CheckpointStore `json:"checkpointStore,omitempty"`

	// Imports are the Import objects of the PE's import operators.
	// +listType=atomic
	// +optional
	Imports []string `json:"imports,omitempty"`

	// ConfigHash identifies the PE's configuration (set for Jobs with
	// parallel regions, whose PE configurations change with a width). A pod
	// started from another configuration is replaced.
	// +optional
	ConfigHash string `json:"configHash,omitempty"`
}

// PEPlacement is the placement of one PE, derived from its operators.
type PEPlacement struct {
	// HostPools whose nodes the PE may run on (all of them must match).
	// +listType=set
	// +optional
	HostPools []string `json:"hostPools,omitempty"`
	// Colocate tags: PEs sharing a tag run on one node.
	// +listType=set
	// +optional
	Colocate []string `json:"colocate,omitempty"`
	// Exlocate tags: PEs sharing a tag run on different nodes.
	// +listType=set
	// +optional
	Exlocate []string `json:"exlocate,omitempty"`
}

// Connectivity of a PE: whether all its input and output connections are up,
// as its pod's readiness reports it.
// +kubebuilder:validation:Enum=Unknown;Connected;Disconnected
type Connectivity string

const (
	ConnectivityUnknown      Connectivity = "Unknown"
	ConnectivityConnected    Connectivity = "Connected"
	ConnectivityDisconnected Connectivity = "Disconnected"
)

// ProcessingElementStatus is what the platform observed of the PE's pod.
type ProcessingElementStatus struct {
	// ObservedGeneration is the generation this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// PodName of the pod of the current launch.
	// +optional
	PodName string `json:"podName,omitempty"`
	// PodLaunch is the launch count the observed pod was created for.
	// +optional
	PodLaunch int32 `json:"podLaunch,omitempty"`
	// PodPhase of that pod.
	// +optional
	PodPhase corev1.PodPhase `json:"podPhase,omitempty"`
	// NodeName the pod runs on.
	// +optional
	NodeName string `json:"nodeName,omitempty"`
	// Connectivity of the PE, from the pod's readiness.
	// +optional
	Connectivity Connectivity `json:"connectivity,omitempty"`
	// Restarts counts the in-place restarts of the current launch's PE
	// container (the kubelet's restartCount): a failed PE process is
	// restarted in its pod when the restart policy says restartFailed.
	// Always written, so that kubectl's Restarts column shows 0, not "".
	// +optional
	Restarts int32 `json:"restarts"`
	// Region is the consistent-region progress the current pod reported
	// (annotation streams.sluice.dev/region-progress).
	// +optional
	Region *RegionProgress `json:"region,omitempty"`
	// Conditions: Connected.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// ProcessingElement is a process of fused operators; it runs as one pod.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:path=streamspes,singular=streamspe,shortName=spe,categories=streams
// +kubebuilder:printcolumn:name="Job",type=string,JSONPath=`.spec.jobName`
// +kubebuilder:printcolumn:name="Launches",type=integer,JSONPath=`.spec.launchCount`
// +kubebuilder:printcolumn:name="Restarts",type=integer,JSONPath=`.status.restarts`
// +kubebuilder:printcolumn:name="Connectivity",type=string,JSONPath=`.status.connectivity`
// +kubebuilder:printcolumn:name="Pod Phase",type=string,JSONPath=`.status.podPhase`
// +kubebuilder:printcolumn:name="Node",type=string,JSONPath=`.status.nodeName`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ProcessingElement struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   ProcessingElementSpec   `json:"spec"`
	Status ProcessingElementStatus `json:"status,omitempty"`
}

// ProcessingElementList is a list of ProcessingElements.
//
// +kubebuilder:object:root=true
type ProcessingElementList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ProcessingElement `json:"items"`
}

func init() { SchemeBuilder.Register(&ProcessingElement{}, &ProcessingElementList{}) }
