package app

import (
	"fmt"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/peconfig"
)

// PEPlan is one processing element of a fused application.
type PEPlan struct {
	Name      string
	Index     int32
	Operators []string
	Placement v1alpha1.PEPlacement
	Config    peconfig.PE
	// Region is the consistent region of the PE's operators ("" for none).
	Region string `json:",omitempty"`
}

// Plan is everything the platform generates for a Job.
type Plan struct {
	PEs       []PEPlan
	PortTable peconfig.PortTable
	// HostPools are the Job's pools, in spec order.
	HostPools []v1alpha1.HostPoolSpec
	// Regions are the Job's consistent regions, in spec order.
	Regions []RegionPlan `json:",omitempty"`
	// Parallel are the Job's parallel regions, in spec order.
	Parallel []ParallelPlan `json:",omitempty"`
	// Exports and Imports of the Job's export and import operators.
	Exports []ExportPlan `json:",omitempty"`
	Imports []ImportPlan `json:",omitempty"`
}

// PEName is the name of a Job's PE, of its ConfigMap and of its Service.
func PEName(job string, index int32) string { return fmt.Sprintf("%s-pe-%d", job, index) }

// PortTableName is the name of a Job's port table ConfigMap.
func PortTableName(job string) string { return job + "-ports" }

// HostPoolName is the name of a Job's HostPool object.
func HostPoolName(job, pool string) string { return job + "-" + pool }

// PodName is the name of a PE's pod for a launch count.
func PodName(pe string, launch int32) string { return fmt.Sprintf("%s-%d", pe, launch) }

// Build validates a Job's spec and fuses it into a plan. It is a pure
// function of its arguments: the same spec always yields the same plan.
func Build(namespace, job string, spec *v1alpha1.JobSpec) (*Plan, field.ErrorList) {
	return BuildWidths(namespace, job, spec, nil)
}

// BuildWidths is Build with the running widths of parallel regions.
func BuildWidths(namespace, job string, spec *v1alpha1.JobSpec, widths Widths) (*Plan, field.ErrorList) {
	origSpec := spec
	g, errs := Validate(job, spec)
	if len(errs) > 0 {
		return nil, errs
	}
	if errs := validateParallel(g, widths); len(errs) > 0 {
		return nil, errs
	}
	groups, errs := Fuse(g)
	if len(errs) > 0 {
		return nil, errs
	}
	if errs := checkFusedRegions(g, groups); len(errs) > 0 {
		return nil, errs
	}
	x := expand(g, widths)
	var names []string
	if x.spec != spec {
		orig := g
		if g, errs = Validate(job, x.spec); len(errs) > 0 {
			return nil, errs
		}
		if groups, names, errs = x.expandGroups(job, orig, groups, g); len(errs) > 0 {
			return nil, errs
		}
		spec = x.spec
	}
	ops := spec.Application.Operators
	streams := spec.Application.Streams
	peOf := make([]int32, len(ops))
	for pe, grp := range groups {
		for _, i := range grp {
			peOf[i] = int32(pe)
		}
	}
	plan := &Plan{
		PEs:       make([]PEPlan, len(groups)),
		HostPools: spec.Placement.HostPools,
		PortTable: peconfig.PortTable{Version: peconfig.Version, Job: job, Namespace: namespace,
			Operators: make(map[string]string, len(ops))},
	}
	for pe, grp := range groups {
		p := &plan.PEs[pe]
		p.Index = int32(pe)
		p.Name = PEName(job, p.Index)
		if names != nil {
			p.Name = names[pe]
		}
		p.Config = peconfig.PE{Version: peconfig.Version, Job: job, Namespace: namespace, Name: p.Name, Index: p.Index}
		var pools, coloc, exloc []string
		for _, i := range grp {
			op := ops[i]
			p.Operators = append(p.Operators, op.Name)
			p.Config.Operators = append(p.Config.Operators, op)
			plan.PortTable.Operators[op.Name] = p.Name
			pools = append(pools, op.HostPool)
			coloc = append(coloc, op.Colocate)
			exloc = append(exloc, op.Exlocate)
		}
		p.Placement = v1alpha1.PEPlacement{HostPools: sortedSet(pools), Colocate: sortedSet(coloc), Exlocate: sortedSet(exloc)}
	}
	// Streams touching each PE, and PE input ports for cross-PE streams, in
	// stream order so that port numbers are stable.
	inputOf := map[v1alpha1.Endpoint]int{} // operator input port -> index in its PE's Inputs
	for s, st := range streams {
		ref := peconfig.Stream{ID: int32(s), From: st.From, To: st.To}
		from, to := peOf[g.Index[st.From.Operator]], peOf[g.Index[st.To.Operator]]
		plan.PEs[from].Config.Streams = append(plan.PEs[from].Config.Streams, ref)
		if to == from {
			continue
		}
		dst := &plan.PEs[to].Config
		dst.Streams = append(dst.Streams, ref)
		k, ok := inputOf[st.To]
		if !ok {
			k = len(dst.Inputs)
			inputOf[st.To] = k
			dst.Inputs = append(dst.Inputs, peconfig.Input{Port: int32(k), Operator: st.To.Operator, OperatorPort: st.To.Port})
			plan.PortTable.Inputs = append(plan.PortTable.Inputs, peconfig.PortEntry{
				Operator: st.To.Operator, OperatorPort: st.To.Port, PE: dst.Name, PEPort: int32(k)})
		}
		dst.Inputs[k].Streams = append(dst.Inputs[k].Streams, int32(s))
	}
	plan.PortTable.Sort()
	planImportExport(job, spec, plan)
	planRegions(job, spec, plan)
	plan.planParallel(job, origSpec, x)
	return plan, nil
}
