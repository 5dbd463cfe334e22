package app

import (
	"fmt"
	"math/rand"

	"k8s.io/utils/ptr"

	"sluice.dev/sluice/platform/api/v1alpha1"
)

// Spec builders for tests: short names, explicit ports.

func op(name string, kind v1alpha1.OperatorKind) v1alpha1.Operator {
	return v1alpha1.Operator{Name: name, Kind: kind}
}

func split(name string, outputs int32) v1alpha1.Operator {
	return v1alpha1.Operator{Name: name, Kind: v1alpha1.KindSplit, Params: &v1alpha1.OperatorParams{Outputs: ptr.To(outputs)}}
}

func union(name string, inputs int32) v1alpha1.Operator {
	return v1alpha1.Operator{Name: name, Kind: v1alpha1.KindUnion, Params: &v1alpha1.OperatorParams{Inputs: ptr.To(inputs)}}
}

func st(from string, fromPort int32, to string, toPort int32) v1alpha1.Stream {
	return v1alpha1.Stream{From: v1alpha1.Endpoint{Operator: from, Port: fromPort}, To: v1alpha1.Endpoint{Operator: to, Port: toPort}}
}

func spec(ops []v1alpha1.Operator, streams ...v1alpha1.Stream) *v1alpha1.JobSpec {
	return &v1alpha1.JobSpec{Application: v1alpha1.Application{Operators: ops, Streams: streams}}
}

// chain is src -> m1 -> ... -> m<n-2> -> sink: n operators in all.
func chain(n int) *v1alpha1.JobSpec {
	ops := []v1alpha1.Operator{op("src", v1alpha1.KindSource)}
	prev := "src"
	for i := 1; i < n-1; i++ {
		name := fmt.Sprintf("m%d", i)
		ops = append(ops, op(name, v1alpha1.KindMap))
	}
	ops = append(ops, op("sink", v1alpha1.KindSink))
	var streams []v1alpha1.Stream
	for _, o := range ops[1:] {
		streams = append(streams, st(prev, 0, o.Name, 0))
		prev = o.Name
	}
	return spec(ops, streams...)
}

// diamond is src -> split -> {left, right} -> union -> sink, declared so
// that the union's port 1 is fed before its port 0 in stream order.
func diamond() *v1alpha1.JobSpec {
	return spec([]v1alpha1.Operator{
		op("src", v1alpha1.KindSource),
		op("fork", v1alpha1.KindSplit),
		op("left", v1alpha1.KindMap),
		op("right", v1alpha1.KindFilter),
		op("join", v1alpha1.KindUnion),
		op("sink", v1alpha1.KindSink),
	},
		st("src", 0, "fork", 0),
		st("fork", 0, "left", 0),
		st("fork", 1, "right", 0),
		st("right", 0, "join", 1),
		st("left", 0, "join", 0),
		st("join", 0, "sink", 0),
	)
}

// randomDAG makes a valid application of about n operators from seed:
// sources, then layers of maps, filters, aggregates, splits and unions fed
// from earlier operators, closed by a sink on every output port left over.
// Operators are declared in a shuffled order so that declaration order and
// topological order differ.
func randomDAG(seed int64, n int) *v1alpha1.JobSpec {
	r := rand.New(rand.NewSource(seed))
	var ops []v1alpha1.Operator
	var streams []v1alpha1.Stream
	type port struct {
		op   string
		port int32
	}
	var free []port // output ports feeding nothing yet
	take := func() port {
		if len(free) == 0 {
			// Reuse an existing output: an output may feed several streams.
			o := ops[r.Intn(len(ops))]
			for o.Kind == v1alpha1.KindSink {
				o = ops[r.Intn(len(ops))]
			}
			return port{o.Name, int32(r.Intn(int(OutputPorts(&o))))}
		}
		i := r.Intn(len(free))
		p := free[i]
		free = append(free[:i], free[i+1:]...)
		return p
	}
	sources := 1 + r.Intn(3)
	for i := 0; i < sources; i++ {
		name := fmt.Sprintf("src%d", i)
		ops = append(ops, op(name, v1alpha1.KindSource))
		free = append(free, port{name, 0})
	}
	kinds := []v1alpha1.OperatorKind{v1alpha1.KindMap, v1alpha1.KindFilter, v1alpha1.KindAggregate, v1alpha1.KindSplit, v1alpha1.KindUnion}
	for len(ops) < n {
		k := kinds[r.Intn(len(kinds))]
		name := fmt.Sprintf("op%d", len(ops))
		o := op(name, k)
		switch k {
		case v1alpha1.KindSplit:
			o = split(name, int32(2+r.Intn(3)))
		case v1alpha1.KindUnion:
			o = union(name, int32(2+r.Intn(2)))
		}
		for in := int32(0); in < InputPorts(&o); in++ {
			p := take()
			streams = append(streams, st(p.op, p.port, name, in))
		}
		ops = append(ops, o)
		for out := int32(0); out < OutputPorts(&o); out++ {
			free = append(free, port{name, out})
		}
	}
	for i, p := range free {
		name := fmt.Sprintf("sink%d", i)
		ops = append(ops, op(name, v1alpha1.KindSink))
		streams = append(streams, st(p.op, p.port, name, 0))
	}
	r.Shuffle(len(ops), func(i, j int) { ops[i], ops[j] = ops[j], ops[i] })
	r.Shuffle(len(streams), func(i, j int) { streams[i], streams[j] = streams[j], streams[i] })
	return spec(ops, streams...)
}
