package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ParallelRegionSpec is a running parallel region; users edit Width.
type ParallelRegionSpec struct {
	// JobName owning the region.
	JobName string `json:"jobName"`
	// Region name in the application.
	Region string `json:"region"`
	// Width is the wanted number of channels.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=256
	Width int32 `json:"width"`
}

// ParallelRegionStatus says which width runs.
type ParallelRegionStatus struct {
	// ObservedGeneration is the generation whose width the Job was last
	// re-planned for.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Width is the number of channels the Job's plan has now.
	// +optional
	Width int32 `json:"width,omitempty"`
	// Selector of the region's channel pods (for the scale subresource).
	// +optional
	Selector string `json:"selector,omitempty"`
	// RebalanceStarted is when the running width last began to change.
	// +optional
	RebalanceStarted *metav1.Time `json:"rebalanceStarted,omitempty"`
	// LastRebalanceDuration is how long the last completed width change
	// took, from the edit seen to every PE of the new plan connected.
	// +optional
	LastRebalanceDuration *metav1.Duration `json:"lastRebalanceDuration,omitempty"`
	// Conditions: Rebalanced (False while a width change runs or when one
	// cannot be honoured, with the reason).
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// ParallelRegion is a parallel region of a running Job. Scale it with
// `kubectl scale streamsparallelregion/<job>-<region> --replicas=N`.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:subresource:scale:specpath=.spec.width,statuspath=.status.width,selectorpath=.status.selector
// +kubebuilder:resource:path=streamsparallelregions,singular=streamsparallelregion,shortName=spr,categories=streams
// +kubebuilder:printcolumn:name="Job",type=string,JSONPath=`.spec.jobName`
// +kubebuilder:printcolumn:name="Wanted",type=integer,JSONPath=`.spec.width`
// +kubebuilder:printcolumn:name="Width",type=integer,JSONPath=`.status.width`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ParallelRegion struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   ParallelRegionSpec   `json:"spec,omitempty"`
	Status ParallelRegionStatus `json:"status,omitempty"`
}

// ParallelRegionList is a list of ParallelRegions.
//
// +kubebuilder:object:root=true
type ParallelRegionList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ParallelRegion `json:"items"`
}

func init() {
	SchemeBuilder.Register(&ParallelRegion{}, &ParallelRegionList{})
}
