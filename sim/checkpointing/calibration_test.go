package checkpointing

import (
	"testing"

	"k8s.io/utils/ptr"

	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/runtime/operators"
	"sluice.dev/sluice/platform/runtime/wire"
)

type feed struct{ op operators.Operator }

func (f feed) Emit(port int, t *wire.Tuple) { f.op.Process(port, t) }

// aggregateSnapshot feeds the runtime's aggregate n tuples of a source with
// the given keys, as the region pipeline does, and returns its snapshot.
func aggregateSnapshot(t *testing.T, keys, n int64) int {
	now := func() int64 { return 1_764_000_000_000_000_000 } // a 2025 wall clock
	agg, err := operators.NewAggregate("agg", &v1alpha1.OperatorParams{WindowMillis: ptr.To[int64](3600000), Function: "sum"},
		operators.Env{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	src := operators.NewSource("src", &v1alpha1.OperatorParams{Rate: ptr.To[int64](1000), TupleSize: ptr.To[int32](16), Keys: ptr.To(keys)},
		operators.Env{Out: feed{agg}})
	src.Emit(uint64(n), now())
	b, err := agg.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	return len(b)
}

// bytesPerKey is the runtime aggregate's snapshot size per key once the
// window has seen every key (a few times each).
func TestBytesPerKeyMatchesRuntime(t *testing.T) {
	const keys = 20000
	base := aggregateSnapshot(t, 1, 1)
	full := aggregateSnapshot(t, keys, 10*keys)
	perKey := float64(full-base) / keys
	p := DefaultParams()
	if d := float64(p.BytesPerKey) - perKey; d < -0.05*perKey || d > 0.05*perKey {
		t.Fatalf("runtime aggregate snapshot: %.1f bytes per key; params.yaml bytesPerKey is %d", perKey, p.BytesPerKey)
	}
	// The fixed part: an aggregate less its key, a sink that received
	// from a source, a source; operatorBytes is their mean.
	sink := operators.NewSink("sink", operators.Env{})
	src := operators.NewSource("src", &v1alpha1.OperatorParams{Keys: ptr.To[int64](keys)}, operators.Env{Out: feed{sink}})
	src.Emit(1000, 1)
	sinkB, err := sink.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	srcB, err := src.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	mean := float64(base-int(perKey)+len(sinkB)+len(srcB)) / 3
	if d := float64(p.OperatorBytes) - mean; d < -0.25*mean || d > 0.25*mean {
		t.Fatalf("fixed snapshot parts: aggregate %d, sink %d, source %d bytes (mean %.0f); operatorBytes is %d",
			base-int(perKey), len(sinkB), len(srcB), mean, p.OperatorBytes)
	}
	t.Logf("%.1f bytes per key; fixed parts: aggregate %d, sink %d, source %d bytes", perKey, base-int(perKey), len(sinkB), len(srcB))
}
