package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ExportSpec is a stream a Job offers to other Jobs of its namespace.
type ExportSpec struct {
	// JobName owning the export.
	JobName string `json:"jobName"`
	// Operator is the export operator.
	Operator string `json:"operator"`
	// StreamName the stream is exported under.
	// +optional
	StreamName string `json:"streamName,omitempty"`
	// Properties imports select by.
	// +optional
	Properties map[string]string `json:"properties,omitempty"`
	// PE serving the stream, and its PE port importers connect to.
	PE   string `json:"pe"`
	Port int32  `json:"port"`
}

// ExportStatus of an exported stream.
type ExportStatus struct {
	// Importers is how many Imports the broker matched with this export.
	// +optional
	Importers int32 `json:"importers,omitempty"`
}

// Export is a stream offered to other Jobs.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:path=streamsexports,singular=streamsexport,shortName=sexp,categories=streams
// +kubebuilder:printcolumn:name="Job",type=string,JSONPath=`.spec.jobName`
// +kubebuilder:printcolumn:name="Stream",type=string,JSONPath=`.spec.streamName`
// +kubebuilder:printcolumn:name="Importers",type=integer,JSONPath=`.status.importers`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Export struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   ExportSpec   `json:"spec,omitempty"`
	Status ExportStatus `json:"status,omitempty"`
}

// ExportList is a list of Exports.
//
// +kubebuilder:object:root=true
type ExportList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Export `json:"items"`
}

// ImportSpec is a Job's request for streams other Jobs export.
type ImportSpec struct {
	// JobName owning the import.
	JobName string `json:"jobName"`
	// Operator is the import operator.
	Operator string `json:"operator"`
	// StreamName to import (exclusive with Subscription).
	// +optional
	StreamName string `json:"streamName,omitempty"`
	// Subscription is a label selector over exported streams' properties.
	// +optional
	Subscription string `json:"subscription,omitempty"`
	// Filter applied to imported tuples.
	// +optional
	Filter *ImportFilter `json:"filter,omitempty"`
	// PE running the import operator.
	PE string `json:"pe"`
}

// ImportedStream is an export the broker matched, and where to reach it.
type ImportedStream struct {
	// Export is the name of the Export object.
	Export string `json:"export"`
	// JobName of the exporting Job.
	JobName string `json:"jobName"`
	// Host and Port to connect to (the exporting PE's Service).
	Host string `json:"host"`
	Port int32  `json:"port"`
}

// ImportStatus says which exports an import is connected to.
type ImportStatus struct {
	// ObservedGeneration is the generation the match was made for.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Streams matched, by Export name.
	// +listType=map
	// +listMapKey=export
	// +optional
	Streams []ImportedStream `json:"streams,omitempty"`
	// Conditions: Matched.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// Import is a Job's subscription to exported streams.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:path=streamsimports,singular=streamsimport,shortName=simp,categories=streams
// +kubebuilder:printcolumn:name="Job",type=string,JSONPath=`.spec.jobName`
// +kubebuilder:printcolumn:name="Stream",type=string,JSONPath=`.spec.streamName`
// +kubebuilder:printcolumn:name="Subscription",type=string,JSONPath=`.spec.subscription`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Import struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   ImportSpec   `json:"spec,omitempty"`
	Status ImportStatus `json:"status,omitempty"`
}

// ImportList is a list of Imports.
//
// +kubebuilder:object:root=true
type ImportList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Import `json:"items"`
}

func init() {
	SchemeBuilder.Register(&Export{}, &ExportList{}, &Import{}, &ImportList{})
}
