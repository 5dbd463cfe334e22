package driver

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1alpha1 "sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/wiring"
)

// jobSummary is a reconciler written for a real cluster: it uses only
// client.Client and controllerutil, nothing of the simulator. For each Job it
// keeps an owned ConfigMap listing the operators and reports the operator
// count and observed generation in status.
type jobSummary struct {
	c client.Client
}

func (r *jobSummary) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	var job v1alpha1.Job
	if err := r.c.Get(ctx, req.NamespacedName, &job); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	if job.DeletionTimestamp != nil {
		return reconcile.Result{}, nil
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: job.Namespace, Name: job.Name + "-summary"}}
	if _, err := controllerutil.CreateOrUpdate(ctx, r.c, cm, func() error {
		if cm.Labels == nil {
			cm.Labels = map[string]string{}
		}
		cm.Labels[v1alpha1.LabelJob] = job.Name
		cm.Data = map[string]string{}
		for _, op := range job.Spec.Application.Operators {
			cm.Data[op.Name] = string(op.Kind)
		}
		return controllerutil.SetControllerReference(&job, cm, r.c.Scheme())
	}); err != nil {
		return reconcile.Result{}, err
	}
	n := int32(len(job.Spec.Application.Operators))
	if job.Status.ObservedGeneration == job.Generation && job.Status.PEs == n {
		return reconcile.Result{}, nil
	}
	job.Status.ObservedGeneration = job.Generation
	job.Status.PEs = n
	return reconcile.Result{}, r.c.Status().Update(ctx, &job)
}

func TestUnchangedControllerRuntimeReconciler(t *testing.T) {
	v := newEnv(t, time.Millisecond, 1)
	v.m.Build(func(d wiring.Deps) []wiring.Controller {
		return []wiring.Controller{{
			Name:       "job-summary",
			For:        &v1alpha1.Job{},
			Watches:    []wiring.Watch{{Object: &corev1.ConfigMap{}, Map: wiring.ByLabel(v1alpha1.LabelJob)}},
			Reconciler: &jobSummary{c: d.Client},
		}}
	})
	v.start()
	job := &v1alpha1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "j"}}
	job.Spec.Application.Operators = []v1alpha1.Operator{{Name: "src", Kind: "source"}, {Name: "out", Kind: "sink"}}
	if err := v.kc.Create(ctx, job); err != nil {
		t.Fatal(err)
	}
	v.e.RunUntil(2 * time.Second)

	check := func(wantOps int, wantGen int64) {
		t.Helper()
		var got v1alpha1.Job
		v.kc.Get(ctx, client.ObjectKeyFromObject(job), &got)
		if got.Status.PEs != int32(wantOps) || got.Status.ObservedGeneration != wantGen {
			t.Fatalf("status pes=%d observedGeneration=%d, want %d, %d", got.Status.PEs, got.Status.ObservedGeneration, wantOps, wantGen)
		}
		var cm corev1.ConfigMap
		if err := v.kc.Get(ctx, client.ObjectKey{Namespace: "ns", Name: "j-summary"}, &cm); err != nil {
			t.Fatal(err)
		}
		if len(cm.Data) != wantOps || len(cm.OwnerReferences) != 1 || cm.OwnerReferences[0].UID != got.UID {
			t.Fatalf("configmap data=%v owners=%v", cm.Data, cm.OwnerReferences)
		}
	}
	check(2, 1)

	// Spec change: the reconciler follows it.
	v.kc.Get(ctx, client.ObjectKeyFromObject(job), job)
	job.Spec.Application.Operators = append(job.Spec.Application.Operators, v1alpha1.Operator{Name: "mid", Kind: "map"})
	if err := v.kc.Update(ctx, job); err != nil {
		t.Fatal(err)
	}
	v.e.RunUntil(3 * time.Second)
	check(3, 2)

	// Someone deletes the owned ConfigMap: the watch maps it back to the Job.
	v.kc.Delete(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "j-summary"}})
	v.e.RunUntil(4 * time.Second)
	check(3, 2)

	// It converged: no reconcile loop keeps running on its own writes.
	before := v.m.Stats()["job-summary"].Reconciles
	v.e.RunUntil(time.Minute)
	if after := v.m.Stats()["job-summary"].Reconciles; after != before {
		t.Fatalf("reconciler kept running: %d -> %d", before, after)
	}
	if v.m.Stats()["job-summary"].Errors > 2 {
		t.Fatalf("too many errors: %+v", v.m.Stats()["job-summary"])
	}
}

// A stale cache makes a real reconciler hit a conflict; the driver retries
// with back-off and it converges, as it would on a cluster.
func TestConflictsFromStaleCacheAreRetried(t *testing.T) {
	v := newEnv(t, 0, 0)
	v.m.Build(func(d wiring.Deps) []wiring.Controller {
		return []wiring.Controller{{Name: "job-summary", For: &v1alpha1.Job{}, Reconciler: &jobSummary{c: d.Client}}}
	})
	t0 := v.start()
	job := &v1alpha1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "j"}}
	job.Spec.Application.Operators = []v1alpha1.Operator{{Name: "src", Kind: "source"}}
	v.kc.Create(ctx, job)
	// Another writer changes the Job 1ms later; the reconcile at 2ms reads
	// the cached version (the change arrives at 3ms) and its status write
	// conflicts.
	v.e.At(t0+time.Millisecond, func() {
		job.Labels = map[string]string{"touched": "yes"}
		if err := v.kc.Update(ctx, job); err != nil {
			t.Error(err)
		}
	})
	var errs []error
	v.m.OnReconcile = func(r Record) { errs = append(errs, r.Err) }
	v.e.RunUntil(t0 + time.Second)
	if len(errs) < 2 || !apierrors.IsConflict(errs[0]) || errs[len(errs)-1] != nil {
		t.Fatalf("reconcile errors %v, want a conflict then success", errs)
	}
	var got v1alpha1.Job
	v.kc.Get(ctx, client.ObjectKeyFromObject(job), &got)
	if got.Status.ObservedGeneration != 1 || got.Labels["touched"] != "yes" {
		t.Fatalf("final %+v labels %v", got.Status, got.Labels)
	}
}
