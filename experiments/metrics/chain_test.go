package metrics

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"sluice.dev/sluice/platform/api/v1alpha1"
)

// Each step of the chain is the last of the Job's status.pes objects to
// reach it, from the Job's ADDED; a step not reached by all has no value.
func TestChain(t *testing.T) {
	valid := job(false)
	valid.Status.PEs = 2
	valid.Status.Conditions = []metav1.Condition{{Type: v1alpha1.ConditionValid, Status: metav1.ConditionTrue}}
	tr := &Trace{Namespace: "default", Job: "p", End: at(100), Events: []Event{
		ev(1, watch.Added, job(false)),
		ev(1.5, watch.Modified, valid),
		ev(2, watch.Added, pe(0, 0, "")),
		ev(2.2, watch.Added, pe(1, 0, "")),
		ev(2.4, watch.Modified, pe(0, 1, "")),
		ev(2.6, watch.Modified, pe(1, 1, "")),
		ev(3, watch.Added, pod("p-pe-0-1", "", corev1.PodPending, false)),
		ev(3.5, watch.Added, pod("p-pe-1-1", "n1", corev1.PodPending, false)),
		ev(4, watch.Modified, pod("p-pe-0-1", "n2", corev1.PodPending, false)),
		ev(5, watch.Modified, pod("p-pe-0-1", "n2", corev1.PodRunning, false)),
		ev(6, watch.Modified, pod("p-pe-1-1", "n1", corev1.PodRunning, true)),
		ev(7, watch.Modified, pod("p-pe-0-1", "n2", corev1.PodRunning, true)),
		ev(7.5, watch.Modified, pe(1, 1, v1alpha1.ConnectivityConnected)),
		// PE 0 never connects: no chain_connected.
	}}
	rows, err := tr.Compute(ChainSteps)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, r := range rows {
		got[r.Metric] = r.Value
	}
	want := map[string]float64{ChainValid: 0.5, ChainPEs: 1.2, ChainLaunched: 1.6, ChainPodsCreated: 2.5,
		ChainScheduled: 3, ChainRunning: 5, ChainReady: 6}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Error(diff)
	}
	// A baseline: bare pods, no Job; pod steps from the first pod's ADDED.
	bl := &Trace{Namespace: "default", Job: "p", End: at(100), Events: []Event{
		ev(10, watch.Added, pod("p-pe-0-1", "", corev1.PodPending, false)),
		ev(10.5, watch.Added, pod("p-pe-0-2", "", corev1.PodPending, false)),
		ev(11, watch.Modified, pod("p-pe-0-1", "n1", corev1.PodRunning, true)),
		ev(12, watch.Modified, pod("p-pe-0-2", "n1", corev1.PodRunning, true)),
	}}
	rows, err = bl.Compute([]string{ChainValid, ChainPodsCreated, ChainReady})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows[0].Metric != ChainPodsCreated || rows[0].Value != 0.5 || rows[1].Value != 2 {
		t.Errorf("baseline chain %+v", rows)
	}
}
