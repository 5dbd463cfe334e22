package v1alpha1

// Labels and annotations the platform puts on the objects it generates.
// They are the join keys of the causal chain: every watch that maps one
// kind's event to another kind's reconcile request reads one of these.
const (
	// LabelJob names the Job an object was generated for.
	LabelJob = "streams.sluice.dev/job"
	// LabelPE names the ProcessingElement a pod, Service or ConfigMap belongs to.
	LabelPE = "streams.sluice.dev/pe"
	// LabelLaunch is the PE launch count a pod was created for.
	LabelLaunch = "streams.sluice.dev/launch"
	// LabelRole says what a generated object is for (see Role* constants).
	LabelRole = "streams.sluice.dev/role"
	// LabelRegion names the ConsistentRegion object a PE belongs to.
	LabelRegion = "streams.sluice.dev/region"
	// AnnotationConfigHash on a PE pod is the PE's ConfigHash it started with.
	AnnotationConfigHash = "streams.sluice.dev/config-hash"
	// LabelColocatePrefix + group marks pods of a host colocation group.
	LabelColocatePrefix = "colocate.streams.sluice.dev/"
	// LabelExlocatePrefix + group marks pods of a host exlocation group.
	LabelExlocatePrefix = "exlocate.streams.sluice.dev/"
	// TaintPool is the taint key of nodes reserved for an exclusive host pool.
	TaintPool = "streams.sluice.dev/pool"

	RolePortTable = "port-table"
	RolePEConfig  = "pe-config"
	RolePEService = "pe-service"
	RolePEPod     = "pe-pod"
	RolePEAccess  = "pe-access" // ServiceAccount, Role and RoleBinding of a Job's PEs
	RoleRegion    = "consistent-region"
	RoleParallel  = "parallel-region"
)

// Well-known file names inside the generated ConfigMaps, mounted into PE pods.
const (
	// PEConfigKey is the key of the PE's subgraph in its ConfigMap.
	PEConfigKey = "pe.json"
	// PortTableKey is the key of the job's port table in the job ConfigMap.
	PortTableKey = "ports.json"
	// ConfigMountPath is where the PE ConfigMap is mounted in a PE pod.
	ConfigMountPath = "/etc/sluice/pe"
	// PortTableMountPath is where the job ConfigMap is mounted in a PE pod.
	PortTableMountPath = "/etc/sluice/job"
	// PEInputPortBase is the TCP port of PE input port 0; input port i listens on base+i.
	PEInputPortBase = 10000
	// PEHealthPort serves /healthz, /readyz and /metrics in a PE pod.
	PEHealthPort = 9090
)

// PEContainerName is the name of the PE runtime's container in a PE pod.
const PEContainerName = "pe"
