package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// JobSpec is a streaming application and how to run it.
//
// The immutability rule guards every optional section with has(): users
// leave sections out, and comparing a field that one side lacks is an
// evaluation error ("no such key") that would refuse every later write of
// the Job, status included. fusion and placement are defaulted, so a stored
// Job always has both; the guards keep the rule total anyway.
// +kubebuilder:validation:XValidation:rule="self.application == oldSelf.application && has(self.fusion) == has(oldSelf.fusion) && (!has(self.fusion) || self.fusion == oldSelf.fusion) && has(self.placement) == has(oldSelf.placement) && (!has(self.placement) || self.placement == oldSelf.placement)",message="the application, fusion and placement of a Job cannot change after submission; delete and re-create the Job"
type JobSpec struct {
	// Application is the operator graph.
	Application Application `json:"application"`

	// Fusion says how operators are fused into processing elements.
	// +kubebuilder:default={mode: perOperator}
	// +optional
	Fusion Fusion `json:"fusion,omitempty"`

	// Placement declares host pools for the operators.
	// +kubebuilder:default={}
	// +optional
	Placement Placement `json:"placement,omitempty"`

	// PE is the template of every PE of the Job.
	// +kubebuilder:default={}
	// +optional
	PE PETemplate `json:"pe,omitempty"`

	// SubmissionTimeout is how long a submission may take before the Job is
	// marked Failed (its children stay for inspection; see Retry).
	// +kubebuilder:default="5m"
	// +optional
	SubmissionTimeout *metav1.Duration `json:"submissionTimeout,omitempty"`

	// CheckpointStore is where the PEs of consistent regions write their
	// checkpoints; required when the application has consistent regions.
	// +optional
	CheckpointStore *CheckpointStore `json:"checkpointStore,omitempty"`

	// Retry asks the operator to start the submission again: raising it
	// above status.attempt foreground-deletes the Job's processing elements
	// and re-creates them.
	// +kubebuilder:validation:Minimum=0
	// +optional
	Retry int32 `json:"retry,omitempty"`
}

// CheckpointStoreType is a checkpoint store backend.
// +kubebuilder:validation:Enum=filesystem;s3
type CheckpointStoreType string

const (
	StoreFilesystem CheckpointStoreType = "filesystem"
	StoreS3         CheckpointStoreType = "s3"
)

// CheckpointStore configures the checkpoint store of a Job's PEs.
// +kubebuilder:validation:XValidation:rule="self.type != 's3' || (has(self.endpoint) && has(self.bucket))",message="an s3 store needs endpoint and bucket"
// +kubebuilder:validation:XValidation:rule="self.type != 'filesystem' || has(self.path)",message="a filesystem store needs path"
type CheckpointStore struct {
	// Type of store.
	Type CheckpointStoreType `json:"type"`

	// Path of a filesystem store inside the PE container.
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	Path string `json:"path,omitempty"`

	// ClaimName of a PersistentVolumeClaim mounted at Path (filesystem
	// store). Without it Path is a hostPath directory of the node, which
	// only keeps checkpoints across pod replacements on a one-node cluster.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	ClaimName string `json:"claimName,omitempty"`

	// Endpoint of an S3-compatible service (host:port).
	// +kubebuilder:validation:MaxLength=512
	// +optional
	Endpoint string `json:"endpoint,omitempty"`

	// Bucket of an S3 store.
	// +kubebuilder:validation:MaxLength=63
	// +optional
	Bucket string `json:"bucket,omitempty"`

	// Prefix of every object key.
	// +kubebuilder:validation:MaxLength=256
	// +optional
	Prefix string `json:"prefix,omitempty"`

	// Insecure uses plain HTTP to the S3 endpoint.
	// +optional
	Insecure bool `json:"insecure,omitempty"`

	// CreateBucket lets the PEs create the S3 bucket when it does not
	// exist (the credentials must allow it); without it a missing bucket
	// is an error the PE reports.
	// +optional
	CreateBucket bool `json:"createBucket,omitempty"`

	// CredentialsSecret names a Secret with keys accessKey and secretKey for
	// the S3 store; they reach the PE as environment variables.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	CredentialsSecret string `json:"credentialsSecret,omitempty"`
}

// PETemplate configures the pods of a Job's processing elements.
type PETemplate struct {
	// Image of the PE runtime; empty means the operator's default.
	// +kubebuilder:validation:MaxLength=512
	// +optional
	Image string `json:"image,omitempty"`

	// ImagePullPolicy of PE containers.
	// +kubebuilder:default=IfNotPresent
	// +kubebuilder:validation:Enum=Always;IfNotPresent;Never
	// +optional
	ImagePullPolicy corev1.PullPolicy `json:"imagePullPolicy,omitempty"`

	// Resources of each PE container.
	// +optional
	Resources corev1.ResourceRequirements `json:"resources,omitempty"`

	// RestartPolicy says which ended pods are replaced under the same PE.
	// Omitted, it is DefaultRestartPolicy (a pointer, so that a client that
	// leaves it out gets the default rather than three explicit falses).
	// +kubebuilder:default={restartFailed: true, restartCompleted: false, restartDeleted: true}
	// +optional
	RestartPolicy *PERestartPolicy `json:"restartPolicy,omitempty"`

	// TerminationGracePeriodSeconds of PE pods.
	// +kubebuilder:default=10
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=3600
	// +optional
	TerminationGracePeriodSeconds *int64 `json:"terminationGracePeriodSeconds,omitempty"`
}

// DefaultRestartPolicy replaces failed and deleted pods, not completed ones.
var DefaultRestartPolicy = PERestartPolicy{RestartFailed: true, RestartCompleted: false, RestartDeleted: true}

// EffectiveRestartPolicy is the template's policy, or the default when it
// names none (API servers apply the CRD default; fakes and the simulator
// do not, so the code applies the same one).
func (t *PETemplate) EffectiveRestartPolicy() PERestartPolicy {
	if t.RestartPolicy == nil {
		return DefaultRestartPolicy
	}
	return *t.RestartPolicy
}

// PERestartPolicy mirrors the Streams PE restart rules: which ended PEs the
// platform runs again. A failed process is restarted in its pod; other
// ended pods are replaced by raising the PE's launch count.
type PERestartPolicy struct {
	// RestartFailed restarts a failed PE process in place (the pod's
	// restartPolicy is OnFailure; the PE's status.restarts counts it), and
	// replaces pods that failed as a whole (evicted, or lost with a node).
	// +optional
	RestartFailed bool `json:"restartFailed"`
	// RestartCompleted replaces pods whose PE exited successfully.
	// +optional
	RestartCompleted bool `json:"restartCompleted"`
	// RestartDeleted replaces pods deleted from outside the platform.
	// +optional
	RestartDeleted bool `json:"restartDeleted"`
}

// JobPhase is the submission state of a Job.
// +kubebuilder:validation:Enum=Pending;Invalid;Submitting;Submitted;Failed;Retrying
type JobPhase string

const (
	JobPending    JobPhase = "Pending"
	JobInvalid    JobPhase = "Invalid"
	JobSubmitting JobPhase = "Submitting"
	JobSubmitted  JobPhase = "Submitted"
	JobFailed     JobPhase = "Failed"
	JobRetrying   JobPhase = "Retrying"
)

// Job condition types.
const (
	// ConditionValid is false when the application cannot be run as written.
	ConditionValid = "Valid"
	// ConditionSubmitted is true when every PE's pod runs and is connected.
	ConditionSubmitted = "Submitted"
)

// JobStatus is the observed state of a Job.
type JobStatus struct {
	// ObservedGeneration is the generation this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Phase summarises the conditions.
	// +optional
	Phase JobPhase `json:"phase,omitempty"`
	// PEs is the number of processing elements of the fused application.
	// +optional
	PEs int32 `json:"pes,omitempty"`
	// ConnectedPEs is the number of PEs whose pod runs and is connected.
	// +optional
	ConnectedPEs int32 `json:"connectedPEs,omitempty"`
	// Attempt is the retry request the current children were created for.
	// +optional
	Attempt int32 `json:"attempt,omitempty"`
	// SubmittingSince is when the current submission attempt started.
	// +optional
	SubmittingSince *metav1.Time `json:"submittingSince,omitempty"`
	// Conditions: Valid, Submitted.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// Job is a running streaming application. Every object the platform makes
// for it carries an owner reference to it.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:path=streamsjobs,singular=streamsjob,shortName=sjob,categories=streams
// +kubebuilder:printcolumn:name="Status",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="PEs",type=integer,JSONPath=`.status.pes`
// +kubebuilder:printcolumn:name="Connected",type=integer,JSONPath=`.status.connectedPEs`
// +kubebuilder:printcolumn:name="Generation",type=integer,JSONPath=`.metadata.generation`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Job struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   JobSpec   `json:"spec"`
	Status JobStatus `json:"status,omitempty"`
}

// JobList is a list of Jobs.
//
// +kubebuilder:object:root=true
type JobList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Job `json:"items"`
}

func init() { SchemeBuilder.Register(&Job{}, &JobList{}) }
