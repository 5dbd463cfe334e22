package main

import (
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"sluice.dev/sluice/platform/api/v1alpha1"
)

// RegionStateKiB are the aggregate state sizes of the region pipelines, in
// KiB (the checkpoint experiment's sweep: 1 KiB to 64 MiB, x4 steps).
var RegionStateKiB = []int64{1, 4, 16, 64, 256, 1024, 4096, 16384, 65536}

// AggregateBytesPerKey is the size of one key of the runtime aggregate's
// JSON snapshot (its running count, sum, min, max and time under the key),
// as sim/checkpointing's bytesPerKey measures it.
const AggregateBytesPerKey = 62

// RegionStores are the checkpoint stores the region pipelines are generated
// for (region-<kib>k-<store>.yaml).
var RegionStores = []v1alpha1.CheckpointStoreType{v1alpha1.StoreFilesystem, v1alpha1.StoreS3}

// The S3 store of the region pipelines: a MinIO Service "minio" in the
// Job's namespace with its credentials in the Secret "minio-credentials".
// A backend that runs the Job provides them (the kind backend deploys
// MinIO into each trial's namespace and writes what it deployed over
// endpoint and credentialsSecret); the simulator only reads the type.
const (
	RegionS3Endpoint = "minio:9000"
	RegionS3Bucket   = "sluice-checkpoints"
	RegionS3Secret   = "minio-credentials"
)

// RegionPipeline is src -> agg -> sink in one consistent region, a PE per
// operator, checkpointing every 5 s to the given store. The source's
// key count makes the aggregate's state about stateKiB once every key is in
// its (hour-long, so never closing during a trial) window; the source emits
// keys/40 tuples per second (at least 1000), so that the window has seen
// nearly every key (1-e^-3) two minutes after the start.
func RegionPipeline(stateKiB int64, store v1alpha1.CheckpointStoreType) *v1alpha1.Job {
	keys := max(stateKiB*1024/AggregateBytesPerKey, 1)
	rate := max(keys/40, 1000)
	j := job(fmt.Sprintf("region-%dk-%s", stateKiB, store))
	// A 64 MiB snapshot is several times that in Go maps while it is built.
	mem := resource.MustParse("768Mi")
	j.Spec.PE.Resources.Requests[corev1.ResourceMemory] = mem
	j.Spec.PE.Resources.Limits[corev1.ResourceMemory] = mem
	j.Spec.Application.Operators = []v1alpha1.Operator{
		{Name: "src", Kind: v1alpha1.KindSource, Params: &v1alpha1.OperatorParams{
			Rate: ptr.To(rate), TupleSize: ptr.To[int32](16), Keys: ptr.To(keys)}},
		{Name: "agg", Kind: v1alpha1.KindAggregate, Params: &v1alpha1.OperatorParams{
			WindowMillis: ptr.To[int64](3600000), Function: "sum"}},
		{Name: "sink", Kind: v1alpha1.KindSink},
	}
	j.Spec.Application.Streams = []v1alpha1.Stream{
		{From: v1alpha1.Endpoint{Operator: "src"}, To: v1alpha1.Endpoint{Operator: "agg"}},
		{From: v1alpha1.Endpoint{Operator: "agg"}, To: v1alpha1.Endpoint{Operator: "sink"}},
	}
	j.Spec.Application.ConsistentRegions = []v1alpha1.ConsistentRegionDef{{
		Name: "main", Operators: []string{"src", "agg", "sink"}, Trigger: v1alpha1.TriggerPeriodic,
		Period: &metav1.Duration{Duration: 5 * time.Second},
	}}
	j.Spec.CheckpointStore = &v1alpha1.CheckpointStore{Type: v1alpha1.StoreFilesystem, Path: "/var/lib/sluice/checkpoints"}
	if store == v1alpha1.StoreS3 {
		j.Spec.CheckpointStore = &v1alpha1.CheckpointStore{Type: v1alpha1.StoreS3, Endpoint: RegionS3Endpoint,
			Bucket: RegionS3Bucket, Insecure: true, CredentialsSecret: RegionS3Secret}
	}
	j.Spec.Fusion = v1alpha1.Fusion{Mode: v1alpha1.FusionPerOperator}
	return j
}
