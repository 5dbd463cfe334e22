package regionctl

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/integration/realapi"
	"sluice.dev/sluice/platform/runtime/kubewatch"
)

// startEnvtest runs a real kube-apiserver and etcd with the platform's
// CRDs, ending watches every 1-2 s so that the test sees Kube list again.
func startEnvtest(t *testing.T) (*rest.Config, client.Client) {
	cfg := realapi.APIServer(t, true)
	c, err := kubewatch.Client(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cfg, c
}

func TestKubeAgainstAPIServer(t *testing.T) {
	cfg, c := startEnvtest(t)
	ctx := context.Background()
	const ns = "default"

	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "job-pe-1", Namespace: ns},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "pe", Image: "sluice/pe"}}}}
	if err := c.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	k, err := NewKube(KubeOptions{Config: cfg, Namespace: ns, Resource: "job-main", Pod: pod.Name,
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
		Log: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- k.Run(runCtx) }()

	// The region does not exist yet; a different region's changes are not
	// delivered.
	other := region(ns, "job-other")
	if err := c.Create(ctx, other); err != nil {
		t.Fatal(err)
	}
	other.Status = v1alpha1.ConsistentRegionStatus{State: v1alpha1.RegionDraining, Epoch: 9, CurrentSeq: 9}
	if err := c.Status().Update(ctx, other); err != nil {
		t.Fatal(err)
	}
	noCommand(t, k.Commands(), 300*time.Millisecond)

	// Created: its (empty) status arrives through the watch.
	cr := region(ns, "job-main")
	if err := c.Create(ctx, cr); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, k.Commands()); got != (Command{}) {
		t.Fatalf("command of a new region %+v", got)
	}
	cr.Status = v1alpha1.ConsistentRegionStatus{State: v1alpha1.RegionResetting, Epoch: 1}
	if err := c.Status().Update(ctx, cr); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, k.Commands()); got != (Command{State: v1alpha1.RegionResetting, Epoch: 1}) {
		t.Fatalf("reset command %+v", got)
	}
	cr.Status.State, cr.Status.CurrentSeq, cr.Status.LastCompletedSeq = v1alpha1.RegionDraining, 4, 3
	if err := c.Status().Update(ctx, cr); err != nil {
		t.Fatal(err)
	}
	want := Command{State: v1alpha1.RegionDraining, Epoch: 1, CurrentSeq: 4, LastCompletedSeq: 3}
	if got := recv(t, k.Commands()); got != want {
		t.Fatalf("drain command %+v, want %+v", got, want)
	}

	// Progress lands in the pod's annotation.
	p := v1alpha1.RegionProgress{Region: "main", Epoch: 1, Checkpointed: 4, Bytes: 1234}
	if err := k.Report(ctx, p); err != nil {
		t.Fatal(err)
	}
	got := podProgress(t, c, pod)
	if got != p {
		t.Fatalf("annotation %+v, want %+v", got, p)
	}
	rv := pod.ResourceVersion
	// The same progress again does not write.
	if err := k.Report(ctx, p); err != nil {
		t.Fatal(err)
	}
	podProgress(t, c, pod)
	if pod.ResourceVersion != rv {
		t.Fatalf("an unchanged report patched the pod (%s -> %s)", rv, pod.ResourceVersion)
	}
	// Other annotations survive the merge patch.
	pod.Annotations["keep"] = "me"
	if err := c.Update(ctx, pod); err != nil {
		t.Fatal(err)
	}
	p.DrainRequested = true
	if err := k.Report(ctx, p); err != nil {
		t.Fatal(err)
	}
	if got := podProgress(t, c, pod); got != p || pod.Annotations["keep"] != "me" {
		t.Fatalf("annotations after second report: %v", pod.Annotations)
	}

	// A report for a pod that does not exist is tried ReportAttempts
	// times, or until its context ends, then fails.
	var missLog syncBuffer
	missing, err := NewKube(KubeOptions{Config: cfg, Namespace: ns, Resource: "job-main", Pod: "nobody",
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, ReportAttempts: 3,
		Log: slog.New(slog.NewTextHandler(&missLog, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := missing.Report(ctx, p); err == nil {
		t.Fatal("report to a missing pod succeeded")
	}
	if n := strings.Count(missLog.String(), "patching pod"); n != 3 {
		t.Fatalf("%d patch attempts, want 3:\n%s", n, missLog.String())
	}
	missing.o.ReportAttempts = 1000
	short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
	err = missing.Report(short, p)
	cancelShort()
	if err == nil {
		t.Fatal("report to a missing pod succeeded")
	}

	// The API server ends watches after 1-2 s: Kube lists and watches
	// again, and changes keep arriving.
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "watch ended") {
		if time.Now().After(deadline) {
			t.Fatalf("the watch never ended and restarted; log:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	cr.Status.State, cr.Status.LastCompletedSeq = v1alpha1.RegionHealthy, 4
	if err := c.Status().Update(ctx, cr); err != nil {
		t.Fatal(err)
	}
	want = Command{State: v1alpha1.RegionHealthy, Epoch: 1, CurrentSeq: 4, LastCompletedSeq: 4}
	if got := recv(t, k.Commands()); got != want {
		t.Fatalf("command after the watch restarted %+v, want %+v", got, want)
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, ok := <-k.Commands(); ok {
		t.Fatal("commands channel still open after Run ended")
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func region(ns, name string) *v1alpha1.ConsistentRegion {
	d := metav1.Duration{Duration: time.Second}
	return &v1alpha1.ConsistentRegion{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: v1alpha1.ConsistentRegionSpec{JobName: "job", Region: "main", Operators: []string{"a"}, PEs: []string{"job-pe-1"},
			Trigger: v1alpha1.TriggerPeriodic, Period: d, DrainTimeout: d, ResetTimeout: d, MaxConsecutiveResets: 3}}
}

func podProgress(t *testing.T, c client.Client, pod *corev1.Pod) v1alpha1.RegionProgress {
	t.Helper()
	if err := c.Get(context.Background(), client.ObjectKeyFromObject(pod), pod); err != nil {
		t.Fatal(err)
	}
	var p v1alpha1.RegionProgress
	if err := json.Unmarshal([]byte(pod.Annotations[v1alpha1.AnnotationRegionProgress]), &p); err != nil {
		t.Fatalf("annotation %q: %v", pod.Annotations[v1alpha1.AnnotationRegionProgress], err)
	}
	return p
}
