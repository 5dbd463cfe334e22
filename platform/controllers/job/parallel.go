package job

import (
	"context"
	"fmt"
	"reflect"

	corev1 "k8s.io/api/core/v1"
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

// parallelState is what the Job controller knows of a Job's parallel
// regions when it plans.
type parallelState struct {
	regions map[string]*v1alpha1.ParallelRegion // by region name
	// refused holds, per region, why its wanted width cannot run.
	refused map[string]string
}

// planWidths plans the Job at its regions' wanted widths; a width that
// cannot be planned falls back to the width running now, and the reason is
// kept for the region's condition.
func (r *Reconciler) planWidths(ctx context.Context, job *v1alpha1.Job, base *app.Plan) (*app.Plan, *parallelState, error) {
	st := &parallelState{regions: map[string]*v1alpha1.ParallelRegion{}, refused: map[string]string{}}
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
	}
	plan, errs := app.BuildWidths(job.Namespace, job.Name, &job.Spec, wanted)
	if len(errs) == 0 {
		return plan, st, nil
	}
	msg := errs.ToAggregate().Error()
	for name, w := range wanted {
		if running[name] != w {
			st.refused[name] = fmt.Sprintf("width %d cannot run: %s", w, msg)
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
func (r *Reconciler) reconfigure(ctx context.Context, job *v1alpha1.Job, plan *app.Plan, note func(coordinator.Outcome, error)) (settled bool, err error) {
	settled = true
	track := func(out coordinator.Outcome, err error) {
		note(out, err)
		if out != coordinator.Done || err != nil {
			settled = false
		}
	}
	ns := job.Namespace
	track(r.Coord.ConfigMaps.Submit(ctx, client.ObjectKey{Namespace: ns, Name: app.PortTableName(job.Name)}, setData(render.PortTable(job, plan))))
	// A consistent region around a resized parallel region gains or loses
	// PEs; the new ones join out of sync, which resets the region.
	for i := range plan.Regions {
		want := plan.Regions[i].Spec
		track(r.Coord.Regions.Submit(ctx, client.ObjectKey{Namespace: ns, Name: plan.Regions[i].Resource},
			coordinator.Command[*v1alpha1.ConsistentRegion]{Name: "update region members", Apply: func(cr *v1alpha1.ConsistentRegion) bool {
				if reflect.DeepEqual(cr.Spec.PEs, want.PEs) && reflect.DeepEqual(cr.Spec.Operators, want.Operators) {
					return false
				}
				cr.Spec.PEs, cr.Spec.Operators = want.PEs, want.Operators
				return true
			}}))
	}
	inPlan := map[string]bool{}
	connected := true
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
			connected = false
			continue
		}
		want := render.ProcessingElement(job, p)
		track(r.Coord.PEs.Submit(ctx, key, setPESpec(want)))
		cur := &v1alpha1.ProcessingElement{}
		if err := r.Client.Get(ctx, key, cur); err != nil || cur.Spec.ConfigHash != want.Spec.ConfigHash || !pe.IsConnected(cur) {
			connected = false
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
		width, refused, gen := pp.Width, st.refused[pp.Region], pr.Generation
		selector := fmt.Sprintf("%s=%s,%s=%s", v1alpha1.LabelJob, job.Name, v1alpha1.LabelRole, v1alpha1.RolePEPod)
		out, err := r.Coord.ParallelRegions.Submit(ctx, client.ObjectKeyFromObject(pr), coordinator.Command[*v1alpha1.ParallelRegion]{
			Name: "record width", Status: true, Apply: func(p *v1alpha1.ParallelRegion) bool {
				s := &p.Status
				changed := s.Selector != selector
				s.Selector = selector
				cond := metav1.Condition{Type: ConditionRebalanced, ObservedGeneration: gen}
				switch {
				case refused != "":
					cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, "WidthRefused", refused
				case !settled || p.Spec.Width != width:
					if s.RebalanceStarted == nil && s.Width != 0 {
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
			r.Recorder.Event(pr, corev1.EventTypeWarning, "WidthRefused", refused)
		}
	}
	return outs, firstErr
}
