package operators

import (
	"testing"

	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/runtime/wire"
)

// discard is a test Emitter that drops everything.
type discard struct{ n int }

func (d *discard) Emit(int, *wire.Tuple) { d.n++ }

func BenchmarkSinkProcess(b *testing.B) {
	s := NewSink("sink", Env{Now: func() int64 { return 2e9 }})
	tp := wire.Tuple{Origin: 1, Time: 1e9}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		tp.Seq = uint64(i)
		s.Process(0, &tp)
	}
}

func BenchmarkFilterProcess(b *testing.B) {
	f := NewFilter(50, &discard{})
	tp := wire.Tuple{Origin: 1}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		tp.Seq, tp.Skip = uint64(i), 0
		f.Process(0, &tp)
	}
}

func BenchmarkAggregateProcess(b *testing.B) {
	a, _ := NewAggregate("agg", &v1alpha1.OperatorParams{WindowMillis: i64(100)}, Env{Out: &discard{}})
	tp := wire.Tuple{Origin: 1}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		tp.Seq, tp.Key, tp.Time = uint64(i), uint64(i%64), int64(i)*1000 // 100k tuples per window
		a.Process(0, &tp)
	}
}

func BenchmarkTupleDigest(b *testing.B) {
	tp := wire.Tuple{Origin: 1, Key: 3, Event: 5, Value: 7}
	var sum uint64
	for i := 0; i < b.N; i++ {
		tp.Seq = uint64(i)
		sum += TupleDigest(&tp)
	}
	if sum == 1 {
		b.Log(sum) // keeps the loop from being optimised away
	}
}
