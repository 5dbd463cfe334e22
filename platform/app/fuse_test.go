package app

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"

	"sluice.dev/sluice/platform/api/v1alpha1"
)

// fuse validates s and fuses it, returning the groups as operator names.
func fuse(t *testing.T, s *v1alpha1.JobSpec) ([][]string, field.ErrorList) {
	t.Helper()
	g, errs := Validate("job", s)
	if len(errs) > 0 {
		t.Fatalf("invalid spec: %v", errs.ToAggregate())
	}
	groups, errs := Fuse(g)
	if len(errs) > 0 {
		return nil, errs
	}
	names := make([][]string, len(groups))
	for k, grp := range groups {
		for _, i := range grp {
			names[k] = append(names[k], g.Operator(i).Name)
		}
	}
	return names, nil
}

func sizes(groups [][]string) []int {
	var out []int
	for _, g := range groups {
		out = append(out, len(g))
	}
	return out
}

func TestFusePerOperator(t *testing.T) {
	for _, mode := range []v1alpha1.FusionMode{"", v1alpha1.FusionPerOperator} {
		s := diamond()
		s.Fusion.Mode = mode
		got, errs := fuse(t, s)
		if len(errs) > 0 {
			t.Fatal(errs.ToAggregate())
		}
		// One PE per operator, in topological order (ties by declaration).
		want := [][]string{{"src"}, {"fork"}, {"left"}, {"right"}, {"join"}, {"sink"}}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("mode %q (-want +got):\n%s", mode, d)
		}
	}
}

func TestFuseTargetChunks(t *testing.T) {
	for _, tc := range []struct {
		ops, target int
		want        []int
	}{
		{ops: 4, target: 1, want: []int{4}},
		{ops: 4, target: 2, want: []int{2, 2}},
		{ops: 4, target: 4, want: []int{1, 1, 1, 1}},
		{ops: 10, target: 3, want: []int{4, 3, 3}},
		{ops: 10, target: 4, want: []int{3, 2, 3, 2}},
		// ceil(n/target)-sized chunks would give only 3 PEs here (2,2,1)
		// and 5 here (2,2,2,2,2): the target is a PE count.
		{ops: 5, target: 4, want: []int{2, 1, 1, 1}},
		{ops: 10, target: 6, want: []int{2, 2, 1, 2, 2, 1}},
		{ops: 7, target: 6, want: []int{2, 1, 1, 1, 1, 1}},
	} {
		s := chain(tc.ops)
		s.Fusion = v1alpha1.Fusion{Mode: v1alpha1.FusionTarget, TargetPEs: ptr.To(int32(tc.target))}
		got, errs := fuse(t, s)
		if len(errs) > 0 {
			t.Fatalf("%d ops target %d: %v", tc.ops, tc.target, errs.ToAggregate())
		}
		if d := cmp.Diff(tc.want, sizes(got)); d != "" {
			t.Errorf("%d ops target %d: sizes (-want +got):\n%s", tc.ops, tc.target, d)
		}
		if len(got) != tc.target {
			t.Errorf("%d ops target %d: %d PEs", tc.ops, tc.target, len(got))
		}
	}
}

// Without placement constraints, target mode yields exactly target PEs
// for every target from 1 to the number of operators, each a contiguous
// run of the topological order.
func TestFuseTargetExactCount(t *testing.T) {
	for seed := int64(1); seed <= 5; seed++ {
		s := randomDAG(seed, 23)
		g, errs := Validate("job", s)
		if len(errs) > 0 {
			t.Fatal(errs.ToAggregate())
		}
		n := len(s.Application.Operators)
		for target := 1; target <= n; target++ {
			s.Fusion = v1alpha1.Fusion{Mode: v1alpha1.FusionTarget, TargetPEs: ptr.To(int32(target))}
			groups, errs := Fuse(g)
			if len(errs) > 0 {
				t.Fatalf("seed %d target %d: %v", seed, target, errs.ToAggregate())
			}
			if len(groups) != target {
				t.Errorf("seed %d: %d operators, target %d: got %d PEs", seed, n, target, len(groups))
			}
			var flat []int
			for _, grp := range groups {
				if len(grp) < n/target || len(grp) > (n+target-1)/target {
					t.Errorf("seed %d target %d: uneven PE of %d operators", seed, target, len(grp))
				}
				flat = append(flat, grp...)
			}
			if d := cmp.Diff(g.Order, flat); d != "" {
				t.Errorf("seed %d target %d: groups are not the topological order cut in runs:\n%s", seed, target, d)
			}
		}
	}
}

func TestFuseTargetPlacementSplits(t *testing.T) {
	pools := []v1alpha1.HostPoolSpec{{Name: "gpu"}, {Name: "cpu"}}
	for _, tc := range []struct {
		name   string
		target int32
		edit   func(ops []v1alpha1.Operator)
		want   [][]string
	}{
		{"host pool change cuts", 1, func(ops []v1alpha1.Operator) {
			ops[1].HostPool, ops[2].HostPool = "gpu", "gpu"
		}, [][]string{{"src"}, {"m1", "m2"}, {"m3", "sink"}}},
		{"two pools", 2, func(ops []v1alpha1.Operator) {
			ops[0].HostPool, ops[1].HostPool, ops[2].HostPool = "cpu", "cpu", "gpu"
		}, [][]string{{"src", "m1"}, {"m2"}, {"m3", "sink"}}},
		{"exlocation cuts", 1, func(ops []v1alpha1.Operator) {
			ops[1].Exlocate, ops[3].Exlocate = "apart", "apart"
		}, [][]string{{"src", "m1", "m2"}, {"m3", "sink"}}},
		{"different exlocation tags do not cut", 1, func(ops []v1alpha1.Operator) {
			ops[1].Exlocate, ops[3].Exlocate = "a", "b"
		}, [][]string{{"src", "m1", "m2", "m3", "sink"}}},
		{"colocation does not cut", 1, func(ops []v1alpha1.Operator) {
			ops[1].Colocate, ops[3].Colocate = "c", "d"
		}, [][]string{{"src", "m1", "m2", "m3", "sink"}}},
		{"placement cut and size cut", 2, func(ops []v1alpha1.Operator) {
			ops[1].HostPool = "gpu"
		}, [][]string{{"src"}, {"m1"}, {"m2"}, {"m3", "sink"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := chain(5)
			s.Placement.HostPools = pools
			tc.edit(s.Application.Operators)
			s.Fusion = v1alpha1.Fusion{Mode: v1alpha1.FusionTarget, TargetPEs: ptr.To(tc.target)}
			got, errs := fuse(t, s)
			if len(errs) > 0 {
				t.Fatal(errs.ToAggregate())
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}

func TestFuseErrors(t *testing.T) {
	const ops = "spec.application.operators"
	pools := []v1alpha1.HostPoolSpec{{Name: "gpu"}, {Name: "cpu"}}
	manual := func(groups ...[]string) v1alpha1.Fusion {
		f := v1alpha1.Fusion{Mode: v1alpha1.FusionManual}
		for _, g := range groups {
			f.Groups = append(f.Groups, v1alpha1.FusionGroup{Operators: g})
		}
		return f
	}
	for _, tc := range []struct {
		name string
		spec func() *v1alpha1.JobSpec
		want []wantErr
	}{
		{"target more PEs than operators", func() *v1alpha1.JobSpec {
			s := chain(3)
			s.Fusion = v1alpha1.Fusion{Mode: v1alpha1.FusionTarget, TargetPEs: ptr.To[int32](4)}
			return s
		}, []wantErr{{"spec.fusion.targetPEs", field.ErrorTypeInvalid, "more PEs than the 3 operators"}}},
		{"target without targetPEs", func() *v1alpha1.JobSpec {
			s := chain(3)
			s.Fusion = v1alpha1.Fusion{Mode: v1alpha1.FusionTarget}
			return s
		}, []wantErr{{"spec.fusion.targetPEs", field.ErrorTypeRequired, "targetPEs > 0"}}},
		{"target zero", func() *v1alpha1.JobSpec {
			s := chain(3)
			s.Fusion = v1alpha1.Fusion{Mode: v1alpha1.FusionTarget, TargetPEs: ptr.To[int32](0)}
			return s
		}, []wantErr{{"spec.fusion.targetPEs", field.ErrorTypeRequired, ""}}},
		{"unknown mode", func() *v1alpha1.JobSpec {
			s := chain(3)
			s.Fusion.Mode = "greedy"
			return s
		}, []wantErr{{"spec.fusion.mode", field.ErrorTypeNotSupported, "greedy"}}},
		{"manual unknown operator", func() *v1alpha1.JobSpec {
			s := chain(3)
			s.Fusion = manual([]string{"src", "ghost"})
			return s
		}, []wantErr{{"spec.fusion.groups[0].operators[1]", field.ErrorTypeNotFound, "ghost"}}},
		{"manual operator in two groups", func() *v1alpha1.JobSpec {
			s := chain(4)
			s.Fusion = manual([]string{"src", "m1"}, []string{"m2", "m1"})
			return s
		}, []wantErr{{"spec.fusion.groups[1].operators[1]", field.ErrorTypeDuplicate, "m1"}}},
		{"manual group across host pools", func() *v1alpha1.JobSpec {
			s := chain(4)
			s.Placement.HostPools = pools
			s.Application.Operators[1].HostPool = "gpu"
			s.Application.Operators[2].HostPool = "cpu"
			s.Fusion = manual([]string{"m1", "m2"})
			return s
		}, []wantErr{{ops + "[2].hostPool", field.ErrorTypeInvalid, `host pool "gpu"`}}},
		{"manual group of pool and no pool", func() *v1alpha1.JobSpec {
			s := chain(4)
			s.Placement.HostPools = pools
			s.Application.Operators[2].HostPool = "cpu"
			s.Fusion = manual([]string{"m1", "m2"})
			return s
		}, []wantErr{{ops + "[2].hostPool", field.ErrorTypeInvalid, "fused into PE"}}},
		{"manual group of exlocated operators", func() *v1alpha1.JobSpec {
			s := chain(4)
			s.Application.Operators[1].Exlocate = "e"
			s.Application.Operators[2].Exlocate = "e"
			s.Fusion = manual([]string{"m1", "m2"})
			return s
		}, []wantErr{{ops + "[2].exlocate", field.ErrorTypeInvalid, "same exlocation group"}}},
		{"colocated and exlocated operators", func() *v1alpha1.JobSpec {
			s := chain(4)
			for _, i := range []int{1, 2} {
				s.Application.Operators[i].Colocate = "c"
				s.Application.Operators[i].Exlocate = "e"
			}
			return s
		}, []wantErr{{ops + "[2].exlocate", field.ErrorTypeInvalid, "colocation"}}},
		{"colocated PEs sharing an exlocate tag from other operators", func() *v1alpha1.JobSpec {
			// PE {m1, m2} and PE {m3, m4} are colocated by tag c (from m1
			// and m3) and exlocated by tag e (from m2 and m4): the pods
			// could never be scheduled.
			s := chain(6)
			o := s.Application.Operators
			o[1].Colocate, o[2].Exlocate, o[3].Colocate, o[4].Exlocate = "c", "e", "c", "e"
			s.Fusion = manual([]string{"m1", "m2"}, []string{"m3", "m4"})
			return s
		}, []wantErr{{ops + "[4].exlocate", field.ErrorTypeInvalid, "colocation"}}},
		{"transitively colocated PEs sharing an exlocate tag", func() *v1alpha1.JobSpec {
			// m1 ~ m2 by tag x, m2 ~ m3 by tag y (m2's PE carries both):
			// m1 and m3 share a host and an exlocate tag.
			s := chain(6)
			o := s.Application.Operators
			o[1].Colocate, o[1].Exlocate = "x", "e"
			o[2].Colocate, o[3].Colocate = "x", "y"
			o[4].Colocate, o[4].Exlocate = "y", "e"
			s.Fusion = manual([]string{"m2", "m3"})
			return s
		}, []wantErr{{ops + "[4].exlocate", field.ErrorTypeInvalid, "colocation"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, errs := fuse(t, tc.spec())
			if len(errs) == 0 {
				t.Fatalf("accepted: %v", got)
			}
			checkErrs(t, errs, tc.want)
			// Build reports the same faults.
			if _, berrs := Build("ns", "job", tc.spec()); len(berrs) != len(errs) {
				t.Errorf("Build: %v, Fuse: %v", berrs.ToAggregate(), errs.ToAggregate())
			}
		})
	}
}

func TestFusePlacementAccepted(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(s *v1alpha1.JobSpec)
	}{
		{"colocated PEs with different exlocate tags", func(s *v1alpha1.JobSpec) {
			o := s.Application.Operators
			o[1].Colocate, o[1].Exlocate, o[2].Colocate, o[2].Exlocate = "c", "e", "c", "f"
		}},
		{"exlocate tag on a PE outside the colocated set", func(s *v1alpha1.JobSpec) {
			o := s.Application.Operators
			o[1].Colocate, o[1].Exlocate, o[2].Colocate, o[3].Exlocate = "c", "e", "c", "e"
		}},
		{"one PE both colocated and exlocated by the same tag through different operators", func(s *v1alpha1.JobSpec) {
			o := s.Application.Operators
			o[1].Colocate, o[2].Exlocate = "t", "t"
			s.Fusion = v1alpha1.Fusion{Mode: v1alpha1.FusionManual, Groups: []v1alpha1.FusionGroup{{Operators: []string{"m1", "m2"}}}}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := chain(5)
			tc.edit(s)
			if _, errs := fuse(t, s); len(errs) > 0 {
				t.Fatal(errs.ToAggregate())
			}
		})
	}
}

func TestFuseManual(t *testing.T) {
	s := diamond()
	s.Placement.HostPools = []v1alpha1.HostPoolSpec{{Name: "p"}}
	s.Application.Operators[2].HostPool = "p" // left
	s.Application.Operators[4].HostPool = "p" // join
	// Groups listed out of topological order, members out of order.
	s.Fusion = v1alpha1.Fusion{Mode: v1alpha1.FusionManual, Groups: []v1alpha1.FusionGroup{
		{Operators: []string{"join", "left"}},
		{Operators: []string{"fork", "src"}},
	}}
	got, errs := fuse(t, s)
	if len(errs) > 0 {
		t.Fatal(errs.ToAggregate())
	}
	// Groups ordered by their first operator in topological order; members
	// in topological order; ungrouped operators alone.
	want := [][]string{{"src", "fork"}, {"left", "join"}, {"right"}, {"sink"}}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}

	// No groups: one PE per operator.
	s.Fusion.Groups = nil
	got, errs = fuse(t, s)
	if len(errs) > 0 {
		t.Fatal(errs.ToAggregate())
	}
	if len(got) != 6 {
		t.Errorf("manual without groups: %v", got)
	}
}
