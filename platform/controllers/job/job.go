// Package job is the Job controller: the only writer of Jobs. It validates a
// Job's application, fuses it into processing elements and creates what the
// plan needs (ConfigMaps, Services, HostPools, ProcessingElements, and for
// consistent regions their ConsistentRegions and the PEs' ServiceAccount,
// Role and RoleBinding), each
// through the coordinator of its kind. It also runs a retry: children are
// foreground-deleted, then re-created.
package job

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/app"
	"sluice.dev/sluice/platform/conditions"
	"sluice.dev/sluice/platform/coordinator"
	"sluice.dev/sluice/platform/render"
)

// Reconciler is the Job controller.
type Reconciler struct {
	Client   client.Client
	Clock    clock.PassiveClock
	Recorder record.EventRecorder
	Coord    *coordinator.Set
	// UnschedulableGrace is how long a width change waits for a node
	// before it is rolled back (DefaultUnschedulableGrace when zero).
	UnschedulableGrace time.Duration
}

// RetryPoll is how often a retrying Job looks whether its old children are gone.
const RetryPoll = time.Second

// maxMessage bounds a condition message (the API server allows 32 KiB).
const maxMessage = 4096

// Reconcile moves a Job's children toward its plan.
func (r *Reconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	job := &v1alpha1.Job{}
	if err := r.Client.Get(ctx, req.NamespacedName, job); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	if job.DeletionTimestamp != nil {
		return reconcile.Result{}, nil // the garbage collector removes the children
	}
	plan, errs := app.Build(job.Namespace, job.Name, &job.Spec)
	if len(errs) > 0 {
		out, err := r.markInvalid(ctx, job, errs.ToAggregate().Error())
		return coordinator.Result(out), err
	}
	if job.Spec.Retry > job.Status.Attempt {
		return r.retry(ctx, job)
	}
	if job.Status.Phase == v1alpha1.JobRetrying || job.Status.Phase == "" || job.Status.Phase == v1alpha1.JobPending ||
		job.Status.Phase == v1alpha1.JobInvalid || job.Status.ObservedGeneration != job.Generation {
		out, err := r.Coord.Jobs.Submit(ctx, req.NamespacedName, startSubmission(job, len(plan.PEs), r.Clock.Now()))
		if err != nil || out == coordinator.Pending {
			return coordinator.Result(out), err
		}
	}
	plan, par, err := r.planWidths(ctx, job, plan)
	if err != nil {
		return reconcile.Result{}, err
	}
	return r.ensureChildren(ctx, job, plan, par)
}

// startSubmission marks the Job valid and submitting, for the current attempt.
func startSubmission(job *v1alpha1.Job, pes int, now time.Time) coordinator.Command[*v1alpha1.Job] {
	gen, attempt := job.Generation, job.Spec.Retry
	return coordinator.Command[*v1alpha1.Job]{Name: "start submission", Status: true, Apply: func(j *v1alpha1.Job) bool {
		changed := conditions.Set(&j.Status.Conditions, metav1.Condition{
			Type: v1alpha1.ConditionValid, Status: metav1.ConditionTrue, Reason: "Fused",
			Message: fmt.Sprintf("%d operators fused into %d PEs", len(j.Spec.Application.Operators), pes), ObservedGeneration: gen}, now)
		if j.Status.Phase == "" || j.Status.Phase == v1alpha1.JobPending || j.Status.Phase == v1alpha1.JobInvalid || j.Status.Phase == v1alpha1.JobRetrying {
			j.Status.Phase = v1alpha1.JobSubmitting
			t := metav1.NewTime(now)
			j.Status.SubmittingSince = &t
			conditions.Set(&j.Status.Conditions, metav1.Condition{
				Type: v1alpha1.ConditionSubmitted, Status: metav1.ConditionFalse, Reason: "Submitting",
				Message: "waiting for every PE to run and connect", ObservedGeneration: gen}, now)
			changed = true
		}
		if j.Status.PEs != int32(pes) || j.Status.ObservedGeneration != gen || j.Status.Attempt != attempt {
			j.Status.PEs, j.Status.ObservedGeneration, j.Status.Attempt = int32(pes), gen, attempt
			changed = true
		}
		return changed
	}}
}

func (r *Reconciler) markInvalid(ctx context.Context, job *v1alpha1.Job, msg string) (coordinator.Outcome, error) {
	if len(msg) > maxMessage {
		msg = msg[:maxMessage-3] + "..."
	}
	gen, now := job.Generation, r.Clock.Now()
	out, err := r.Coord.Jobs.Submit(ctx, client.ObjectKeyFromObject(job), coordinator.Command[*v1alpha1.Job]{
		Name: "mark invalid", Status: true, Apply: func(j *v1alpha1.Job) bool {
			changed := conditions.Set(&j.Status.Conditions, metav1.Condition{
				Type: v1alpha1.ConditionValid, Status: metav1.ConditionFalse, Reason: "InvalidApplication",
				Message: msg, ObservedGeneration: gen}, now)
			if j.Status.Phase != v1alpha1.JobInvalid || j.Status.ObservedGeneration != gen {
				j.Status.Phase, j.Status.ObservedGeneration = v1alpha1.JobInvalid, gen
				changed = true
			}
			return changed
		}})
	if out == coordinator.Written && r.Recorder != nil {
		r.Recorder.Event(job, corev1.EventTypeWarning, "InvalidApplication", firstLine(msg))
	}
	return out, err
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// ensureChildren creates every object of the plan that the cache lacks.
// Existing objects are left alone: a Job's application is immutable.
func (r *Reconciler) ensureChildren(ctx context.Context, job *v1alpha1.Job, plan *app.Plan, par *parallelState) (reconcile.Result, error) {
	var errs []error
	pending := coordinator.Done
	note := func(out coordinator.Outcome, err error) {
		if err != nil {
			errs = append(errs, err)
		}
		if out == coordinator.Pending {
			pending = out
		}
	}
	for _, pool := range plan.HostPools {
		note(r.Coord.HostPools.Create(ctx, render.HostPool(job, pool)))
	}
	for i := range plan.Exports {
		note(r.Coord.Exports.Create(ctx, render.Export(job, &plan.Exports[i])))
	}
	for i := range plan.Imports {
		note(r.Coord.Imports.Create(ctx, render.Import(job, &plan.Imports[i])))
	}
	if plan.NeedsAPI() {
		sa, role, rb := render.PEAccess(job)
		note(r.Coord.ServiceAccounts.Create(ctx, sa))
		note(r.Coord.Roles.Create(ctx, role))
		note(r.Coord.RoleBindings.Create(ctx, rb))
		for i := range plan.Regions {
			note(r.Coord.Regions.Create(ctx, render.ConsistentRegion(job, &plan.Regions[i])))
		}
	}
	note(r.Coord.ConfigMaps.Create(ctx, render.PortTable(job, plan)))
	for i := range plan.PEs {
		pe := &plan.PEs[i]
		note(r.Coord.ConfigMaps.Create(ctx, render.PEConfig(job, pe)))
		if svc := render.PEService(job, pe); svc != nil {
			note(r.Coord.Services.Create(ctx, svc))
		}
		note(r.Coord.PEs.Create(ctx, render.ProcessingElement(job, pe)))
	}
	if len(plan.Parallel) > 0 {
		for i := range plan.Parallel {
			note(r.Coord.ParallelRegions.Create(ctx, render.ParallelRegion(job, &plan.Parallel[i])))
		}
		settled, err := r.reconfigure(ctx, job, plan, par, note)
		if err != nil {
			errs = append(errs, err)
		}
		note(r.parallelStatus(ctx, job, plan, par, settled))
		if n := int32(len(plan.PEs)); job.Status.PEs != n && settled {
			note(r.Coord.Jobs.Submit(ctx, client.ObjectKeyFromObject(job), coordinator.Command[*v1alpha1.Job]{
				Name: "record PE count", Status: true, Apply: func(j *v1alpha1.Job) bool {
					if j.Status.PEs == n {
						return false
					}
					j.Status.PEs = n
					return true
				}}))
		}
		if !settled && len(errs) == 0 {
			// Children's events are not mapped to Jobs: look again soon.
			return reconcile.Result{RequeueAfter: RetryPoll}, nil
		}
	}
	if len(errs) > 0 {
		return reconcile.Result{}, fmt.Errorf("creating children of job %s/%s: %w (and %d more)", job.Namespace, job.Name, errs[0], len(errs)-1)
	}
	return coordinator.Result(pending), nil
}

// retry foreground-deletes the Job's children; when the cache shows none
// left it records the attempt, and the next reconcile re-creates them.
func (r *Reconciler) retry(ctx context.Context, job *v1alpha1.Job) (reconcile.Result, error) {
	key, now := client.ObjectKeyFromObject(job), r.Clock.Now()
	if out, err := r.Coord.Jobs.Submit(ctx, key, coordinator.Command[*v1alpha1.Job]{Name: "begin retry", Status: true,
		Apply: func(j *v1alpha1.Job) bool {
			if j.Status.Phase == v1alpha1.JobRetrying {
				return false
			}
			j.Status.Phase = v1alpha1.JobRetrying
			conditions.Set(&j.Status.Conditions, metav1.Condition{Type: v1alpha1.ConditionSubmitted,
				Status: metav1.ConditionFalse, Reason: "Retrying", Message: "deleting the previous attempt's children",
				ObservedGeneration: j.Generation}, now)
			return true
		}}); err != nil {
		return reconcile.Result{}, err
	} else if out == coordinator.Pending {
		return coordinator.Result(out), nil
	}
	sel := client.MatchingLabels{v1alpha1.LabelJob: job.Name}
	ns := client.InNamespace(job.Namespace)
	fg := client.PropagationPolicy(metav1.DeletePropagationForeground)
	left := 0
	var errs []error
	note := func(_ coordinator.Outcome, err error) {
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, err)
		}
	}
	var pes v1alpha1.ProcessingElementList
	var pools v1alpha1.HostPoolList
	var cms corev1.ConfigMapList
	var svcs corev1.ServiceList
	var regions v1alpha1.ConsistentRegionList
	for _, l := range []client.ObjectList{&pes, &pools, &cms, &svcs, &regions} {
		if err := r.Client.List(ctx, l, ns, sel); err != nil {
			return reconcile.Result{}, err
		}
	}
	for i := range pes.Items {
		left++
		note(r.Coord.PEs.Delete(ctx, &pes.Items[i], fg))
	}
	for i := range pools.Items {
		left++
		note(r.Coord.HostPools.Delete(ctx, &pools.Items[i], fg))
	}
	for i := range cms.Items {
		left++
		note(r.Coord.ConfigMaps.Delete(ctx, &cms.Items[i], fg))
	}
	for i := range svcs.Items {
		left++
		note(r.Coord.Services.Delete(ctx, &svcs.Items[i], fg))
	}
	// A new attempt's regions start from their initial state.
	for i := range regions.Items {
		left++
		note(r.Coord.Regions.Delete(ctx, &regions.Items[i], fg))
	}
	if len(errs) > 0 {
		return reconcile.Result{}, errs[0]
	}
	if left > 0 {
		// Children's events are not mapped to Jobs (that would wake every
		// Job on every PE change); poll until the cache shows them gone.
		return reconcile.Result{RequeueAfter: RetryPoll}, nil
	}
	attempt := job.Spec.Retry
	out, err := r.Coord.Jobs.Submit(ctx, key, coordinator.Command[*v1alpha1.Job]{Name: "record attempt", Status: true,
		Apply: func(j *v1alpha1.Job) bool {
			if j.Status.Attempt >= attempt {
				return false
			}
			j.Status.Attempt = attempt
			return true
		}})
	if r.Recorder != nil && err == nil {
		r.Recorder.Eventf(job, corev1.EventTypeNormal, "Retrying", "children of attempt %d deleted; submitting attempt %d", job.Status.Attempt, attempt)
	}
	return coordinator.Result(out), err
}
