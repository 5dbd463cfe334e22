//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/app"
)

// A consistent region with the filesystem store and no claim checkpoints
// into a hostPath directory of the node, which the kubelet creates as root:
// the PE (not root) can write there because the pod's prepare-store init
// container gave the directory to the PE's user.
func TestFilesystemStoreOnHostPath(t *testing.T) {
	c := cluster(t)
	ctx := context.Background()
	ns := namespace(t, c, "e2e-fsstore")
	d := func(x time.Duration) *metav1.Duration { return &metav1.Duration{Duration: x} }
	j := &v1alpha1.Job{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "fs"},
		Spec: v1alpha1.JobSpec{
			Application: v1alpha1.Application{
				Operators: []v1alpha1.Operator{
					{Name: "src", Kind: v1alpha1.KindSource, Params: &v1alpha1.OperatorParams{Rate: ptr.To[int64](200), Keys: ptr.To[int64](8)}},
					{Name: "sum", Kind: v1alpha1.KindAggregate, Params: &v1alpha1.OperatorParams{WindowMillis: ptr.To[int64](1000), Function: "sum"}},
					{Name: "sink", Kind: v1alpha1.KindSink},
				},
				Streams: []v1alpha1.Stream{
					{From: v1alpha1.Endpoint{Operator: "src"}, To: v1alpha1.Endpoint{Operator: "sum"}},
					{From: v1alpha1.Endpoint{Operator: "sum"}, To: v1alpha1.Endpoint{Operator: "sink"}},
				},
				ConsistentRegions: []v1alpha1.ConsistentRegionDef{{Name: "main", Operators: []string{"src", "sum", "sink"},
					Trigger: v1alpha1.TriggerPeriodic, Period: d(time.Second)}},
			},
			Fusion:          v1alpha1.Fusion{Mode: v1alpha1.FusionPerOperator},
			CheckpointStore: &v1alpha1.CheckpointStore{Type: v1alpha1.StoreFilesystem, Path: "/checkpoints"},
		},
	}
	if err := c.Client.Create(ctx, j); err != nil {
		t.Fatal(err)
	}
	waitSubmitted(t, c, ns, "fs", submitTimeout)
	waitFor(t, 2*time.Minute, "three checkpoints in the hostPath store", func(ctx context.Context) (bool, string) {
		var cr v1alpha1.ConsistentRegion
		if err := c.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: app.RegionResourceName("fs", "main")}, &cr); err != nil {
			return false, err.Error()
		}
		st := cr.Status
		return st.LastCompletedSeq >= 3 && st.CheckpointBytes > 0, fmt.Sprintf("%s, last checkpoint %d, %d resets, %d bytes",
			st.State, st.LastCompletedSeq, st.Resets, st.CheckpointBytes)
	})
}
