package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// OperatorKind is one of the operators the PE runtime can run.
// +kubebuilder:validation:Enum=source;map;filter;aggregate;split;union;sink;export;import
type OperatorKind string

const (
	KindSource    OperatorKind = "source"
	KindMap       OperatorKind = "map"
	KindFilter    OperatorKind = "filter"
	KindAggregate OperatorKind = "aggregate"
	KindSplit     OperatorKind = "split"
	KindUnion     OperatorKind = "union"
	KindSink      OperatorKind = "sink"
	// KindExport offers its input stream to other Jobs (an Export resource).
	KindExport OperatorKind = "export"
	// KindImport receives streams other Jobs export (an Import resource).
	KindImport OperatorKind = "import"
)

// Application is a graph of operators joined by streams of tuples.
type Application struct {
	// Operators of the graph. Names are unique within the application.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=10000
	// +listType=map
	// +listMapKey=name
	Operators []Operator `json:"operators"`

	// Streams join an operator's output port to an operator's input port.
	// An output port may feed several streams; an input port may receive several.
	// +kubebuilder:validation:MaxItems=20000
	// +listType=atomic
	// +optional
	Streams []Stream `json:"streams,omitempty"`

	// ConsistentRegions are sets of operators whose state is checkpointed
	// together and restored together after a failure (exactly-once inside
	// the region). See docs/consistent-regions.md.
	// +kubebuilder:validation:MaxItems=64
	// +listType=map
	// +listMapKey=name
	// +optional
	ConsistentRegions []ConsistentRegionDef `json:"consistentRegions,omitempty"`

	// ParallelRegions replicate a part of the graph into width channels,
	// each a copy of the region's operators; tuples entering the region are
	// partitioned over the channels and the channels' outputs merged. The
	// running width is the ParallelRegion resource's, which users edit.
	// +kubebuilder:validation:MaxItems=64
	// +listType=map
	// +listMapKey=name
	// +optional
	ParallelRegions []ParallelRegionDef `json:"parallelRegions,omitempty"`
}

// MaxParallelWidth bounds the width of a parallel region.
const MaxParallelWidth = 256

// ParallelRegionDef declares a parallel region of the application.
type ParallelRegionDef struct {
	// Name of the region, a DNS label; the ParallelRegion resource is
	// <job>-<name>.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=40
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`

	// Operators replicated in each channel. They may not be sources: a
	// parallel region is fed by the streams that enter it.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=1000
	// +listType=set
	Operators []string `json:"operators"`

	// Width is the initial number of channels.
	// +kubebuilder:default=2
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=256
	// +optional
	Width int32 `json:"width,omitempty"`

	// PartitionBy says how entering tuples are spread over the channels:
	// by key (keyed state stays with its key) or round robin.
	// +kubebuilder:default=key
	// +kubebuilder:validation:Enum=key;roundRobin
	// +optional
	PartitionBy string `json:"partitionBy,omitempty"`
}

// RegionTrigger says what starts a consistent region's checkpoint.
// +kubebuilder:validation:Enum=periodic;operatorDriven
type RegionTrigger string

const (
	// TriggerPeriodic drains the region every period.
	TriggerPeriodic RegionTrigger = "periodic"
	// TriggerOperatorDriven drains when a source of the region asks (every
	// params.checkpointEvery tuples).
	TriggerOperatorDriven RegionTrigger = "operatorDriven"
)

// ConsistentRegionDef declares a consistent region of the application.
type ConsistentRegionDef struct {
	// Name of the region, a DNS label; the ConsistentRegion resource is
	// <job>-<name>.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=40
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`

	// Operators in the region. The region must be closed upstream: every
	// stream into one of its operators starts inside it.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=10000
	// +listType=set
	Operators []string `json:"operators"`

	// Trigger of checkpoints.
	// +kubebuilder:default=periodic
	// +optional
	Trigger RegionTrigger `json:"trigger,omitempty"`

	// Period between checkpoints of a periodic region.
	// +kubebuilder:default="5s"
	// +optional
	Period *metav1.Duration `json:"period,omitempty"`

	// DrainTimeout: a drain that takes longer becomes a reset.
	// +kubebuilder:default="30s"
	// +optional
	DrainTimeout *metav1.Duration `json:"drainTimeout,omitempty"`

	// ResetTimeout: a reset that takes longer is retried with a new epoch.
	// +kubebuilder:default="30s"
	// +optional
	ResetTimeout *metav1.Duration `json:"resetTimeout,omitempty"`

	// MaxConsecutiveResets before the region is marked Failed.
	// +kubebuilder:default=5
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	// +optional
	MaxConsecutiveResets int32 `json:"maxConsecutiveResets,omitempty"`
}

// Operator is one node of the application graph.
// +kubebuilder:validation:XValidation:rule="self.kind == 'split' || !has(self.params) || !has(self.params.outputs)",message="params.outputs is only valid for split"
// +kubebuilder:validation:XValidation:rule="self.kind == 'union' || !has(self.params) || !has(self.params.inputs)",message="params.inputs is only valid for union"
type Operator struct {
	// Name of the operator, a DNS label.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`

	// Kind of the operator.
	Kind OperatorKind `json:"kind"`

	// Params tune the operator; which fields apply depends on the kind.
	// +optional
	Params *OperatorParams `json:"params,omitempty"`

	// HostPool names a host pool of the Job's placement; the operator's PE
	// runs only on nodes of that pool.
	// +kubebuilder:validation:MaxLength=63
	// +optional
	HostPool string `json:"hostPool,omitempty"`

	// Colocate puts the PEs of every operator with the same tag on one node.
	// +kubebuilder:validation:MaxLength=40
	// +kubebuilder:validation:Pattern=`^([a-z0-9]([-a-z0-9]*[a-z0-9])?)?$`
	// +optional
	Colocate string `json:"colocate,omitempty"`

	// Exlocate puts the PEs of operators with the same tag on different nodes.
	// +kubebuilder:validation:MaxLength=40
	// +kubebuilder:validation:Pattern=`^([a-z0-9]([-a-z0-9]*[a-z0-9])?)?$`
	// +optional
	Exlocate string `json:"exlocate,omitempty"`
}

// OperatorParams tune an operator. Fields that do not apply to the
// operator's kind are ignored by the runtime.
type OperatorParams struct {
	// Rate of a source in tuples per second; 0 means as fast as possible.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100000000
	// +optional
	Rate *int64 `json:"rate,omitempty"`

	// TupleSize is a source's payload size in bytes.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1048576
	// +optional
	TupleSize *int32 `json:"tupleSize,omitempty"`

	// Keys is the key cardinality of a source (keys 0..Keys-1).
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100000000
	// +optional
	Keys *int64 `json:"keys,omitempty"`

	// Count of tuples a source emits before it stops; 0 means unbounded.
	// +kubebuilder:validation:Minimum=0
	// +optional
	Count *int64 `json:"count,omitempty"`

	// Work is the CPU work a map does per tuple, in hashing rounds.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000000
	// +optional
	Work *int32 `json:"work,omitempty"`

	// KeepPercent is the share of tuples a filter lets through, by a hash of
	// the tuple's source sequence number (deterministic).
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	// +optional
	KeepPercent *int32 `json:"keepPercent,omitempty"`

	// WindowMillis is an aggregate's tumbling window length.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=86400000
	// +optional
	WindowMillis *int64 `json:"windowMillis,omitempty"`

	// Function an aggregate applies to each key's values in a window.
	// +kubebuilder:validation:Enum=count;sum;min;max;avg
	// +optional
	Function string `json:"function,omitempty"`

	// Outputs is the number of output ports of a split (default 2).
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1024
	// +optional
	Outputs *int32 `json:"outputs,omitempty"`

	// SplitBy chooses a split's port: by key hash or round robin.
	// +kubebuilder:validation:Enum=key;roundRobin
	// +optional
	SplitBy string `json:"splitBy,omitempty"`

	// Inputs is the number of input ports of a union (default 2).
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1024
	// +optional
	Inputs *int32 `json:"inputs,omitempty"`

	// CheckpointEvery: a source of an operator-driven consistent region asks
	// for a checkpoint every this many tuples.
	// +kubebuilder:validation:Minimum=1
	// +optional
	CheckpointEvery *int64 `json:"checkpointEvery,omitempty"`

	// StreamName an export offers its stream under, or an import asks for.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	StreamName string `json:"streamName,omitempty"`

	// Properties of an exported stream, which imports select by.
	// +kubebuilder:validation:MaxProperties=32
	// +optional
	Properties map[string]string `json:"properties,omitempty"`

	// Subscription of an import: a Kubernetes label selector over the
	// properties of exported streams (for example "kind=trades,region in (eu,us)").
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	Subscription string `json:"subscription,omitempty"`

	// Filter of an import: only tuples whose key modulo KeyModulo is one of
	// KeyRemainders pass.
	// +optional
	Filter *ImportFilter `json:"filter,omitempty"`
}

// ImportFilter keeps the tuples of some keys.
type ImportFilter struct {
	// +kubebuilder:validation:Minimum=1
	KeyModulo int64 `json:"keyModulo"`
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=1024
	// +listType=set
	KeyRemainders []int64 `json:"keyRemainders"`
}

// Endpoint is a port of an operator.
type Endpoint struct {
	// Operator name.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	Operator string `json:"operator"`
	// Port index, from 0.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1023
	// +optional
	Port int32 `json:"port,omitempty"`
}

// Stream carries tuples from an output port to an input port.
type Stream struct {
	From Endpoint `json:"from"`
	To   Endpoint `json:"to"`
}

// FusionMode says how operators are fused into PEs.
// +kubebuilder:validation:Enum=perOperator;target;manual
type FusionMode string

const (
	// FusionPerOperator makes one PE per operator.
	FusionPerOperator FusionMode = "perOperator"
	// FusionTarget fuses operators into TargetPEs PEs along the graph.
	FusionTarget FusionMode = "target"
	// FusionManual takes the PEs from Groups; operators in no group get a PE each.
	FusionManual FusionMode = "manual"
)

// Fusion says how operators become processing elements.
// +kubebuilder:validation:XValidation:rule="self.mode != 'target' || (has(self.targetPEs) && self.targetPEs > 0)",message="fusion mode target needs targetPEs > 0"
// +kubebuilder:validation:XValidation:rule="self.mode == 'manual' || !has(self.groups) || size(self.groups) == 0",message="fusion groups are only valid with mode manual"
type Fusion struct {
	// Mode of fusion.
	// +kubebuilder:default=perOperator
	// +optional
	Mode FusionMode `json:"mode,omitempty"`

	// TargetPEs is the number of PEs of mode target.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=10000
	// +optional
	TargetPEs *int32 `json:"targetPEs,omitempty"`

	// Groups of mode manual: each group's operators become one PE.
	// +kubebuilder:validation:MaxItems=10000
	// +listType=atomic
	// +optional
	Groups []FusionGroup `json:"groups,omitempty"`
}

// FusionGroup is a set of operators fused into one PE.
type FusionGroup struct {
	// +kubebuilder:validation:MinItems=1
	// +listType=set
	Operators []string `json:"operators"`
}

// Placement declares the host pools operators may name.
type Placement struct {
	// HostPools of this Job.
	// +kubebuilder:validation:MaxItems=64
	// +listType=map
	// +listMapKey=name
	// +optional
	HostPools []HostPoolSpec `json:"hostPools,omitempty"`
}
