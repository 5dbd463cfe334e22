package app

import (
	"slices"

	"sluice.dev/sluice/platform/api/v1alpha1"
)

// StateMovesAcrossWidths says whether an operator of this kind can sit in
// a parallel region whose width changes inside a consistent region: it
// keeps no checkpointed state, or its state can be rebuilt at another width
// from every old channel's copy (the runtime's operators.Redistributor,
// which a test keeps in step with this list). Unknown kinds cannot.
func StateMovesAcrossWidths(k v1alpha1.OperatorKind) bool {
	switch k {
	case v1alpha1.KindMap, v1alpha1.KindUnion, v1alpha1.KindExport, v1alpha1.KindImport,
		v1alpha1.KindFilter, v1alpha1.KindAggregate:
		return true
	}
	return false
}

// StatePinningWidth returns the operators of parallel region region that
// are also in a consistent region and whose state cannot move to another
// width: while it has any, the region's width cannot change (a reset at
// the new width could not restore them).
func StatePinningWidth(spec *v1alpha1.JobSpec, region string) []string {
	inConsistent := map[string]bool{}
	for _, cr := range spec.Application.ConsistentRegions {
		for _, op := range cr.Operators {
			inConsistent[op] = true
		}
	}
	kinds := map[string]v1alpha1.OperatorKind{}
	for _, op := range spec.Application.Operators {
		kinds[op.Name] = op.Kind
	}
	var out []string
	for _, def := range spec.Application.ParallelRegions {
		if def.Name != region {
			continue
		}
		for _, op := range def.Operators {
			if inConsistent[op] && !StateMovesAcrossWidths(kinds[op]) {
				out = append(out, op)
			}
		}
	}
	slices.Sort(out)
	return out
}
