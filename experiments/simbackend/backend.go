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
	"sluice.dev/sluice/experiments/runner"
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
func (b *Backend) Run(ctx context.Context, t spec.Trial) (runner.Result, error) {
	rows, err := b.run(ctx, t)
	return runner.Result{Rows: rows}, err
}

func (b *Backend) run(ctx context.Context, t spec.Trial) ([]results.Row, error) {
	sc := t.Scenario
	if sc.Job == nil {
		return nil, fmt.Errorf("trial %s has no workload", t)
	}
	w, err := newWorld(t.Seed, sc.Cluster)
	if err != nil {
		return nil, err
	}
	job := sc.Job.DeepCopy()
	rec := newRecorder(w.API(), job)
	limit := Settle + sc.Timeout
	running := func() bool { return ctx.Err() == nil }
	e, clk := w.Engine(), w.Clock()
	e.RunUntil(Settle)
	if err := w.Client().Create(ctx, job); err != nil {
		return nil, fmt.Errorf("creating Job: %w", err)
	}

	// Wait for the Job to be Submitted or to fail.
	e.RunWhile(func() bool { return running() && rec.submittedAt.IsZero() && !rec.failed }, limit)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if rec.submittedAt.IsZero() && len(sc.Faults) > 0 {
		return nil, fmt.Errorf("Job not Submitted after %s of virtual time: no anchor for the fault schedule", sc.Timeout)
	}
	anchor := e.Now()
	actions := []metrics.Action{{Time: clk.Now(), Kind: metrics.ActionObserve, PE: -1}}
	var faultErr error
	last := time.Duration(0)
	deletes := false
	fired := 0
	for _, f := range sc.Faults {
		f := f
		last = max(last, f.At)
		deletes = deletes || f.Action == spec.DeleteJob
		e.At(anchor+f.At, func() {
			if f.PE >= 0 {
				rec.faultOn(fmt.Sprintf("%s-pe-%d", job.Name, f.PE), clk.Now())
			}
			if err := w.inject(job, f); err != nil && faultErr == nil {
				faultErr = fmt.Errorf("fault %s at +%s: %w", f.Action, f.At, err)
			}
			actions = append(actions, metrics.Action{Time: clk.Now(), Kind: metrics.ActionKind(f.Action), PE: f.PE, Node: f.Node})
			fired++
		})
	}
	end := min(anchor+last+sc.Observe, limit)
	// Trials that measure no window (throughput, latency) end early once
	// every fault's PE is connected again and tuples reach a sink after
	// that: nothing later changes their metrics, and the data plane is
	// the costly part of the simulation.
	early := !needsWindow(sc.Metrics)
	samples := w.DataPlane().Samples
	recovered := func() bool {
		if !early || fired < len(sc.Faults) || deletes {
			return false
		}
		s := samples()
		if len(s) == 0 {
			return false
		}
		lastDelivery := clk.Epoch().Add(s[len(s)-1].At)
		for _, f := range rec.faults {
			if f.reconnected.IsZero() || !lastDelivery.After(f.reconnected) {
				return false
			}
		}
		return len(rec.faults) > 0
	}
	e.RunWhile(func() bool { return running() && !recovered() }, end)
	if !recovered() {
		e.RunUntil(end)
	}
	if deletes {
		// Garbage collection ends when the watcher has seen every object go.
		e.RunWhile(func() bool { return running() && !rec.allGone() }, limit)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if faultErr != nil {
		return nil, faultErr
	}
	tr := &metrics.Trace{Namespace: job.Namespace, Job: job.Name, Events: rec.events, Actions: actions,
		Samples: w.samples(), End: clk.Now(), DataPlane: true}
	return tr.Compute(sc.Metrics)
}

// needsWindow says whether metrics are measured over the observation
// window (so the trial must run all of it).
func needsWindow(names []string) bool {
	for _, n := range names {
		switch n {
		case metrics.Throughput, metrics.TupleLatencyP50, metrics.TupleLatencyP99:
			return true
		}
	}
	return false
}

// peFault follows one fault's PE until it is connected again in a later
// incarnation (the recovery_connected definition).
type peFault struct {
	pe          string
	at          metrics.Incarnation
	reconnected time.Time
}

// faultOn starts following a PE hit by a fault now.
func (r *recorder) faultOn(pe string, _ time.Time) {
	r.faults = append(r.faults, &peFault{pe: pe, at: r.incarnation[pe]})
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
	if pe, ok := o.(*v1alpha1.ProcessingElement); ok && e.Type != watch.Deleted {
		r.incarnation[pe.Name] = metrics.IncarnationOf(pe)
		for _, f := range r.faults {
			if f.pe == pe.Name && f.reconnected.IsZero() && metrics.Recovered(pe, f.at) {
				f.reconnected = e.Time
			}
		}
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
