package app

import (
	"fmt"

	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/peconfig"
)

// ExportResourceName is the name of the Export object of an export operator.
func ExportResourceName(job, op string) string { return job + "-" + op }

// ImportResourceName is the name of the Import object of an import operator.
func ImportResourceName(job, op string) string { return job + "-" + op }

// ExportPlan is an Export object to create.
type ExportPlan struct {
	Resource string
	Spec     v1alpha1.ExportSpec
}

// ImportPlan is an Import object to create.
type ImportPlan struct {
	Resource string
	Spec     v1alpha1.ImportSpec
}

// validateImportExport checks what export and import operators need.
func validateImportExport(g *Graph) field.ErrorList {
	var errs field.ErrorList
	path := field.NewPath("spec", "application", "operators")
	for i := range g.Spec.Application.Operators {
		op := g.Operator(i)
		p := path.Index(i).Child("params")
		var params v1alpha1.OperatorParams
		if op.Params != nil {
			params = *op.Params
		}
		switch op.Kind {
		case v1alpha1.KindExport:
			if params.StreamName == "" && len(params.Properties) == 0 {
				errs = append(errs, field.Required(p.Child("streamName"), "an export needs a streamName or properties to be found by"))
			}
			// Imports select exports by their properties with label
			// selectors, so properties are label keys and values.
			errs = append(errs, metav1validation.ValidateLabels(params.Properties, p.Child("properties"))...)
		case v1alpha1.KindImport:
			switch {
			case params.StreamName == "" && params.Subscription == "":
				errs = append(errs, field.Required(p.Child("streamName"), "an import needs a streamName or a subscription"))
			case params.StreamName != "" && params.Subscription != "":
				errs = append(errs, field.Invalid(p.Child("subscription"), params.Subscription, "give a streamName or a subscription, not both"))
			case params.Subscription != "":
				if _, err := labels.Parse(params.Subscription); err != nil {
					errs = append(errs, field.Invalid(p.Child("subscription"), params.Subscription, err.Error()))
				}
			}
			if f := params.Filter; f != nil {
				for k, r := range f.KeyRemainders {
					if f.KeyModulo < 1 || r < 0 || r >= f.KeyModulo {
						errs = append(errs, field.Invalid(p.Child("filter", "keyRemainders").Index(k), r,
							fmt.Sprintf("a remainder of key modulo %d is 0 to %d", f.KeyModulo, f.KeyModulo-1)))
					}
				}
			}
		}
	}
	return errs
}

// planImportExport gives export operators a PE port and import operators
// their Import object, and lists the objects to create.
func planImportExport(job string, spec *v1alpha1.JobSpec, plan *Plan) {
	for i := range plan.PEs {
		pe := &plan.PEs[i]
		for _, op := range pe.Config.Operators {
			var params v1alpha1.OperatorParams
			if op.Params != nil {
				params = *op.Params
			}
			switch op.Kind {
			case v1alpha1.KindExport:
				port := int32(len(pe.Config.Inputs) + len(pe.Config.Exports))
				pe.Config.Exports = append(pe.Config.Exports, peconfig.ExportPort{Port: port, Operator: op.Name})
				plan.Exports = append(plan.Exports, ExportPlan{Resource: ExportResourceName(job, op.Name), Spec: v1alpha1.ExportSpec{
					JobName: job, Operator: op.Name, StreamName: params.StreamName, Properties: params.Properties, PE: pe.Name, Port: port}})
			case v1alpha1.KindImport:
				res := ImportResourceName(job, op.Name)
				pe.Config.Imports = append(pe.Config.Imports, peconfig.ImportRef{Operator: op.Name, Resource: res})
				plan.Imports = append(plan.Imports, ImportPlan{Resource: res, Spec: v1alpha1.ImportSpec{
					JobName: job, Operator: op.Name, StreamName: params.StreamName, Subscription: params.Subscription,
					Filter: params.Filter.DeepCopy(), PE: pe.Name}})
			}
		}
	}
}

// NeedsAPI reports whether a Job's PEs talk to the Kubernetes API (for
// consistent regions or imports) and so need their access objects.
func (p *Plan) NeedsAPI() bool { return len(p.Regions) > 0 || len(p.Imports) > 0 }

// Subscriber decides which exports an import receives: those of its
// stream name, or, without one, those whose properties its subscription
// (a label selector) matches. The cluster's broker and local mode's share
// it, so that both match alike.
type Subscriber struct {
	name string
	sel  labels.Selector // nil: by name
}

// NewSubscriber parses an import's subscription; a subscription that does
// not parse (submission validates it) matches nothing.
func NewSubscriber(im *v1alpha1.ImportSpec) Subscriber {
	if im.StreamName != "" {
		return Subscriber{name: im.StreamName}
	}
	sel, err := labels.Parse(im.Subscription)
	if err != nil {
		sel = labels.Nothing()
	}
	return Subscriber{sel: sel}
}

// Receives reports whether the import receives ex.
func (s Subscriber) Receives(ex *v1alpha1.ExportSpec) bool {
	if s.sel == nil {
		return ex.StreamName == s.name
	}
	return s.sel.Matches(labels.Set(ex.Properties))
}
