package app

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"

	"sluice.dev/sluice/platform/api/v1alpha1"
)

func TestPortArity(t *testing.T) {
	for _, tc := range []struct {
		op      v1alpha1.Operator
		in, out int32
	}{
		{op("s", v1alpha1.KindSource), 0, 1},
		{op("m", v1alpha1.KindMap), 1, 1},
		{op("f", v1alpha1.KindFilter), 1, 1},
		{op("a", v1alpha1.KindAggregate), 1, 1},
		{op("sp", v1alpha1.KindSplit), 1, 2},
		{split("sp", 5), 1, 5},
		{op("u", v1alpha1.KindUnion), 2, 1},
		{union("u", 4), 4, 1},
		{op("k", v1alpha1.KindSink), 1, 0},
		// Params of another kind do not change the arity.
		{v1alpha1.Operator{Name: "m", Kind: v1alpha1.KindMap, Params: &v1alpha1.OperatorParams{Outputs: ptr.To[int32](3), Inputs: ptr.To[int32](3)}}, 1, 1},
		// A split with params but no outputs keeps the default.
		{v1alpha1.Operator{Name: "sp", Kind: v1alpha1.KindSplit, Params: &v1alpha1.OperatorParams{SplitBy: "key"}}, 1, 2},
	} {
		if got := InputPorts(&tc.op); got != tc.in {
			t.Errorf("InputPorts(%s %+v) = %d, want %d", tc.op.Kind, tc.op.Params, got, tc.in)
		}
		if got := OutputPorts(&tc.op); got != tc.out {
			t.Errorf("OutputPorts(%s %+v) = %d, want %d", tc.op.Kind, tc.op.Params, got, tc.out)
		}
	}
	for _, k := range []v1alpha1.OperatorKind{"source", "map", "filter", "aggregate", "split", "union", "sink"} {
		if !KnownKind(k) {
			t.Errorf("KnownKind(%q) = false", k)
		}
	}
	for _, k := range []v1alpha1.OperatorKind{"", "join", "Source", "sink "} {
		if KnownKind(k) {
			t.Errorf("KnownKind(%q) = true", k)
		}
	}
}

// wantErr is one fault Validate must report.
type wantErr struct {
	field  string
	typ    field.ErrorType
	detail string // substring of Detail, or of the bad value
}

func matches(e *field.Error, w wantErr) bool {
	if e.Field != w.field || e.Type != w.typ {
		return false
	}
	return w.detail == "" || strings.Contains(e.Detail, w.detail) || strings.Contains(e.Error(), w.detail)
}

func checkErrs(t *testing.T, errs field.ErrorList, want []wantErr) {
	t.Helper()
	for _, w := range want {
		found := false
		for _, e := range errs {
			if matches(e, w) {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("missing error %s %s %q; got:\n%v", w.field, w.typ, w.detail, errs.ToAggregate())
		}
	}
	// Every error names a field: a path the user can act on.
	for _, e := range errs {
		if e.Field == "" || e.Field == "<nil>" {
			t.Errorf("error without a field path: %v", e)
		}
	}
	if len(want) > 0 && len(errs) == 0 {
		t.Errorf("no errors, want %d", len(want))
	}
}

func TestValidate(t *testing.T) {
	const ops = "spec.application.operators"
	const streams = "spec.application.streams"
	ok := func() *v1alpha1.JobSpec { return chain(3) }
	for _, tc := range []struct {
		name string
		job  string
		spec func() *v1alpha1.JobSpec
		want []wantErr // nil: valid
	}{
		{name: "valid chain", spec: ok},
		{name: "valid diamond", spec: diamond},
		{name: "valid single operator pair", spec: func() *v1alpha1.JobSpec { return chain(2) }},
		{name: "empty graph", spec: func() *v1alpha1.JobSpec { return spec(nil) },
			want: []wantErr{{ops, field.ErrorTypeRequired, "at least one operator"}}},
		{name: "unknown kind", spec: func() *v1alpha1.JobSpec {
			s := ok()
			s.Application.Operators[1].Kind = "join"
			return s
		}, want: []wantErr{{ops + "[1].kind", field.ErrorTypeNotSupported, "join"}}},
		{name: "stream from missing operator", spec: func() *v1alpha1.JobSpec {
			s := ok()
			s.Application.Streams = append(s.Application.Streams, st("ghost", 0, "sink", 0))
			return s
		}, want: []wantErr{{streams + "[2].from.operator", field.ErrorTypeNotFound, "ghost"}}},
		{name: "stream to missing operator", spec: func() *v1alpha1.JobSpec {
			s := ok()
			s.Application.Streams[1].To.Operator = "nowhere"
			return s
		}, want: []wantErr{{streams + "[1].to.operator", field.ErrorTypeNotFound, "nowhere"}}},
		{name: "source has no input port", spec: func() *v1alpha1.JobSpec {
			s := ok()
			s.Application.Streams = append(s.Application.Streams, st("m1", 0, "src", 0))
			return s
		}, want: []wantErr{{streams + "[2].to.port", field.ErrorTypeInvalid, `"src" (source) has 0 input port(s)`}}},
		{name: "source has one output port", spec: func() *v1alpha1.JobSpec {
			s := ok()
			s.Application.Streams[0].From.Port = 1
			return s
		}, want: []wantErr{{streams + "[0].from.port", field.ErrorTypeInvalid, "has 1 output port(s)"}}},
		{name: "sink has no output port", spec: func() *v1alpha1.JobSpec {
			s := spec([]v1alpha1.Operator{op("src", "source"), op("k", "sink"), op("k2", "sink")},
				st("src", 0, "k", 0), st("k", 0, "k2", 0))
			return s
		}, want: []wantErr{{streams + "[1].from.port", field.ErrorTypeInvalid, `"k" (sink) has 0 output port(s)`}}},
		{name: "sink has one input port", spec: func() *v1alpha1.JobSpec {
			s := ok()
			s.Application.Streams[1].To.Port = 1
			return s
		}, want: []wantErr{{streams + "[1].to.port", field.ErrorTypeInvalid, `"sink" (sink) has 1 input port(s)`}}},
		{name: "map has one input port", spec: func() *v1alpha1.JobSpec {
			s := ok()
			s.Application.Streams[0].To.Port = 1
			return s
		}, want: []wantErr{{streams + "[0].to.port", field.ErrorTypeInvalid, "has 1 input port(s)"}}},
		{name: "negative port", spec: func() *v1alpha1.JobSpec {
			s := ok()
			s.Application.Streams[1].From.Port = -1
			return s
		}, want: []wantErr{{streams + "[1].from.port", field.ErrorTypeInvalid, "has 1 output port(s)"}}},
		{name: "split default has two outputs", spec: func() *v1alpha1.JobSpec {
			s := diamond()
			s.Application.Streams[2].From.Port = 2
			return s
		}, want: []wantErr{{streams + "[2].from.port", field.ErrorTypeInvalid, `"fork" (split) has 2 output port(s)`}}},
		{name: "split with params.outputs=3 accepts port 2", spec: func() *v1alpha1.JobSpec {
			s := diamond()
			s.Application.Operators[1] = split("fork", 3)
			s.Application.Operators = append(s.Application.Operators, op("extra", v1alpha1.KindSink))
			s.Application.Streams = append(s.Application.Streams, st("fork", 2, "extra", 0))
			return s
		}},
		{name: "split with params.outputs=3 rejects port 3", spec: func() *v1alpha1.JobSpec {
			s := diamond()
			s.Application.Operators[1] = split("fork", 3)
			s.Application.Operators = append(s.Application.Operators, op("extra", v1alpha1.KindSink))
			s.Application.Streams = append(s.Application.Streams, st("fork", 3, "extra", 0))
			return s
		}, want: []wantErr{{streams + "[6].from.port", field.ErrorTypeInvalid, "has 3 output port(s)"}}},
		{name: "union default has two inputs", spec: func() *v1alpha1.JobSpec {
			s := diamond()
			s.Application.Streams[3].To.Port = 2
			return s
		}, want: []wantErr{{streams + "[3].to.port", field.ErrorTypeInvalid, `"join" (union) has 2 input port(s)`}}},
		{name: "union with params.inputs=3 needs port 2 fed", spec: func() *v1alpha1.JobSpec {
			s := diamond()
			s.Application.Operators[4] = union("join", 3)
			return s
		}, want: []wantErr{{ops + "[4]", field.ErrorTypeInvalid, "input port 2 is not fed by any stream"}}},
		{name: "union with params.inputs=3 rejects port 3", spec: func() *v1alpha1.JobSpec {
			s := diamond()
			s.Application.Operators[4] = union("join", 3)
			s.Application.Streams = append(s.Application.Streams, st("src", 0, "join", 3))
			return s
		}, want: []wantErr{{streams + "[6].to.port", field.ErrorTypeInvalid, "has 3 input port(s)"}}},
		{name: "split with no output ports", spec: func() *v1alpha1.JobSpec {
			s := diamond()
			s.Application.Operators[1] = split("fork", 0)
			return s
		}, want: []wantErr{{ops + "[1].params.outputs", field.ErrorTypeInvalid, "1 to 1024 output ports"}}},
		{name: "union with too many input ports", spec: func() *v1alpha1.JobSpec {
			// Rejected before the per-port checks, which would otherwise
			// walk a billion ports.
			s := diamond()
			s.Application.Operators[4] = union("join", 1<<30)
			return s
		}, want: []wantErr{{ops + "[4].params.inputs", field.ErrorTypeInvalid, "1 to 1024 input ports"}}},
		{name: "union with negative input ports", spec: func() *v1alpha1.JobSpec {
			s := diamond()
			s.Application.Operators[4] = union("join", -1)
			return s
		}, want: []wantErr{{ops + "[4].params.inputs", field.ErrorTypeInvalid, ""}}},
		{name: "union of 1024 inputs", spec: func() *v1alpha1.JobSpec {
			s := spec([]v1alpha1.Operator{op("src", "source"), union("u", 1024), op("k", "sink")}, st("u", 0, "k", 0))
			for i := int32(0); i < 1024; i++ {
				s.Application.Streams = append(s.Application.Streams, st("src", 0, "u", i))
			}
			return s
		}},
		{name: "unconnected split output", spec: func() *v1alpha1.JobSpec {
			s := diamond()
			s.Application.Streams[2] = st("fork", 0, "right", 0) // port 1 now feeds nothing
			return s
		}, want: []wantErr{{ops + "[1]", field.ErrorTypeInvalid, "output port 1 feeds no stream"}}},
		{name: "unconnected map input", spec: func() *v1alpha1.JobSpec {
			s := ok()
			s.Application.Operators = append(s.Application.Operators, op("lonely", v1alpha1.KindMap))
			s.Application.Streams = append(s.Application.Streams, st("lonely", 0, "sink", 0))
			return s
		}, want: []wantErr{{ops + "[3]", field.ErrorTypeInvalid, "input port 0 is not fed by any stream"}}},
		{name: "unconnected source output", spec: func() *v1alpha1.JobSpec {
			s := ok()
			s.Application.Operators = append(s.Application.Operators, op("idle", v1alpha1.KindSource))
			return s
		}, want: []wantErr{{ops + "[3]", field.ErrorTypeInvalid, "output port 0 feeds no stream"}}},
		{name: "cycle", spec: func() *v1alpha1.JobSpec {
			// src -> a -> b -> a (a's one input port is fed twice), b -> sink.
			return spec([]v1alpha1.Operator{op("src", "source"), op("a", "map"), op("b", "map"), op("sink", "sink")},
				st("src", 0, "a", 0), st("a", 0, "b", 0), st("b", 0, "a", 0), st("b", 0, "sink", 0))
		}, want: []wantErr{{streams, field.ErrorTypeInvalid, "the streams form a cycle"}}},
		{name: "self loop", spec: func() *v1alpha1.JobSpec {
			return spec([]v1alpha1.Operator{op("src", "source"), op("me", "map"), op("sink", "sink")},
				st("src", 0, "me", 0), st("me", 0, "me", 0), st("me", 0, "sink", 0))
		}, want: []wantErr{{streams, field.ErrorTypeInvalid, `"me"`}}},
		{name: "cycle names an operator on it, not one downstream", spec: func() *v1alpha1.JobSpec {
			// sink is declared first and is left over by the topological
			// sort, but it is not on the cycle u -> m -> u.
			return spec([]v1alpha1.Operator{op("sink", "sink"), op("src", "source"), op("u", "union"), op("m", "map")},
				st("src", 0, "u", 0), st("u", 0, "m", 0), st("m", 0, "u", 1), st("m", 0, "sink", 0))
		}, want: []wantErr{{streams, field.ErrorTypeInvalid, "the streams form a cycle"}}},
		{name: "cycle without a source", spec: func() *v1alpha1.JobSpec {
			return spec([]v1alpha1.Operator{op("x", "map"), op("y", "map")}, st("x", 0, "y", 0), st("y", 0, "x", 0))
		}, want: []wantErr{{streams, field.ErrorTypeInvalid, "the streams form a cycle"}}},
		{name: "duplicate operator names", spec: func() *v1alpha1.JobSpec {
			s := ok()
			s.Application.Operators = append(s.Application.Operators, op("m1", v1alpha1.KindFilter))
			return s
		}, want: []wantErr{{ops + "[3].name", field.ErrorTypeDuplicate, "m1"}}},
		{name: "duplicate streams", spec: func() *v1alpha1.JobSpec {
			s := ok()
			s.Application.Streams = append(s.Application.Streams, st("src", 0, "m1", 0))
			return s
		}, want: []wantErr{{streams + "[2]", field.ErrorTypeDuplicate, "src:0 -> m1:0"}}},
		{name: "unknown host pool", spec: func() *v1alpha1.JobSpec {
			s := ok()
			s.Placement.HostPools = []v1alpha1.HostPoolSpec{{Name: "fast"}}
			s.Application.Operators[1].HostPool = "slow"
			return s
		}, want: []wantErr{{ops + "[1].hostPool", field.ErrorTypeNotFound, "slow"}}},
		{name: "known host pool", spec: func() *v1alpha1.JobSpec {
			s := ok()
			s.Placement.HostPools = []v1alpha1.HostPoolSpec{{Name: "fast"}}
			s.Application.Operators[1].HostPool = "fast"
			return s
		}},
		{name: "duplicate host pools", spec: func() *v1alpha1.JobSpec {
			s := ok()
			s.Placement.HostPools = []v1alpha1.HostPoolSpec{{Name: "fast"}, {Name: "slow"}, {Name: "fast", Exclusive: true}}
			return s
		}, want: []wantErr{{"spec.placement.hostPools[2].name", field.ErrorTypeDuplicate, "fast"}}},
		{name: "node selector key is not a label key", spec: func() *v1alpha1.JobSpec {
			s := ok()
			s.Placement.HostPools = []v1alpha1.HostPoolSpec{{Name: "fast", NodeSelector: map[string]string{"bad key!!": "x"}}}
			s.Application.Operators[1].HostPool = "fast"
			return s
		}, want: []wantErr{{"spec.placement.hostPools[0].nodeSelector", field.ErrorTypeInvalid, "bad key!!"}}},
		{name: "node selector value is not a label value", spec: func() *v1alpha1.JobSpec {
			s := ok()
			s.Placement.HostPools = []v1alpha1.HostPoolSpec{{Name: "fast", NodeSelector: map[string]string{"disk": "ssd fast"}}}
			return s
		}, want: []wantErr{{"spec.placement.hostPools[0].nodeSelector", field.ErrorTypeInvalid, "ssd fast"}}},
		{name: "valid node selector with a prefixed key", spec: func() *v1alpha1.JobSpec {
			s := ok()
			s.Placement.HostPools = []v1alpha1.HostPoolSpec{{Name: "fast", NodeSelector: map[string]string{"node.kubernetes.io/instance-type": "m5.large", "disk": ""}}}
			s.Application.Operators[1].HostPool = "fast"
			return s
		}},
		{name: "colocate equals exlocate", spec: func() *v1alpha1.JobSpec {
			s := ok()
			s.Application.Operators[2].Colocate = "g"
			s.Application.Operators[2].Exlocate = "g"
			return s
		}, want: []wantErr{{ops + "[2].exlocate", field.ErrorTypeInvalid, "colocated and exlocated with the same group"}}},
		{name: "different colocate and exlocate", spec: func() *v1alpha1.JobSpec {
			s := ok()
			s.Application.Operators[2].Colocate = "g"
			s.Application.Operators[2].Exlocate = "h"
			return s
		}},
		{name: "job name of 40 characters", job: strings.Repeat("j", 40), spec: ok},
		{name: "job name too long", job: strings.Repeat("j", 41), spec: ok,
			want: []wantErr{{"metadata.name", field.ErrorTypeTooLong, "40"}}},
		{name: "job name starting with a digit", job: "1st", spec: ok,
			want: []wantErr{{"metadata.name", field.ErrorTypeInvalid, "Services"}}},
		{name: "job name with a dot", job: "a.b", spec: ok,
			want: []wantErr{{"metadata.name", field.ErrorTypeInvalid, "Services"}}},
		{name: "every fault reported at once", spec: func() *v1alpha1.JobSpec {
			s := ok()
			s.Placement.HostPools = []v1alpha1.HostPoolSpec{{Name: "p"}, {Name: "p"}}
			s.Application.Operators[0].HostPool = "q"
			s.Application.Operators[1].Kind = "bogus"
			s.Application.Operators[2].Colocate, s.Application.Operators[2].Exlocate = "x", "x"
			return s
		}, job: strings.Repeat("a", 50), want: []wantErr{
			{"metadata.name", field.ErrorTypeTooLong, ""},
			{"spec.placement.hostPools[1].name", field.ErrorTypeDuplicate, ""},
			{ops + "[0].hostPool", field.ErrorTypeNotFound, ""},
			{ops + "[1].kind", field.ErrorTypeNotSupported, ""},
			{ops + "[2].exlocate", field.ErrorTypeInvalid, ""},
		}},
		{name: "unconnected port and cycle reported together", spec: func() *v1alpha1.JobSpec {
			return spec([]v1alpha1.Operator{op("src", "source"), op("me", "map"), op("sink", "sink"), op("idle", "source")},
				st("src", 0, "me", 0), st("me", 0, "me", 0), st("me", 0, "sink", 0))
		}, want: []wantErr{
			{ops + "[3]", field.ErrorTypeInvalid, "output port 0 feeds no stream"},
			{streams, field.ErrorTypeInvalid, "cycle"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			job := tc.job
			if job == "" {
				job = "job"
			}
			g, errs := Validate(job, tc.spec())
			if tc.want == nil {
				if len(errs) > 0 {
					t.Fatalf("unexpected errors: %v", errs.ToAggregate())
				}
				if g == nil || len(g.Order) != len(g.Spec.Application.Operators) {
					t.Fatalf("valid spec without a full topological order: %+v", g)
				}
				return
			}
			if g != nil {
				t.Errorf("invalid spec returned a graph")
			}
			checkErrs(t, errs, tc.want)
		})
	}
}

// The cycle error names an operator that is on the cycle.
func TestValidateCycleNamesOperatorOnCycle(t *testing.T) {
	for _, tc := range []struct {
		name  string
		spec  *v1alpha1.JobSpec
		onCyc []string
	}{
		{"downstream declared first",
			spec([]v1alpha1.Operator{op("sink", "sink"), op("src", "source"), op("u", "union"), op("m", "map")},
				st("src", 0, "u", 0), st("u", 0, "m", 0), st("m", 0, "u", 1), st("m", 0, "sink", 0)),
			[]string{"u", "m"}},
		{"long tail before the cycle in declaration order",
			spec([]v1alpha1.Operator{op("t3", "sink"), op("t2", "map"), op("t1", "map"), op("src", "source"), op("u", "union"), op("a", "map"), op("b", "filter")},
				st("src", 0, "u", 0), st("u", 0, "a", 0), st("a", 0, "b", 0), st("b", 0, "u", 1), st("b", 0, "t1", 0), st("t1", 0, "t2", 0), st("t2", 0, "t3", 0)),
			[]string{"u", "a", "b"}},
		{"self loop", spec([]v1alpha1.Operator{op("k", "sink"), op("src", "source"), op("u", "union")},
			st("src", 0, "u", 0), st("u", 0, "u", 1), st("u", 0, "k", 0)),
			[]string{"u"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, errs := Validate("job", tc.spec)
			if len(errs) != 1 {
				t.Fatalf("want exactly the cycle error, got %v", errs.ToAggregate())
			}
			name, _ := errs[0].BadValue.(string)
			on := false
			for _, o := range tc.onCyc {
				on = on || o == name
			}
			if !on {
				t.Errorf("cycle error names %q, which is not on the cycle %v", name, tc.onCyc)
			}
		})
	}
}

func TestValidateIndexesStreams(t *testing.T) {
	g, errs := Validate("job", diamond())
	if len(errs) > 0 {
		t.Fatal(errs.ToAggregate())
	}
	// Every stream leaves its source operator and enters its target.
	for s, stream := range g.Spec.Application.Streams {
		from, to := g.Index[stream.From.Operator], g.Index[stream.To.Operator]
		if !containsID(g.Out[from], int32(s)) || !containsID(g.In[to], int32(s)) {
			t.Errorf("stream %d not indexed: out %v in %v", s, g.Out[from], g.In[to])
		}
	}
	// The order is topological.
	pos := map[int]int{}
	for k, i := range g.Order {
		pos[i] = k
	}
	for _, stream := range g.Spec.Application.Streams {
		if pos[g.Index[stream.From.Operator]] >= pos[g.Index[stream.To.Operator]] {
			t.Errorf("stream %v goes backward in order %v", stream, g.Order)
		}
	}
}

func containsID(ids []int32, id int32) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}
