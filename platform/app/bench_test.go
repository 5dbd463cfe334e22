package app

import (
	"testing"

	"k8s.io/utils/ptr"

	"sluice.dev/sluice/platform/api/v1alpha1"
)

// BenchmarkBuild10k builds the largest application the API admits (10,000
// operators) as a pipeline and as a random graph. It must stay far below a
// second per Build: the Job controller builds the plan on every reconcile.
//
//	go test ./platform/app -run '^$' -bench Build10k -benchtime 5x
func BenchmarkBuild10k(b *testing.B) {
	for _, bc := range []struct {
		name string
		spec *v1alpha1.JobSpec
		f    v1alpha1.Fusion
	}{
		{"pipeline/perOperator", chain(10000), v1alpha1.Fusion{Mode: v1alpha1.FusionPerOperator}},
		{"pipeline/target100", chain(10000), v1alpha1.Fusion{Mode: v1alpha1.FusionTarget, TargetPEs: ptr.To[int32](100)}},
		{"random/perOperator", randomDAG(1, 9000), v1alpha1.Fusion{Mode: v1alpha1.FusionPerOperator}},
	} {
		bc.spec.Fusion = bc.f
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if _, errs := Build("ns", "bench", bc.spec); len(errs) > 0 {
					b.Fatal(errs.ToAggregate())
				}
			}
		})
	}
}
