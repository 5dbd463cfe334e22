// Package jobconductor is the Job conductor: a reconciler per Job that
// watches the Job and its PEs, keeps no state and owns nothing.
// It walks a Job toward Submitted (every PE's pod of the current launch runs
// and is connected) and asks the Job coordinator to record each milestone:
// progress, Submitted, a placement the scheduler cannot satisfy, or a
// submission that ran past its timeout.
package jobconductor

import (
	"context"
	"fmt"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/conditions"
	"sluice.dev/sluice/platform/controllers/pe"
	"sluice.dev/sluice/platform/coordinator"
)

// ProgressInterval bounds how often the connected-PE count of a Job still
// submitting is written: a thousand PEs connecting must not cost a thousand
// Job writes.
const ProgressInterval = 2 * time.Second

// DefaultSubmissionTimeout applies when a Job names none.
const DefaultSubmissionTimeout = 5 * time.Minute

// Reconciler is the Job conductor.
type Reconciler struct {
	Client   client.Client
	Clock    clock.PassiveClock
	Recorder record.EventRecorder
	Jobs     *coordinator.Coordinator[*v1alpha1.Job]
}

// Summary is what the conductor sees of a Job's PEs.
type Summary struct {
	PEs       int
	Connected int
	// Unschedulable names a PE whose pod the scheduler cannot place, with its message.
	Unschedulable string
}

// Summarise reads each PE's status: the PE controller has already turned
// its pod's readiness into connectivity and its scheduling into a condition.
func Summarise(pes []v1alpha1.ProcessingElement) Summary {
	s := Summary{PEs: len(pes)}
	for i := range pes {
		p := &pes[i]
		if pe.IsConnected(p) {
			s.Connected++
			continue
		}
		if msg := pe.Unschedulable(p); msg != "" && s.Unschedulable == "" {
			s.Unschedulable = fmt.Sprintf("PE %s: %s", p.Name, msg)
		}
	}
	return s
}

// Reconcile advances a Job's submission state.
func (r *Reconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	job := &v1alpha1.Job{}
	if err := r.Client.Get(ctx, req.NamespacedName, job); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	switch job.Status.Phase {
	case v1alpha1.JobSubmitting, v1alpha1.JobSubmitted, v1alpha1.JobFailed:
	default:
		return reconcile.Result{}, nil // the Job controller has not started a submission
	}
	if job.DeletionTimestamp != nil {
		return reconcile.Result{}, nil
	}
	// Read-only listing without copies: this runs on every PE event of a
	// Job that may have thousands of PEs.
	var pes v1alpha1.ProcessingElementList
	if err := r.Client.List(ctx, &pes, client.InNamespace(job.Namespace),
		client.MatchingLabels{v1alpha1.LabelJob: job.Name}, client.UnsafeDisableDeepCopy); err != nil {
		return reconcile.Result{}, err
	}
	sort.Slice(pes.Items, func(i, j int) bool { return pes.Items[i].Spec.Index < pes.Items[j].Spec.Index })
	sum := Summarise(pes.Items)
	now := r.Clock.Now()
	key := client.ObjectKeyFromObject(job)

	if sum.PEs == int(job.Status.PEs) && sum.Connected == sum.PEs && sum.PEs > 0 {
		out, err := r.Jobs.Submit(ctx, key, markSubmitted(sum, now))
		if out == coordinator.Written && r.Recorder != nil {
			r.Recorder.Eventf(job, corev1.EventTypeNormal, "Submitted", "all %d PEs running and connected", sum.PEs)
		}
		return coordinator.Result(out), err
	}
	if job.Status.Phase != v1alpha1.JobSubmitting {
		// Submitted (or Failed) already: only keep the connected count true.
		if int(job.Status.ConnectedPEs) != sum.Connected {
			out, err := r.Jobs.Submit(ctx, key, setConnected(sum.Connected))
			return coordinator.Result(out), err
		}
		return reconcile.Result{}, nil
	}
	timeout := DefaultSubmissionTimeout
	if job.Spec.SubmissionTimeout != nil {
		timeout = job.Spec.SubmissionTimeout.Duration
	}
	var since time.Time
	if job.Status.SubmittingSince != nil {
		since = job.Status.SubmittingSince.Time
	} else {
		since = job.CreationTimestamp.Time
	}
	if deadline := since.Add(timeout); !now.Before(deadline) {
		reason, msg := "SubmissionTimeout", fmt.Sprintf("%d of %d PEs connected after %s", sum.Connected, sum.PEs, timeout)
		if sum.Unschedulable != "" {
			reason, msg = corev1.PodReasonUnschedulable, sum.Unschedulable
		}
		out, err := r.Jobs.Submit(ctx, key, markFailed(reason, msg, sum.Connected, now))
		if out == coordinator.Written && r.Recorder != nil {
			r.Recorder.Event(job, corev1.EventTypeWarning, reason, msg)
		}
		return coordinator.Result(out), err
	}
	remaining := since.Add(timeout).Sub(now)
	// Progress: the connected count and, if the scheduler is stuck, why.
	due := job.Status.ConnectedPEs != int32(sum.Connected) || unschedulableChanged(job, sum.Unschedulable)
	if due {
		if last := lastProgress(job); !last.IsZero() && now.Sub(last) < ProgressInterval && sum.Unschedulable == "" {
			return reconcile.Result{RequeueAfter: min(ProgressInterval-now.Sub(last), remaining)}, nil
		}
		out, err := r.Jobs.Submit(ctx, key, markProgress(sum, now))
		if err != nil || out == coordinator.Pending {
			return coordinator.Result(out), err
		}
	}
	return reconcile.Result{RequeueAfter: remaining}, nil
}

func lastProgress(job *v1alpha1.Job) time.Time {
	for _, c := range job.Status.Conditions {
		if c.Type == v1alpha1.ConditionSubmitted {
			return c.LastTransitionTime.Time
		}
	}
	return time.Time{}
}

func unschedulableChanged(job *v1alpha1.Job, msg string) bool {
	for _, c := range job.Status.Conditions {
		if c.Type == v1alpha1.ConditionSubmitted {
			return (c.Reason == corev1.PodReasonUnschedulable) != (msg != "") || (msg != "" && c.Message != msg)
		}
	}
	return msg != ""
}

func markSubmitted(sum Summary, now time.Time) coordinator.Command[*v1alpha1.Job] {
	return coordinator.Command[*v1alpha1.Job]{Name: "mark submitted", Status: true, Apply: func(j *v1alpha1.Job) bool {
		changed := j.Status.Phase != v1alpha1.JobSubmitted || j.Status.ConnectedPEs != int32(sum.Connected)
		j.Status.Phase, j.Status.ConnectedPEs = v1alpha1.JobSubmitted, int32(sum.Connected)
		return conditions.Set(&j.Status.Conditions, metav1.Condition{Type: v1alpha1.ConditionSubmitted,
			Status: metav1.ConditionTrue, Reason: "AllPEsConnected", ObservedGeneration: j.Generation,
			Message: fmt.Sprintf("all %d PEs running and connected", sum.PEs)}, now) || changed
	}}
}

func setConnected(n int) coordinator.Command[*v1alpha1.Job] {
	return coordinator.Command[*v1alpha1.Job]{Name: "set connected", Status: true, Apply: func(j *v1alpha1.Job) bool {
		if j.Status.ConnectedPEs == int32(n) {
			return false
		}
		j.Status.ConnectedPEs = int32(n)
		return true
	}}
}

// markProgress rewrites the Submitted=False condition; its transition time
// is refreshed on every write so that ProgressInterval can be kept without
// state of our own.
func markProgress(sum Summary, now time.Time) coordinator.Command[*v1alpha1.Job] {
	return coordinator.Command[*v1alpha1.Job]{Name: "record progress", Status: true, Apply: func(j *v1alpha1.Job) bool {
		if j.Status.Phase != v1alpha1.JobSubmitting {
			return false
		}
		reason, msg := "Submitting", fmt.Sprintf("%d of %d PEs connected", sum.Connected, sum.PEs)
		if sum.Unschedulable != "" {
			reason, msg = corev1.PodReasonUnschedulable, sum.Unschedulable
		}
		changed := j.Status.ConnectedPEs != int32(sum.Connected)
		j.Status.ConnectedPEs = int32(sum.Connected)
		var out []metav1.Condition
		for _, c := range j.Status.Conditions {
			if c.Type != v1alpha1.ConditionSubmitted {
				out = append(out, c)
				continue
			}
			if c.Reason != reason || c.Message != msg {
				changed = true
			}
		}
		if !changed {
			return false
		}
		out = append(out, metav1.Condition{Type: v1alpha1.ConditionSubmitted, Status: metav1.ConditionFalse, Reason: reason,
			Message: msg, ObservedGeneration: j.Generation, LastTransitionTime: metav1.NewTime(now.Truncate(time.Second))})
		j.Status.Conditions = out
		return true
	}}
}

func markFailed(reason, msg string, connected int, now time.Time) coordinator.Command[*v1alpha1.Job] {
	return coordinator.Command[*v1alpha1.Job]{Name: "mark failed", Status: true, Apply: func(j *v1alpha1.Job) bool {
		if j.Status.Phase != v1alpha1.JobSubmitting {
			return false
		}
		j.Status.Phase, j.Status.ConnectedPEs = v1alpha1.JobFailed, int32(connected)
		conditions.Set(&j.Status.Conditions, metav1.Condition{Type: v1alpha1.ConditionSubmitted, Status: metav1.ConditionFalse,
			Reason: reason, Message: msg + "; raise spec.retry to try again", ObservedGeneration: j.Generation}, now)
		return true
	}}
}
