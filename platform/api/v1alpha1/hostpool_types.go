package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// HostPoolSpec is a named set of nodes that operators may be placed on.
type HostPoolSpec struct {
	// Name of the pool, unique within the Job.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`

	// NodeSelector selects the pool's nodes by their labels.
	// +kubebuilder:validation:MaxProperties=32
	// +optional
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`

	// Exclusive pools run only this platform's PEs of this pool: their nodes
	// carry the taint streams.sluice.dev/pool=<name>:NoSchedule, which only
	// the pool's PE pods tolerate.
	// +optional
	Exclusive bool `json:"exclusive,omitempty"`
}

// HostPoolStatus reports what the pool matches now.
type HostPoolStatus struct {
	// ObservedGeneration is the generation this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Nodes is the number of schedulable nodes the pool selects.
	// +optional
	Nodes int32 `json:"nodes"`
	// Conditions: Ready is true when the pool selects at least one node.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// HostPool is one of a Job's host pools, generated from the Job's placement.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:path=streamshostpools,singular=streamshostpool,shortName=shp,categories=streams
// +kubebuilder:printcolumn:name="Nodes",type=integer,JSONPath=`.status.nodes`
// +kubebuilder:printcolumn:name="Exclusive",type=boolean,JSONPath=`.spec.exclusive`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type HostPool struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   HostPoolSpec   `json:"spec"`
	Status HostPoolStatus `json:"status,omitempty"`
}

// HostPoolList is a list of HostPools.
//
// +kubebuilder:object:root=true
type HostPoolList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []HostPool `json:"items"`
}

func init() { SchemeBuilder.Register(&HostPool{}, &HostPoolList{}) }
