package pe

import (
	"testing"

	corev1 "k8s.io/api/core/v1"

	"sluice.dev/sluice/platform/api/v1alpha1"
)

func TestObserveCountsInPlaceRestarts(t *testing.T) {
	p := &v1alpha1.ProcessingElement{}
	p.Spec.LaunchCount = 2
	pod := &corev1.Pod{}
	pod.Name, pod.Spec.NodeName = "j-pe-0-2", "n1"
	pod.Status.Phase = corev1.PodRunning
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "sidecar", RestartCount: 9}, {Name: v1alpha1.PEContainerName, RestartCount: 3}}
	o := Observe(p, pod)
	if o.Restarts != 3 || o.Launch != 2 {
		t.Fatalf("observed %+v, want 3 restarts of launch 2", o)
	}
	// Recorded in status, and a change of the count alone is a write.
	if !SetStatus(o, 1, pod.CreationTimestamp.Time).Apply(p) || p.Status.Restarts != 3 {
		t.Fatalf("status %+v", p.Status)
	}
	o.Restarts = 4
	if !SetStatus(o, 1, pod.CreationTimestamp.Time).Apply(p) || p.Status.Restarts != 4 {
		t.Fatalf("a new restart was not recorded: %+v", p.Status)
	}
	if SetStatus(o, 1, pod.CreationTimestamp.Time).Apply(p) {
		t.Fatalf("the same observation wrote again")
	}
	// With the pod gone the last count stays.
	if o := Observe(p, nil); o.Restarts != 4 {
		t.Fatalf("without a pod: %+v", o)
	}
}

func TestObserveOldConfigurationIsNotConnected(t *testing.T) {
	p := &v1alpha1.ProcessingElement{}
	p.Spec.LaunchCount, p.Spec.ConfigHash = 1, "new"
	pod := &corev1.Pod{}
	pod.Name, pod.Spec.NodeName = "j-pe-0-1", "n1"
	pod.Annotations = map[string]string{v1alpha1.AnnotationConfigHash: "old"}
	pod.Status.Phase = corev1.PodRunning
	pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	if o := Observe(p, pod); o.Connectivity != v1alpha1.ConnectivityDisconnected {
		t.Fatalf("a Ready pod of the old configuration observed %s", o.Connectivity)
	}
	pod.Annotations[v1alpha1.AnnotationConfigHash] = "new"
	if o := Observe(p, pod); o.Connectivity != v1alpha1.ConnectivityConnected {
		t.Fatalf("a Ready pod of the current configuration observed %s", o.Connectivity)
	}
}
