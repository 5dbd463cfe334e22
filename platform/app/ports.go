// Package app is the pure logic of an application graph: port arity by
// operator kind, validation, fusion into processing elements and the
// configuration each PE runs from. It does no I/O.
package app

import "sluice.dev/sluice/platform/api/v1alpha1"

// KnownKind reports whether the PE runtime can run operators of kind k.
func KnownKind(k v1alpha1.OperatorKind) bool {
	switch k {
	case v1alpha1.KindSource, v1alpha1.KindMap, v1alpha1.KindFilter, v1alpha1.KindAggregate,
		v1alpha1.KindSplit, v1alpha1.KindUnion, v1alpha1.KindSink, v1alpha1.KindExport, v1alpha1.KindImport:
		return true
	}
	return false
}

// InputPorts is the number of input ports of an operator.
func InputPorts(op *v1alpha1.Operator) int32 {
	switch op.Kind {
	case v1alpha1.KindSource, v1alpha1.KindImport:
		return 0
	case v1alpha1.KindUnion:
		if op.Params != nil && op.Params.Inputs != nil {
			return *op.Params.Inputs
		}
		return 2
	default:
		return 1
	}
}

// OutputPorts is the number of output ports of an operator.
func OutputPorts(op *v1alpha1.Operator) int32 {
	switch op.Kind {
	case v1alpha1.KindSink, v1alpha1.KindExport:
		return 0
	case v1alpha1.KindSplit:
		if op.Params != nil && op.Params.Outputs != nil {
			return *op.Params.Outputs
		}
		return 2
	default:
		return 1
	}
}
