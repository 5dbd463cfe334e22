package operators

import (
	"reflect"
	"testing"

	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/app"
)

// The planner refuses width changes by app.StateMovesAcrossWidths; the
// engine redistributes by these interfaces. They must agree, or a width
// change the planner allows fails its reset.
func TestStateMovesAcrossWidthsMatchesTheOperators(t *testing.T) {
	types := map[v1alpha1.OperatorKind]reflect.Type{
		v1alpha1.KindSource:    reflect.TypeFor[*Source](),
		v1alpha1.KindMap:       reflect.TypeFor[*Map](),
		v1alpha1.KindFilter:    reflect.TypeFor[*Filter](),
		v1alpha1.KindAggregate: reflect.TypeFor[*Aggregate](),
		v1alpha1.KindSplit:     reflect.TypeFor[*Split](),
		v1alpha1.KindUnion:     reflect.TypeFor[*Union](),
		v1alpha1.KindSink:      reflect.TypeFor[*Sink](),
		v1alpha1.KindExport:    reflect.TypeFor[*Export](),
		v1alpha1.KindImport:    reflect.TypeFor[*Import](),
	}
	stateful, redistributes := reflect.TypeFor[Stateful](), reflect.TypeFor[Redistributor]()
	for kind, typ := range types {
		moves := !typ.Implements(stateful) || typ.Implements(redistributes)
		if got := app.StateMovesAcrossWidths(kind); got != moves {
			t.Errorf("%s: the planner says its state moves %v, the runtime %v", kind, got, moves)
		}
	}
}
