package podconductor

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"sluice.dev/sluice/platform/api/v1alpha1"
)

// newPE is a PE at launch with the given observed status and restart policy.
func newPE(launch, podLaunch int32, podName string, policy v1alpha1.PERestartPolicy) *v1alpha1.ProcessingElement {
	return &v1alpha1.ProcessingElement{
		ObjectMeta: metav1.ObjectMeta{Name: "job-pe-0", Namespace: "ns"},
		Spec: v1alpha1.ProcessingElementSpec{JobName: "job", LaunchCount: launch,
			Template: v1alpha1.PETemplate{RestartPolicy: &policy}},
		Status: v1alpha1.ProcessingElementStatus{PodLaunch: podLaunch, PodName: podName},
	}
}

func pod(phase corev1.PodPhase, deleting bool) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "job-pe-0-3", Namespace: "ns"}, Status: corev1.PodStatus{Phase: phase}}
	if deleting {
		p.DeletionTimestamp = &metav1.Time{}
	}
	return p
}

// policies are all eight restart policies.
func policies() []v1alpha1.PERestartPolicy {
	var out []v1alpha1.PERestartPolicy
	for bits := 0; bits < 8; bits++ {
		out = append(out, v1alpha1.PERestartPolicy{RestartFailed: bits&1 != 0, RestartCompleted: bits&2 != 0, RestartDeleted: bits&4 != 0})
	}
	return out
}

func TestDecideBeforeFirstLaunch(t *testing.T) {
	for _, policy := range policies() {
		for _, ready := range []bool{false, true} {
			want := StepWaitConfig
			if ready {
				want = StepLaunch
			}
			// Status and pod are irrelevant at launch 0.
			for _, p := range []*v1alpha1.ProcessingElement{newPE(0, 0, "", policy), newPE(0, 0, "stale", policy)} {
				if got := Decide(p, nil, ready); got != want {
					t.Errorf("launch 0, ready %v, policy %+v, status %+v: %s, want %s", ready, policy, p.Status, got, want)
				}
			}
		}
	}
}

func TestDecideNoPod(t *testing.T) {
	for _, tc := range []struct {
		name      string
		podLaunch int32
		podName   string
		ready     bool
		want      Step
	}{
		// Never observed a pod for launch 3: create it once config exists.
		{"fresh launch", 0, "", true, StepCreatePod},
		{"fresh launch, config missing", 0, "", false, StepWaitConfig},
		{"previous launch observed", 2, "job-pe-0-2", true, StepCreatePod},
		{"previous launch observed, config missing", 2, "job-pe-0-2", false, StepWaitConfig},
		{"current launch recorded without a pod name", 3, "", true, StepCreatePod},
	} {
		for _, policy := range policies() {
			if got := Decide(newPE(3, tc.podLaunch, tc.podName, policy), nil, tc.ready); got != tc.want {
				t.Errorf("%s, policy %+v: %s, want %s", tc.name, policy, got, tc.want)
			}
		}
	}
}

func TestDecideObservedPodGone(t *testing.T) {
	// The pod of launch 3 was observed and is gone: it was deleted. Only
	// restartDeleted relaunches; it is never re-created under the same
	// launch (that would hide the deletion from the causal chain).
	for _, policy := range policies() {
		for _, ready := range []bool{false, true} {
			want := StepNone
			if policy.RestartDeleted {
				want = StepRelaunch
			}
			if got := Decide(newPE(3, 3, "job-pe-0-3", policy), nil, ready); got != want {
				t.Errorf("policy %+v ready %v: %s, want %s", policy, ready, got, want)
			}
		}
	}
}

func TestDecideWithPod(t *testing.T) {
	for _, tc := range []struct {
		name      string
		pod       *corev1.Pod
		relaunch  func(v1alpha1.PERestartPolicy) bool // which flag replaces it
		otherwise Step
	}{
		{"pending", pod(corev1.PodPending, false), nil, StepNone},
		{"running", pod(corev1.PodRunning, false), nil, StepNone},
		{"unknown", pod(corev1.PodUnknown, false), nil, StepNone},
		{"no phase yet", pod("", false), nil, StepNone},
		{"failed", pod(corev1.PodFailed, false), func(p v1alpha1.PERestartPolicy) bool { return p.RestartFailed }, StepNone},
		{"succeeded", pod(corev1.PodSucceeded, false), func(p v1alpha1.PERestartPolicy) bool { return p.RestartCompleted }, StepPodCompleted},
		{"running, deleting", pod(corev1.PodRunning, true), func(p v1alpha1.PERestartPolicy) bool { return p.RestartDeleted }, StepNone},
		{"pending, deleting", pod(corev1.PodPending, true), func(p v1alpha1.PERestartPolicy) bool { return p.RestartDeleted }, StepNone},
	} {
		for _, policy := range policies() {
			want := tc.otherwise
			if tc.relaunch != nil && tc.relaunch(policy) {
				want = StepRelaunch
			}
			for _, status := range []struct {
				podLaunch int32
				podName   string
			}{{0, ""}, {3, "job-pe-0-3"}} {
				// Whether the config is present does not matter once a pod exists.
				for _, ready := range []bool{false, true} {
					name := fmt.Sprintf("%s, policy %+v, status %+v, ready %v", tc.name, policy, status, ready)
					if got := Decide(newPE(3, status.podLaunch, status.podName, policy), tc.pod, ready); got != want {
						t.Errorf("%s: %s, want %s", name, got, want)
					}
				}
			}
		}
	}
}
