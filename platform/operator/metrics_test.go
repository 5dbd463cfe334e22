package operator

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"sluice.dev/sluice/platform/api/v1alpha1"
)

// A unit test over controller-runtime's fake client (an in-memory reader
// standing in for the manager's cache).
func TestRegionCollectorReadsStatus(t *testing.T) {
	cr := &v1alpha1.ConsistentRegion{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "j-main"},
		Spec: v1alpha1.ConsistentRegionSpec{JobName: "j", Region: "main"},
		Status: v1alpha1.ConsistentRegionStatus{State: v1alpha1.RegionHealthy, LastCompletedSeq: 7, Resets: 2, Checkpoints: 7,
			CheckpointBytes: 4096, LastDrainDuration: &metav1.Duration{Duration: 250 * time.Millisecond},
			LastResetDuration: &metav1.Duration{Duration: 1500 * time.Millisecond}}}
	pr := &v1alpha1.ParallelRegion{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "j-agg"},
		Spec:   v1alpha1.ParallelRegionSpec{JobName: "j", Region: "agg", Width: 4},
		Status: v1alpha1.ParallelRegionStatus{Width: 2, LastRebalanceDuration: &metav1.Duration{Duration: 3 * time.Second}}}
	c := fake.NewClientBuilder().WithScheme(Scheme()).WithObjects(cr, pr).Build()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(NewRegionCollector(c)); err != nil {
		t.Fatal(err)
	}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			v := m.GetGauge().GetValue() + m.GetCounter().GetValue()
			got[f.GetName()+"{"+strings.Join(labels, ",")+"}"] = v
		}
	}
	main, agg := "{job=j,namespace=ns,region=main}", "{job=j,namespace=ns,region=agg}"
	want := map[string]float64{
		"sluice_region_last_checkpoint_seq" + main:                          7,
		"sluice_region_resets_total" + main:                                 2,
		"sluice_region_checkpoints_total" + main:                            7,
		"sluice_region_checkpoint_bytes" + main:                             4096,
		"sluice_region_last_drain_seconds" + main:                           0.25,
		"sluice_region_last_reset_seconds" + main:                           1.5,
		"sluice_region_state{job=j,namespace=ns,region=main,state=Healthy}": 1,
		"sluice_parallel_width" + agg:                                       2,
		"sluice_parallel_wanted_width" + agg:                                4,
		"sluice_parallel_last_rebalance_seconds" + agg:                      3,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("metrics (-want +got):\n%s", diff)
	}
}
