package app

import (
	"fmt"
	"sort"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/utils/ptr"

	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/peconfig"
)

func TestNames(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{PEName("job", 0), "job-pe-0"},
		{PEName("a-b", 12), "a-b-pe-12"},
		{PortTableName("job"), "job-ports"},
		{HostPoolName("job", "gpu"), "job-gpu"},
		{PodName("job-pe-3", 0), "job-pe-3-0"},
		{PodName("job-pe-3", 17), "job-pe-3-17"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

func mustBuild(t testing.TB, ns, job string, s *v1alpha1.JobSpec) *Plan {
	t.Helper()
	plan, errs := Build(ns, job, s)
	if len(errs) > 0 {
		t.Fatalf("Build: %v", errs.ToAggregate())
	}
	return plan
}

func TestBuildDiamondPerOperator(t *testing.T) {
	plan := mustBuild(t, "ns", "dia", diamond())
	var names []string
	for k, pe := range plan.PEs {
		names = append(names, pe.Name)
		if pe.Index != int32(k) || pe.Config.Index != int32(k) || pe.Config.Name != pe.Name {
			t.Errorf("PE %d: index %d, config %d %q", k, pe.Index, pe.Config.Index, pe.Config.Name)
		}
	}
	if d := cmp.Diff([]string{"dia-pe-0", "dia-pe-1", "dia-pe-2", "dia-pe-3", "dia-pe-4", "dia-pe-5"}, names); d != "" {
		t.Errorf("PE names (-want +got):\n%s", d)
	}
	// join is PE 4. Its port 1 is fed first in stream order (stream 3,
	// right -> join:1), so it gets PE port 0.
	join := plan.PEs[4]
	if d := cmp.Diff([]string{"join"}, join.Operators); d != "" {
		t.Fatalf("PE 4 operators: %s", d)
	}
	wantInputs := []peconfig.Input{
		{Port: 0, Operator: "join", OperatorPort: 1, Streams: []int32{3}},
		{Port: 1, Operator: "join", OperatorPort: 0, Streams: []int32{4}},
	}
	if d := cmp.Diff(wantInputs, join.Config.Inputs); d != "" {
		t.Errorf("join inputs (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]int32{3, 4, 5}, streamIDs(join.Config.Streams)); d != "" {
		t.Errorf("join streams (-want +got):\n%s", d)
	}
	// The source has no inputs and touches stream 0 only.
	if src := plan.PEs[0]; len(src.Config.Inputs) != 0 || !cmp.Equal([]int32{0}, streamIDs(src.Config.Streams)) {
		t.Errorf("source PE: inputs %v streams %v", src.Config.Inputs, src.Config.Streams)
	}
	wantTable := []peconfig.PortEntry{
		{Operator: "fork", OperatorPort: 0, PE: "dia-pe-1", PEPort: 0},
		{Operator: "join", OperatorPort: 0, PE: "dia-pe-4", PEPort: 1},
		{Operator: "join", OperatorPort: 1, PE: "dia-pe-4", PEPort: 0},
		{Operator: "left", OperatorPort: 0, PE: "dia-pe-2", PEPort: 0},
		{Operator: "right", OperatorPort: 0, PE: "dia-pe-3", PEPort: 0},
		{Operator: "sink", OperatorPort: 0, PE: "dia-pe-5", PEPort: 0},
	}
	if d := cmp.Diff(wantTable, plan.PortTable.Inputs); d != "" {
		t.Errorf("port table (-want +got):\n%s", d)
	}
	if plan.PortTable.Version != peconfig.Version || plan.PortTable.Job != "dia" || plan.PortTable.Namespace != "ns" {
		t.Errorf("port table header: %+v", plan.PortTable)
	}
	checkPlan(t, "ns", "dia", diamond(), plan)
}

func TestBuildFanInSharesOnePort(t *testing.T) {
	// Two sources feed one map input port; a third feeds the union's port 1
	// alongside the map.
	s := spec([]v1alpha1.Operator{
		op("a", "source"), op("b", "source"), op("c", "source"),
		op("m", "map"), op("u", "union"), op("k", "sink"),
	},
		st("a", 0, "m", 0),
		st("m", 0, "u", 0),
		st("b", 0, "m", 0),
		st("c", 0, "u", 1),
		st("a", 0, "u", 1),
		st("u", 0, "k", 0),
	)
	plan := mustBuild(t, "ns", "fan", s)
	m, u := plan.PEs[3], plan.PEs[4]
	if d := cmp.Diff([]peconfig.Input{{Port: 0, Operator: "m", OperatorPort: 0, Streams: []int32{0, 2}}}, m.Config.Inputs); d != "" {
		t.Errorf("m inputs (-want +got):\n%s", d)
	}
	want := []peconfig.Input{
		{Port: 0, Operator: "u", OperatorPort: 0, Streams: []int32{1}},
		{Port: 1, Operator: "u", OperatorPort: 1, Streams: []int32{3, 4}},
	}
	if d := cmp.Diff(want, u.Config.Inputs); d != "" {
		t.Errorf("u inputs (-want +got):\n%s", d)
	}
	// Source a's PE lists both streams it feeds.
	if d := cmp.Diff([]int32{0, 4}, streamIDs(plan.PEs[0].Config.Streams)); d != "" {
		t.Errorf("a streams (-want +got):\n%s", d)
	}
	checkPlan(t, "ns", "fan", s, plan)
}

func TestBuildFusedStreamsStayOutOfPortTable(t *testing.T) {
	s := diamond()
	s.Fusion = v1alpha1.Fusion{Mode: v1alpha1.FusionManual, Groups: []v1alpha1.FusionGroup{
		{Operators: []string{"src", "fork", "left"}},
		{Operators: []string{"join", "sink"}},
	}}
	plan := mustBuild(t, "ns", "fu", s)
	if len(plan.PEs) != 3 {
		t.Fatalf("%d PEs, want 3", len(plan.PEs))
	}
	// PE 0 {src, fork, left}, PE 1 {right}, PE 2 {join, sink}.
	for _, e := range []struct {
		op   string
		port int32
	}{{"fork", 0}, {"left", 0}, {"sink", 0}} {
		if got, ok := plan.PortTable.Lookup(e.op, e.port); ok {
			t.Errorf("intra-PE input %s:%d is in the port table: %+v", e.op, e.port, got)
		}
	}
	for _, e := range []struct {
		op     string
		port   int32
		pe     string
		pePort int32
	}{{"right", 0, "fu-pe-1", 0}, {"join", 1, "fu-pe-2", 0}, {"join", 0, "fu-pe-2", 1}} {
		got, ok := plan.PortTable.Lookup(e.op, e.port)
		if !ok || got.PE != e.pe || got.PEPort != e.pePort {
			t.Errorf("Lookup(%s, %d) = %+v %v, want %s port %d", e.op, e.port, got, ok, e.pe, e.pePort)
		}
	}
	// PE 0 touches every stream but join -> sink; it lists each once.
	if d := cmp.Diff([]int32{0, 1, 2, 4}, streamIDs(plan.PEs[0].Config.Streams)); d != "" {
		t.Errorf("PE 0 streams (-want +got):\n%s", d)
	}
	if len(plan.PEs[0].Config.Inputs) != 0 {
		t.Errorf("PE 0 has inputs: %v", plan.PEs[0].Config.Inputs)
	}
	if d := cmp.Diff(map[string]string{"src": "fu-pe-0", "fork": "fu-pe-0", "left": "fu-pe-0", "right": "fu-pe-1", "join": "fu-pe-2", "sink": "fu-pe-2"}, plan.PortTable.Operators); d != "" {
		t.Errorf("operator table (-want +got):\n%s", d)
	}
	checkPlan(t, "ns", "fu", s, plan)
}

func TestBuildPlacement(t *testing.T) {
	s := chain(5)
	s.Placement.HostPools = []v1alpha1.HostPoolSpec{{Name: "zeta", Exclusive: true}, {Name: "alpha", NodeSelector: map[string]string{"k": "v"}}}
	o := s.Application.Operators
	o[1].HostPool, o[2].HostPool = "alpha", "alpha"
	o[1].Colocate, o[2].Colocate = "z", "a"
	o[2].Exlocate = "x"
	o[3].HostPool = "zeta"
	s.Fusion = v1alpha1.Fusion{Mode: v1alpha1.FusionManual, Groups: []v1alpha1.FusionGroup{{Operators: []string{"m1", "m2"}}}}
	plan := mustBuild(t, "ns", "pl", s)
	want := []v1alpha1.PEPlacement{
		{},
		{HostPools: []string{"alpha"}, Colocate: []string{"a", "z"}, Exlocate: []string{"x"}},
		{HostPools: []string{"zeta"}},
		{},
	}
	var got []v1alpha1.PEPlacement
	for _, pe := range plan.PEs {
		got = append(got, pe.Placement)
	}
	if d := cmp.Diff(want, got, cmp.Comparer(func(a, b []string) bool { return len(a) == len(b) && (len(a) == 0 || cmp.Equal(a, b)) })); d != "" {
		t.Errorf("placement (-want +got):\n%s", d)
	}
	if d := cmp.Diff(s.Placement.HostPools, plan.HostPools); d != "" {
		t.Errorf("host pools not in spec order (-want +got):\n%s", d)
	}
	checkPlan(t, "ns", "pl", s, plan)
}

func TestBuildRejectsInvalid(t *testing.T) {
	s := chain(3)
	s.Application.Streams = s.Application.Streams[:1]
	if plan, errs := Build("ns", "job", s); plan != nil || len(errs) == 0 {
		t.Errorf("Build of an invalid spec: plan %v errs %v", plan, errs)
	}
}

// Every mode over random graphs: the plan's invariants hold.
func TestBuildInvariantsRandom(t *testing.T) {
	for seed := int64(1); seed <= 30; seed++ {
		s := randomDAG(seed, 5+int(seed%25))
		n := len(s.Application.Operators)
		// A manual grouping of every third operator with its next one in
		// declaration order (unrelated to topological order on purpose).
		var groups []v1alpha1.FusionGroup
		for i := 0; i+1 < n; i += 3 {
			groups = append(groups, v1alpha1.FusionGroup{Operators: []string{s.Application.Operators[i].Name, s.Application.Operators[i+1].Name}})
		}
		for _, f := range []v1alpha1.Fusion{
			{Mode: v1alpha1.FusionPerOperator},
			{Mode: v1alpha1.FusionTarget, TargetPEs: ptr.To[int32](1)},
			{Mode: v1alpha1.FusionTarget, TargetPEs: ptr.To(int32(1 + n/3))},
			{Mode: v1alpha1.FusionManual, Groups: groups},
		} {
			s.Fusion = f
			t.Run(fmt.Sprintf("seed%d/%s", seed, f.Mode), func(t *testing.T) {
				plan := mustBuild(t, "ns", "rnd", s)
				checkPlan(t, "ns", "rnd", s, plan)
			})
		}
	}
}

func TestBuildDeterministic(t *testing.T) {
	for seed := int64(1); seed <= 10; seed++ {
		s := randomDAG(seed, 40)
		s.Fusion = v1alpha1.Fusion{Mode: v1alpha1.FusionTarget, TargetPEs: ptr.To[int32](7)}
		before := s.DeepCopy()
		a := mustBuild(t, "ns", "det", s)
		b := mustBuild(t, "ns", "det", s.DeepCopy())
		if d := cmp.Diff(a, b); d != "" {
			t.Errorf("seed %d: two builds differ (-first +second):\n%s", seed, d)
		}
		if d := cmp.Diff(before, s); d != "" {
			t.Errorf("seed %d: Build changed its spec:\n%s", seed, d)
		}
	}
}

func streamIDs(ss []peconfig.Stream) []int32 {
	var ids []int32
	for _, s := range ss {
		ids = append(ids, s.ID)
	}
	return ids
}

// checkPlan asserts what every plan must satisfy, derived from the spec
// independently of how Build computes it.
func checkPlan(t *testing.T, ns, job string, s *v1alpha1.JobSpec, plan *Plan) {
	t.Helper()
	ops := s.Application.Operators
	streams := s.Application.Streams
	peOf := map[string]int{}
	for k, pe := range plan.PEs {
		if pe.Index != int32(k) || pe.Name != PEName(job, int32(k)) {
			t.Errorf("PE %d named %q index %d", k, pe.Name, pe.Index)
		}
		c := pe.Config
		if c.Version != peconfig.Version || c.Job != job || c.Namespace != ns || c.Name != pe.Name || c.Index != pe.Index {
			t.Errorf("PE %d config header %d %q %q %q %d", k, c.Version, c.Job, c.Namespace, c.Name, c.Index)
		}
		if len(pe.Operators) == 0 || len(pe.Operators) != len(c.Operators) {
			t.Errorf("PE %d: operators %v, config operators %d", k, pe.Operators, len(c.Operators))
		}
		var pools, coloc, exloc []string
		for j, name := range pe.Operators {
			if _, dup := peOf[name]; dup {
				t.Errorf("operator %s in two PEs", name)
			}
			peOf[name] = k
			if j < len(c.Operators) && c.Operators[j].Name != name {
				t.Errorf("PE %d config operator %d is %q, want %q", k, j, c.Operators[j].Name, name)
			}
			if plan.PortTable.Operators[name] != pe.Name {
				t.Errorf("port table puts %s in %q, want %q", name, plan.PortTable.Operators[name], pe.Name)
			}
			for _, o := range ops {
				if o.Name == name {
					pools, coloc, exloc = append(pools, o.HostPool), append(coloc, o.Colocate), append(exloc, o.Exlocate)
				}
			}
		}
		wantPl := v1alpha1.PEPlacement{HostPools: sortedSet(pools), Colocate: sortedSet(coloc), Exlocate: sortedSet(exloc)}
		if !cmp.Equal(wantPl, pe.Placement) {
			t.Errorf("PE %d placement %+v, want %+v", k, pe.Placement, wantPl)
		}
	}
	if len(peOf) != len(ops) || len(plan.PortTable.Operators) != len(ops) {
		t.Errorf("%d operators placed, %d in the port table, want %d", len(peOf), len(plan.PortTable.Operators), len(ops))
	}
	// Streams per PE and cross-PE inputs, recomputed from the spec.
	wantStreams := make([][]int32, len(plan.PEs))
	type ep = v1alpha1.Endpoint
	cross := map[ep][]int32{}
	for id, stream := range streams {
		from, to := peOf[stream.From.Operator], peOf[stream.To.Operator]
		wantStreams[from] = append(wantStreams[from], int32(id))
		if to != from {
			wantStreams[to] = append(wantStreams[to], int32(id))
			cross[stream.To] = append(cross[stream.To], int32(id))
		}
	}
	entries := 0
	for k, pe := range plan.PEs {
		c := pe.Config
		if !cmp.Equal(wantStreams[k], streamIDs(c.Streams)) {
			t.Errorf("PE %d streams %v, want %v", k, streamIDs(c.Streams), wantStreams[k])
		}
		for _, ref := range c.Streams {
			if ref.From != streams[ref.ID].From || ref.To != streams[ref.ID].To {
				t.Errorf("PE %d stream %d is %+v, spec says %+v", k, ref.ID, ref, streams[ref.ID])
			}
		}
		firstStream := int32(-1)
		for p, in := range c.Inputs {
			if in.Port != int32(p) {
				t.Errorf("PE %d input %d has port %d", k, p, in.Port)
			}
			if peOf[in.Operator] != k {
				t.Errorf("PE %d input %d delivers to %s of PE %d", k, p, in.Operator, peOf[in.Operator])
			}
			e := ep{Operator: in.Operator, Port: in.OperatorPort}
			if !cmp.Equal(cross[e], in.Streams) {
				t.Errorf("PE %d input %d streams %v, want %v", k, p, in.Streams, cross[e])
			}
			// Ports are numbered by the first stream that feeds them.
			if len(in.Streams) > 0 && in.Streams[0] <= firstStream {
				t.Errorf("PE %d ports not in stream order: %v", k, c.Inputs)
			}
			if len(in.Streams) > 0 {
				firstStream = in.Streams[0]
			}
			got, ok := plan.PortTable.Lookup(in.Operator, in.OperatorPort)
			if !ok || got.PE != pe.Name || got.PEPort != int32(p) {
				t.Errorf("Lookup(%s, %d) = %+v %v, want %s port %d", in.Operator, in.OperatorPort, got, ok, pe.Name, p)
			}
			entries++
		}
	}
	if entries != len(cross) || len(plan.PortTable.Inputs) != len(cross) {
		t.Errorf("%d PE inputs, %d port table entries, want %d cross-PE input ports", entries, len(plan.PortTable.Inputs), len(cross))
	}
	if !sort.SliceIsSorted(plan.PortTable.Inputs, func(i, j int) bool {
		a, b := plan.PortTable.Inputs[i], plan.PortTable.Inputs[j]
		return a.Operator < b.Operator || (a.Operator == b.Operator && a.OperatorPort < b.OperatorPort)
	}) {
		t.Errorf("port table not sorted: %v", plan.PortTable.Inputs)
	}
	// An input port fed only from inside its PE has no entry.
	for _, stream := range streams {
		if _, isCross := cross[stream.To]; isCross {
			continue
		}
		if got, ok := plan.PortTable.Lookup(stream.To.Operator, stream.To.Port); ok {
			t.Errorf("intra-PE input %s:%d in the port table: %+v", stream.To.Operator, stream.To.Port, got)
		}
	}
}
