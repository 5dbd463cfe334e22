// Package simbackend runs experiment trials on the simulator: a simulated
// cluster per trial in virtual time, with the platform's real reconcilers,
// measured by the same metric definitions (experiments/metrics) the kind
// backend uses, from watch events stamped when the experiment's watcher
// receives them.
package simbackend

import (
	"context"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/watch"

	"sluice.dev/sluice/experiments/metrics"
	"sluice.dev/sluice/experiments/results"
	"sluice.dev/sluice/experiments/spec"
	"sluice.dev/sluice/platform/api/v1alpha1"
)

// Settle is the virtual time the cluster runs before the Job is created
// (first heartbeats, caches synced).
const Settle = 2 * time.Second

// Backend is the simulator backend.
type Backend struct{}

// New returns the simulator backend.
func New() *Backend { return &Backend{} }

// Name is "sim".
func (*Backend) Name() string { return "sim" }

// Run runs one trial: build the cluster, create the Job, wait for it to be
// Submitted (or fail, or time out), inject the faults relative to that
// moment, observe, and compute the trial's metrics. Everything happens in
// virtual time from the trial's seed, so a trial is a pure function of the
// definition and the seed.
func (b *Backend) Run(ctx context.Context, t spec.Trial) ([]results.Row, error) {
	sc := t.Scenario
	if sc.Job == nil {
		return nil, fmt.Errorf("trial %s has no workload", t)
	}
	w, err := newWorld(t.Seed, sc.Cluster)
	if err != nil {
		return nil, err
	}
	job := sc.Job.DeepCopy()
	rec := newRecorder(w.api, job)
	limit := Settle + sc.Timeout
	running := func() bool { return ctx.Err() == nil }
	w.e.RunUntil(Settle)
	if err := w.c.Create(ctx, job); err != nil {
		return nil, fmt.Errorf("creating Job: %w", err)
	}

	// Wait for the Job to be Submitted or to fail.
	w.e.RunWhile(func() bool { return running() && rec.submittedAt.IsZero() && !rec.failed }, limit)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if rec.submittedAt.IsZero() && len(sc.Faults) > 0 {
		return nil, fmt.Errorf("Job not Submitted after %s of virtual time: no anchor for the fault schedule", sc.Timeout)
	}
	anchor := w.e.Now()
	actions := []metrics.Action{{Time: w.clk.Now(), Kind: metrics.ActionObserve, PE: -1}}
	var faultErr error
	last := time.Duration(0)
	deletes := false
	for _, f := range sc.Faults {
		f := f
		last = max(last, f.At)
		deletes = deletes || f.Action == spec.DeleteJob
		w.e.At(anchor+f.At, func() {
			if err := w.inject(job, f); err != nil && faultErr == nil {
				faultErr = fmt.Errorf("fault %s at +%s: %w", f.Action, f.At, err)
			}
			actions = append(actions, metrics.Action{Time: w.clk.Now(), Kind: metrics.ActionKind(f.Action), PE: f.PE, Node: f.Node})
		})
	}
	end := min(anchor+last+sc.Observe, limit)
	w.e.RunWhile(running, end)
	w.e.RunUntil(end)
	if deletes {
		// Garbage collection ends when the watcher has seen every object go.
		w.e.RunWhile(func() bool { return running() && !rec.allGone() }, limit)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if faultErr != nil {
		return nil, faultErr
	}
	tr := &metrics.Trace{Namespace: job.Namespace, Job: job.Name, Events: rec.events, Actions: actions,
		End: w.clk.Now()}
	return tr.Compute(sc.Metrics)
}

// observeJob keeps the recorder's view of the Job's progress for the stop
// conditions of a trial.
func (r *recorder) observeJob(e metrics.Event) {
	o := e.Object
	if o.GetNamespace() != r.job.Namespace {
		return
	}
	isJob := false
	if j, ok := o.(*v1alpha1.Job); ok && j.Name == r.job.Name {
		isJob = true
		if e.Type != watch.Deleted {
			if r.submittedAt.IsZero() && meta.IsStatusConditionTrue(j.Status.Conditions, v1alpha1.ConditionSubmitted) {
				r.submittedAt = e.Time
			}
			r.failed = j.Status.Phase == v1alpha1.JobFailed || j.Status.Phase == v1alpha1.JobInvalid
		}
	}
	if !isJob && o.GetLabels()[v1alpha1.LabelJob] != r.job.Name {
		return
	}
	k := fmt.Sprintf("%T/%s", o, o.GetName())
	if e.Type == watch.Deleted {
		delete(r.live, k)
	} else {
		r.live[k] = true
	}
}

// allGone says the Job and everything generated for it were seen deleted.
func (r *recorder) allGone() bool { return len(r.live) == 0 }
