package driver

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	crcache "sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/wiring"
)

func TestCacheByObjectLabelSelector(t *testing.T) {
	v := newEnv(t, 0, 0)
	req, _ := labels.NewRequirement(v1alpha1.LabelJob, selection.Exists, nil)
	v.m = New(v.srv, Options{Name: "op", Params: v.m.o.Params, Cache: crcache.Options{ByObject: map[client.Object]crcache.ByObject{
		&corev1.ConfigMap{}: {Label: labels.NewSelector().Add(*req)},
	}}})
	pr := &probe{e: v.e}
	v.m.Add(wiring.Controller{Name: "p", For: &corev1.ConfigMap{}, Reconciler: pr})
	ours := cm("ours")
	ours.Labels = map[string]string{v1alpha1.LabelJob: "j"}
	v.kc.Create(ctx, ours)
	v.kc.Create(ctx, cm("foreign"))
	v.start()
	c := v.m.Client()
	if err := c.Get(ctx, client.ObjectKeyFromObject(ours), &corev1.ConfigMap{}); err != nil {
		t.Fatalf("labelled object not cached: %v", err)
	}
	if err := c.Get(ctx, client.ObjectKey{Namespace: "ns", Name: "foreign"}, &corev1.ConfigMap{}); !apierrors.IsNotFound(err) {
		t.Fatalf("unlabelled object cached: %v", err)
	}
	if len(pr.calls["foreign"]) != 0 || len(pr.calls["ours"]) != 1 {
		t.Fatalf("reconciles %v", pr.calls)
	}
	// The label goes away: the informer sees a deletion and the key is reconciled.
	ours.Labels = nil
	v.kc.Update(ctx, ours)
	v.e.RunUntil(2 * time.Second)
	if err := c.Get(ctx, client.ObjectKeyFromObject(ours), &corev1.ConfigMap{}); !apierrors.IsNotFound(err) {
		t.Fatalf("object that stopped matching still cached: %v", err)
	}
	if len(pr.calls["ours"]) != 2 {
		t.Fatalf("no reconcile when the object left the selection: %v", pr.calls)
	}
}

func TestLeaderElectionOnRestart(t *testing.T) {
	v := newEnv(t, 0, 0)
	v.m = New(v.srv, Options{Name: "op", Params: v.m.o.Params, LeaderElection: true})
	pr := &probe{e: v.e}
	v.m.Add(wiring.Controller{Name: "p", For: &corev1.ConfigMap{}, Reconciler: pr})
	v.e.RunUntil(time.Second)
	v.m.Start()
	// Two lease requests of 10ms: leader at 1.02s; the cache synced at 1.01s.
	if v.m.LeaderAt() != 1020*time.Millisecond {
		t.Fatalf("first leader at %v", v.m.LeaderAt())
	}
	v.e.RunUntil(10500 * time.Millisecond)
	v.m.Stop() // crash: last renewal at 9.02s, lease expires at 24.02s
	v.e.RunUntil(11 * time.Second)
	v.kc.Create(ctx, cm("a"))
	v.m.Start() // tries at 11, 13, ..., 25s
	v.e.RunUntil(time.Minute)
	if want := 25*time.Second + 20*time.Millisecond; v.m.LeaderAt() != want || pr.calls["a"][0] != want {
		t.Fatalf("after a crash: leader at %v, first reconcile %v; want %v", v.m.LeaderAt(), pr.calls["a"], want)
	}
	// A graceful stop releases the lease: the successor leads at once.
	v.m.StopGracefully()
	v.m.Start()
	if got := v.m.LeaderAt() - v.e.Now(); got != 20*time.Millisecond {
		t.Fatalf("after a graceful stop the new leader waited %v", got)
	}
}
