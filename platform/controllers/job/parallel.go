package job

import (
	"context"
	"fmt"
	"maps"
	"reflect"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/app"
	"sluice.dev/sluice/platform/conditions"
	"sluice.dev/sluice/platform/controllers/pe"
	"sluice.dev/sluice/platform/coordinator"
	"sluice.dev/sluice/platform/render"
)

// ConditionRebalanced is the ParallelRegion condition of a width change.
const ConditionRebalanced = "Rebalanced"

// Reasons of a refused width: it does not plan, its pods found no node, or
// the region holds checkpointed state that cannot move to another width.
const (
	ReasonWidthRefused    = "WidthRefused"
	ReasonUnschedulable   = "Unschedulable"
	ReasonStateCannotMove = "StateCannotMove"
)

// DefaultUnschedulableGrace is how long a pod of a width change may wait
// for a node before the change is rolled back. The scheduler reports a pod
// unschedulable on its first failed attempt, which is often transient
// during a rebalance (the relaunched PEs' old pods still hold their CPU).
const DefaultUnschedulableGrace = time.Minute

// parallelState is what the Job controller knows of a Job's parallel
// regions when it plans.
type parallelState struct {
	regions map[string]*v1alpha1.ParallelRegion // by region name
	// refused holds, per region, why its wanted width cannot run.
	refused map[string]string
	// reason is the condition reason of each refusal.
	reason map[string]string
	// changing holds the regions moving from a running width to another.
	changing map[string]bool
}

// refuse records that region's wanted width cannot run, and why.
func (st *parallelState) refuse(region, reason, msg string) {
	st.refused[region], st.reason[region] = msg, reason
}

// stuckRefusal returns the message of a width already found unschedulable:
// it stays refused until the user asks for another width (a new generation).
func stuckRefusal(pr *v1alpha1.ParallelRegion) string {
	c := meta.FindStatusCondition(pr.Status.Conditions, ConditionRebalanced)
	if c != nil && c.Status == metav1.ConditionFalse && c.Reason == ReasonUnschedulable && c.ObservedGeneration == pr.Generation {
		return c.Message
	}
	return ""
}

// planWidths plans the Job at its regions' wanted widths; a width that
// cannot be planned falls back to the width running now, and the reason is
// kept for the region's condition.
func (r *Reconciler) planWidths(ctx context.Context, job *v1alpha1.Job, base *app.Plan) (*app.Plan, *parallelState, error) {
	st := &parallelState{regions: map[string]*v1alpha1.ParallelRegion{}, refused: map[string]string{},
		reason: map[string]string{}, changing: map[string]bool{}}
	if len(base.Parallel) == 0 {
		return base, st, nil
	}
	var list v1alpha1.ParallelRegionList
	if err := r.Client.List(ctx, &list, client.InNamespace(job.Namespace), client.MatchingLabels{v1alpha1.LabelJob: job.Name}); err != nil {
		return nil, nil, err
	}
	wanted, running := app.Widths{}, app.Widths{}
	for i := range list.Items {
		pr := &list.Items[i]
		if !metav1.IsControlledBy(pr, job) {
			continue
		}
		st.regions[pr.Spec.Region] = pr
		wanted[pr.Spec.Region] = pr.Spec.Width
		if pr.Status.Width > 0 {
			running[pr.Spec.Region] = pr.Status.Width
		}
		if msg := stuckRefusal(pr); msg != "" && pr.Status.Width > 0 {
			wanted[pr.Spec.Region] = pr.Status.Width
			st.refuse(pr.Spec.Region, ReasonUnschedulable, msg)
		}
		if running[pr.Spec.Region] > 0 && wanted[pr.Spec.Region] != running[pr.Spec.Region] {
			st.changing[pr.Spec.Region] = true
			// Refused before planning: the reset at the new width would
			// fail to restore these operators and the region would fail.
			if ops := app.StatePinningWidth(&job.Spec, pr.Spec.Region); len(ops) > 0 {
				st.refuse(pr.Spec.Region, ReasonStateCannotMove, fmt.Sprintf(
					"width %d cannot run: %s in a consistent region keep state that cannot move to another width; width %d kept",
					wanted[pr.Spec.Region], strings.Join(ops, ", "), running[pr.Spec.Region]))
				wanted[pr.Spec.Region] = running[pr.Spec.Region]
			}
		}
	}
	plan, errs := app.BuildWidths(job.Namespace, job.Name, &job.Spec, wanted)
	if len(errs) == 0 {
		return plan, st, nil
	}
	msg := errs.ToAggregate().Error()
	for name, w := range wanted {
		if running[name] != w {
			st.refuse(name, ReasonWidthRefused, fmt.Sprintf("width %d cannot run: %s", w, msg))
		}
	}
	plan, errs = app.BuildWidths(job.Namespace, job.Name, &job.Spec, running)
	if len(errs) > 0 {
		return nil, nil, fmt.Errorf("job %s/%s: the running widths no longer plan: %v", job.Namespace, job.Name, errs.ToAggregate())
	}
	return plan, st, nil
}

// reconfigure brings existing children in line with a plan whose parallel
// regions changed width: changed configurations, Services and PE specs are
// updated (each PE after its ConfigMap, so that its new pod mounts the new
// configuration), and PEs the plan no longer has are deleted once every PE
// of the plan is connected, so that new PEs run before obsolete ones go.
// While a width changes, a pod of the plan that has found no node for the
// grace period refuses the new width (st), and the next plan rolls back.
func (r *Reconciler) reconfigure(ctx context.Context, job *v1alpha1.Job, plan *app.Plan, st *parallelState, note func(coordinator.Outcome, error)) (settled bool, err error) {
	settled = true
	track := func(out coordinator.Outcome, err error) {
		note(out, err)
		if out != coordinator.Done || err != nil {
			settled = false
		}
	}
	ns := job.Namespace
	track(r.Coord.ConfigMaps.Submit(ctx, client.ObjectKey{Namespace: ns, Name: app.PortTableName(job.Name)}, setData(render.PortTable(job, plan))))
	inPlan := map[string]bool{}
	connected, specsWritten := true, true
	unschedulable := ""
	for i := range plan.PEs {
		p := &plan.PEs[i]
		inPlan[p.Name] = true
		key := client.ObjectKey{Namespace: ns, Name: p.Name}
		out, err := r.Coord.ConfigMaps.Submit(ctx, key, setData(render.PEConfig(job, p)))
		track(out, err)
		if svc := render.PEService(job, p); svc != nil {
			track(r.Coord.Services.Submit(ctx, key, setPorts(svc)))
		}
		if out != coordinator.Done {
			connected, specsWritten = false, false
			continue
		}
		want := render.ProcessingElement(job, p)
		peOut, err := r.Coord.PEs.Submit(ctx, key, setPESpec(want))
		track(peOut, err)
		if peOut != coordinator.Done || err != nil {
			specsWritten = false
		}
		cur := &v1alpha1.ProcessingElement{}
		if err := r.Client.Get(ctx, key, cur); err != nil || cur.Spec.ConfigHash != want.Spec.ConfigHash || !pe.IsConnected(cur) {
			connected = false
			if err == nil && unschedulable == "" {
				unschedulable = r.unschedulableFor(ctx, cur)
			}
		}
	}
	// A consistent region around a resized parallel region gains or loses
	// PEs and changes its widths, which resets it: every channel restores
	// the last checkpoint for its keys at the new width. Only after every
	// PE has its new spec: a PE whose pod runs an older configuration is
	// not connected (pe.Observe, pe.IsConnected), so the region cannot
	// become Healthy and complete a checkpoint at the new width while an
	// old split still routes by the old one (its keys' tuples would go to
	// channels outside the region, and a later reset would lose them).
	for i := range plan.Regions {
		if !specsWritten {
			settled = false
			break
		}
		want := plan.Regions[i].Spec
		track(r.Coord.Regions.Submit(ctx, client.ObjectKey{Namespace: ns, Name: plan.Regions[i].Resource},
			coordinator.Command[*v1alpha1.ConsistentRegion]{Name: "update region members", Apply: func(cr *v1alpha1.ConsistentRegion) bool {
				if reflect.DeepEqual(cr.Spec.PEs, want.PEs) && reflect.DeepEqual(cr.Spec.Operators, want.Operators) &&
					maps.Equal(cr.Spec.ParallelWidths, want.ParallelWidths) {
					return false
				}
				// One write: the region resets to the new widths with its
				// new members.
				cr.Spec.PEs, cr.Spec.Operators, cr.Spec.ParallelWidths = want.PEs, want.Operators, want.ParallelWidths
				return true
			}}))
	}
	if unschedulable != "" {
		for region := range st.changing {
			if st.refused[region] == "" {
				w := st.regions[region].Spec.Width
				st.refuse(region, ReasonUnschedulable, fmt.Sprintf("width %d cannot run: %s; width %d kept",
					w, unschedulable, st.regions[region].Status.Width))
			}
		}
	}
	var pes v1alpha1.ProcessingElementList
	if err := r.Client.List(ctx, &pes, client.InNamespace(ns), client.MatchingLabels{v1alpha1.LabelJob: job.Name}); err != nil {
		return false, err
	}
	for i := range pes.Items {
		old := &pes.Items[i]
		if inPlan[old.Name] || !metav1.IsControlledBy(old, job) {
			continue
		}
		settled = false
		if !connected {
			continue
		}
		// The PE owns its pods; its ConfigMap and Service are the Job's.
		track(r.Coord.PEs.Delete(ctx, old))
		cm := &corev1.ConfigMap{}
		if err := r.Client.Get(ctx, client.ObjectKeyFromObject(old), cm); err == nil {
			track(r.Coord.ConfigMaps.Delete(ctx, cm))
		}
		svc := &corev1.Service{}
		if err := r.Client.Get(ctx, client.ObjectKeyFromObject(old), svc); err == nil {
			track(r.Coord.Services.Delete(ctx, svc))
		}
	}
	return settled && connected, nil
}

// unschedulableFor describes a PE whose current pod the scheduler has
// found no node for since longer than the grace period, or returns "".
func (r *Reconciler) unschedulableFor(ctx context.Context, p *v1alpha1.ProcessingElement) string {
	pod := &corev1.Pod{}
	if err := r.Client.Get(ctx, client.ObjectKey{Namespace: p.Namespace, Name: app.PodName(p.Name, p.Spec.LaunchCount)}, pod); err != nil ||
		pod.Spec.NodeName != "" {
		return ""
	}
	grace := r.UnschedulableGrace
	if grace <= 0 {
		grace = DefaultUnschedulableGrace
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
			if waited := r.Clock.Since(c.LastTransitionTime.Time); waited >= grace {
				return fmt.Sprintf("PE %s found no node for %s: %s", p.Name, waited.Round(time.Second), firstLine(c.Message))
			}
		}
	}
	return ""
}

func setData(want *corev1.ConfigMap) coordinator.Command[*corev1.ConfigMap] {
	return coordinator.Command[*corev1.ConfigMap]{Name: "update configuration", Apply: func(cm *corev1.ConfigMap) bool {
		if reflect.DeepEqual(cm.Data, want.Data) {
			return false
		}
		cm.Data = want.Data
		return true
	}}
}

func setPorts(want *corev1.Service) coordinator.Command[*corev1.Service] {
	return coordinator.Command[*corev1.Service]{Name: "update ports", Apply: func(svc *corev1.Service) bool {
		if samePorts(svc.Spec.Ports, want.Spec.Ports) {
			return false
		}
		svc.Spec.Ports = want.Spec.Ports
		return true
	}}
}

// samePorts compares what the platform sets of a Service's ports; the API
// server defaults the rest (target ports).
func samePorts(a, b []corev1.ServicePort) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Name != b[i].Name || a[i].Port != b[i].Port || a[i].Protocol != b[i].Protocol {
			return false
		}
	}
	return true
}

func setPESpec(want *v1alpha1.ProcessingElement) coordinator.Command[*v1alpha1.ProcessingElement] {
	return coordinator.Command[*v1alpha1.ProcessingElement]{Name: "update PE configuration", Apply: func(p *v1alpha1.ProcessingElement) bool {
		s, w := &p.Spec, &want.Spec
		if s.ConfigHash == w.ConfigHash && s.InputPorts == w.InputPorts && reflect.DeepEqual(s.Operators, w.Operators) {
			return false
		}
		s.ConfigHash, s.InputPorts, s.Operators = w.ConfigHash, w.InputPorts, w.Operators
		return true
	}}
}

// parallelStatus records, per region, the width the plan runs and whether
// the last change has finished.
func (r *Reconciler) parallelStatus(ctx context.Context, job *v1alpha1.Job, plan *app.Plan, st *parallelState, settled bool) (coordinator.Outcome, error) {
	now := r.Clock.Now()
	outs := coordinator.Done
	var firstErr error
	for _, pp := range plan.Parallel {
		pr := st.regions[pp.Region]
		if pr == nil {
			continue
		}
		width, refused, reason, gen := pp.Width, st.refused[pp.Region], st.reason[pp.Region], pr.Generation
		initial := pp.InitialWidth
		selector := fmt.Sprintf("%s=%s,%s=%s", v1alpha1.LabelJob, job.Name, v1alpha1.LabelRole, v1alpha1.RolePEPod)
		out, err := r.Coord.ParallelRegions.Submit(ctx, client.ObjectKeyFromObject(pr), coordinator.Command[*v1alpha1.ParallelRegion]{
			Name: "record width", Status: true, Apply: func(p *v1alpha1.ParallelRegion) bool {
				s := &p.Status
				changed := s.Selector != selector
				s.Selector = selector
				cond := metav1.Condition{Type: ConditionRebalanced, ObservedGeneration: gen}
				switch {
				case refused != "":
					cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, reason, refused
					if settled && p.Status.RebalanceStarted != nil && s.Width == width {
						// Rolled back: the old width runs again; no rebalance happened.
						s.RebalanceStarted, changed = nil, true
					}
				case !settled || p.Spec.Width != width:
					// A rebalance is a change from the running width: the
					// one recorded on the last settle, or the first
					// plan's before the first settle (a width asked for
					// then reached Rebalanced=True with no rebalance
					// duration). A PE that is not connected (a pod being
					// replaced) unsettles the region too, and is no
					// rebalance.
					running := s.Width
					if running == 0 {
						running = initial
					}
					if s.RebalanceStarted == nil && p.Spec.Width != running {
						t := metav1.NewTime(now)
						s.RebalanceStarted, changed = &t, true
					}
					cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, "Rebalancing",
						fmt.Sprintf("moving to width %d", p.Spec.Width)
				default:
					if s.RebalanceStarted != nil {
						s.LastRebalanceDuration = &metav1.Duration{Duration: now.Sub(s.RebalanceStarted.Time)}
						s.RebalanceStarted, changed = nil, true
					}
					if s.Width != width || s.ObservedGeneration != gen {
						s.Width, s.ObservedGeneration, changed = width, gen, true
					}
					cond.Status, cond.Reason, cond.Message = metav1.ConditionTrue, "Running", fmt.Sprintf("%d channels running", width)
				}
				return conditions.Set(&s.Conditions, cond, now) || changed
			}})
		if err != nil && firstErr == nil {
			firstErr = err
		}
		if out == coordinator.Pending || (out == coordinator.Written && outs == coordinator.Done) {
			outs = out
		}
		if out == coordinator.Written && refused != "" && r.Recorder != nil {
			r.Recorder.Event(pr, corev1.EventTypeWarning, reason, refused)
		}
	}
	return outs, firstErr
}
