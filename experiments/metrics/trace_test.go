package metrics

import (
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"sluice.dev/sluice/experiments/results"
	"sluice.dev/sluice/platform/api/v1alpha1"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func at(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }

func job(submitted bool) *v1alpha1.Job {
	j := &v1alpha1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "p"}}
	if submitted {
		j.Status.Conditions = []metav1.Condition{{Type: v1alpha1.ConditionSubmitted, Status: metav1.ConditionTrue}}
	}
	return j
}

func labels(role string) map[string]string {
	return map[string]string{v1alpha1.LabelJob: "p", v1alpha1.LabelRole: role}
}

func pod(name, node string, phase corev1.PodPhase, ready bool) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, Labels: labels(v1alpha1.RolePEPod)}}
	p.Spec.NodeName = node
	p.Status.Phase = phase
	if ready {
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	}
	return p
}

// started sets the pod's container as started s seconds after t0.
func started(p *corev1.Pod, s float64) *corev1.Pod {
	p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "pe",
		State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(at(s))}}}}
	return p
}

func pe(index int, launch int32, conn v1alpha1.Connectivity) *v1alpha1.ProcessingElement {
	p := &v1alpha1.ProcessingElement{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "p-pe-" + string(rune('0'+index)),
		Labels: labels("")}}
	p.Spec.LaunchCount = launch
	p.Status.PodLaunch = launch
	p.Status.Connectivity = conn
	return p
}

func ev(s float64, typ watch.EventType, o client.Object) Event { return Stamp(at(s), typ, o) }

func TestSubmissionAndPodPhases(t *testing.T) {
	tr := &Trace{Namespace: "default", Job: "p", End: at(100), Events: []Event{
		// Out of order on purpose: Compute sorts by time.
		ev(9, watch.Modified, job(true)),
		ev(1, watch.Added, job(false)),
		ev(2, watch.Added, pod("p-pe-0-0", "", corev1.PodPending, false)),
		ev(2.5, watch.Modified, pod("p-pe-0-0", "n1", corev1.PodPending, false)),
		ev(4, watch.Modified, started(pod("p-pe-0-0", "n1", corev1.PodRunning, false), 3)),
		ev(7, watch.Modified, pod("p-pe-0-0", "n1", corev1.PodRunning, true)),
		ev(3, watch.Added, pod("p-pe-1-0", "", corev1.PodPending, false)),
		// A pod of another job and a non-PE object are ignored.
		ev(3, watch.Added, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "other",
			Labels: map[string]string{v1alpha1.LabelJob: "q", v1alpha1.LabelRole: v1alpha1.RolePEPod}}}),
	}}
	rows, err := tr.Compute([]string{Submission, PodCreateToSchedule, PodScheduleToRun, PodRunToWatch, PodRunToReady, PodStartup, PendingPods})
	if err != nil {
		t.Fatal(err)
	}
	want := []results.Row{
		{Metric: Submission, Value: 8, Unit: "s"},
		{Metric: PodCreateToSchedule, Subject: "p-pe-0-0", Value: 0.5, Unit: "s"},
		{Metric: PodScheduleToRun, Subject: "p-pe-0-0", Value: 1.5, Unit: "s"},
		{Metric: PodRunToWatch, Subject: "p-pe-0-0", Value: 1, Unit: "s"},
		{Metric: PodRunToReady, Subject: "p-pe-0-0", Value: 3, Unit: "s"},
		{Metric: PodStartup, Subject: "p-pe-0-0", Value: 5, Unit: "s"},
		{Metric: PendingPods, Value: 1, Unit: "count"},
	}
	if diff := cmp.Diff(want, rows); diff != "" {
		t.Error(diff)
	}
	// Never submitted: no submission row rather than a made-up value.
	tr.Events = tr.Events[1:]
	rows, _ = tr.Compute([]string{Submission})
	if len(rows) != 0 {
		t.Errorf("rows %v for a Job never submitted", rows)
	}
	if _, err := tr.Compute([]string{"nope"}); err == nil {
		t.Error("unknown metric accepted")
	}
}

func TestDataPlane(t *testing.T) {
	tr := &Trace{Namespace: "default", Job: "p", End: at(20),
		Actions: []Action{{Time: at(10), Kind: ActionObserve, PE: -1}},
		Samples: []Sample{
			{Time: at(5), Name: SinkTuples, Subject: "sink", Value: 400},
			{Time: at(10), Name: SinkTuples, Subject: "sink", Value: 1000},
			{Time: at(10), Name: SinkTuples, Subject: "sink2", Value: 50},
			{Time: at(15), Name: SinkTuples, Subject: "sink", Value: 6000},
			{Time: at(20), Name: SinkTuples, Subject: "sink", Value: 11000},
			{Time: at(20), Name: SinkTuples, Subject: "sink2", Value: 1050},
		}}
	for i := 1; i <= 100; i++ {
		tr.Samples = append(tr.Samples, Sample{Time: at(10 + float64(i)/10), Name: TupleLatency, Subject: "sink", Value: float64(i) / 1000})
	}
	tr.Samples = append(tr.Samples, Sample{Time: at(9), Name: TupleLatency, Subject: "sink", Value: 99}) // before the window
	// A heavy batch: 300 tuples at 0.5 ms outweigh the 100 single ones, so
	// the median moves to it while p99 stays in the single tuples' tail.
	tr.Samples = append(tr.Samples, Sample{Time: at(12), Name: TupleLatency, Subject: "sink", Value: 0.0005, Weight: 300})
	rows, err := tr.Compute([]string{Throughput, TupleLatencyP50, TupleLatencyP99})
	if err != nil {
		t.Fatal(err)
	}
	want := []results.Row{
		{Metric: Throughput, Value: (11000 + 1050 - 1050) / 10.0, Unit: "tuples/s"},
		{Metric: TupleLatencyP50, Value: 0.5, Unit: "ms"},
		{Metric: TupleLatencyP99, Value: 96, Unit: "ms"},
	}
	if diff := cmp.Diff(want, rows); diff != "" {
		t.Error(diff)
	}
	noSinks := *tr
	noSinks.Samples = slices.DeleteFunc(slices.Clone(tr.Samples), func(s Sample) bool { return s.Name == SinkTuples })
	if rows, _ := noSinks.Compute([]string{Throughput}); len(rows) != 0 {
		t.Errorf("throughput without sink samples: %v", rows)
	}
	noSinks.DataPlane = true
	rows, _ = noSinks.Compute([]string{Throughput})
	if diff := cmp.Diff([]results.Row{{Metric: Throughput, Value: 0, Unit: "tuples/s"}}, rows); diff != "" {
		t.Errorf("measured data plane without deliveries: %s", diff)
	}
	tr.Actions = nil
	if rows, _ := tr.Compute([]string{Throughput}); len(rows) != 0 {
		t.Errorf("throughput without a window: %v", rows)
	}
}

func TestGC(t *testing.T) {
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "p-ports", Labels: labels(v1alpha1.RolePortTable)}}
	base := []Event{
		ev(0, watch.Added, job(true)),
		ev(0, watch.Added, cm),
		ev(0, watch.Added, pe(0, 1, v1alpha1.ConnectivityConnected)),
		ev(0, watch.Added, pod("p-pe-0-1", "n", corev1.PodRunning, true)),
	}
	tr := &Trace{Namespace: "default", Job: "p", Actions: []Action{{Time: at(10), Kind: ActionDeleteJob, PE: -1}},
		Events: append(base,
			ev(10.5, watch.Deleted, job(true)),
			ev(11, watch.Deleted, cm),
			ev(12, watch.Deleted, pe(0, 1, v1alpha1.ConnectivityConnected)),
			ev(14.25, watch.Deleted, pod("p-pe-0-1", "n", corev1.PodRunning, true)),
		)}
	rows, _ := tr.Compute([]string{GCDependents, GCJob})
	want := []results.Row{{Metric: GCDependents, Value: 4.25, Unit: "s"}, {Metric: GCJob, Value: 0.5, Unit: "s"}}
	if diff := cmp.Diff(want, rows); diff != "" {
		t.Error(diff)
	}
	// A dependent that outlives the trace: gc_dependents is not measured.
	tr.Events = tr.Events[:len(tr.Events)-1]
	rows, _ = tr.Compute([]string{GCDependents, GCJob})
	if diff := cmp.Diff([]results.Row{{Metric: GCJob, Value: 0.5, Unit: "s"}}, rows); diff != "" {
		t.Error(diff)
	}
}

func TestRecovery(t *testing.T) {
	tr := &Trace{Namespace: "default", Job: "p",
		Actions: []Action{{Time: at(30), Kind: "deletePod", PE: 1}},
		Events: []Event{
			ev(1, watch.Added, pe(1, 0, v1alpha1.ConnectivityUnknown)),
			ev(5, watch.Modified, pe(1, 1, v1alpha1.ConnectivityConnected)),
			// Connected again but with the old launch: not a recovery.
			ev(30.5, watch.Modified, pe(1, 1, v1alpha1.ConnectivityConnected)),
			ev(31, watch.Modified, pe(1, 1, v1alpha1.ConnectivityDisconnected)),
			ev(33, watch.Modified, pe(1, 2, v1alpha1.ConnectivityDisconnected)),
			ev(36, watch.Modified, pe(1, 2, v1alpha1.ConnectivityConnected)),
			ev(37, watch.Modified, pe(2, 1, v1alpha1.ConnectivityDisconnected)),
		},
		Samples: []Sample{
			{Time: at(29), Name: SinkTuples, Subject: "sink", Value: 100},
			{Time: at(35), Name: SinkTuples, Subject: "sink", Value: 120},
			{Time: at(36.5), Name: SinkTuples, Subject: "sink", Value: 120},
			{Time: at(37.5), Name: SinkTuples, Subject: "sink", Value: 121},
		}}
	rows, err := tr.Compute([]string{FaultDetected, RecoveryConnected, RecoveryFlowing})
	if err != nil {
		t.Fatal(err)
	}
	want := []results.Row{
		{Metric: FaultDetected, Subject: "p-pe-1", Value: 1, Unit: "s"},
		{Metric: RecoveryConnected, Subject: "p-pe-1", Value: 6, Unit: "s"},
		{Metric: RecoveryFlowing, Subject: "p-pe-1", Value: 7.5, Unit: "s"},
	}
	if diff := cmp.Diff(want, rows); diff != "" {
		t.Error(diff)
	}
}

// pePod is PE p-pe-<index>'s pod with the given UID, PE container
// restarts and readiness.
func pePod(index int, uid string, restarts int32, ready bool) *corev1.Pod {
	p := pod("p-pe-"+string(rune('0'+index))+"-"+uid, "n1", corev1.PodRunning, ready)
	p.UID = types.UID(uid)
	p.Labels[v1alpha1.LabelPE] = "p-pe-" + string(rune('0'+index))
	p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: v1alpha1.PEContainerName, RestartCount: restarts}}
	return p
}

func TestRecoveryPodReady(t *testing.T) {
	for _, c := range []struct {
		name   string
		events []Event
		want   float64 // 0: no row
	}{
		{"new pod", []Event{
			ev(1, watch.Added, pePod(1, "a", 0, true)),
			ev(31, watch.Deleted, pePod(1, "a", 0, true)),
			ev(32, watch.Added, pePod(1, "b", 0, false)),
			ev(34, watch.Added, pePod(2, "c", 0, true)), // another PE's pod
			ev(35, watch.Modified, pePod(1, "b", 0, true)),
		}, 5},
		{"restarted in place", []Event{
			ev(1, watch.Added, pePod(1, "a", 0, true)),
			// Still Ready in the kubelet's last report: the old run.
			ev(30.5, watch.Modified, pePod(1, "a", 0, true)),
			ev(31, watch.Modified, pePod(1, "a", 1, false)),
			ev(33, watch.Modified, pePod(1, "a", 1, true)),
		}, 3},
		{"never ready again", []Event{
			ev(1, watch.Added, pePod(1, "a", 0, true)),
			ev(31, watch.Modified, pePod(1, "a", 1, false)),
		}, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			tr := &Trace{Namespace: "default", Job: "p", Events: c.events,
				Actions: []Action{{Time: at(30), Kind: "killContainer", PE: 1}}}
			rows, err := tr.Compute([]string{RecoveryPodReady})
			if err != nil {
				t.Fatal(err)
			}
			var want []results.Row
			if c.want > 0 {
				want = []results.Row{{Metric: RecoveryPodReady, Subject: "p-pe-1", Value: c.want, Unit: "s"}}
			}
			if diff := cmp.Diff(want, rows); diff != "" {
				t.Error(diff)
			}
		})
	}
}

func TestSecondsAreShortDecimals(t *testing.T) {
	if got := results.FormatValue(secs(1435956240 * time.Nanosecond)); got != "1.43595624" {
		t.Errorf("1435956240ns formats as %s", got)
	}
}
