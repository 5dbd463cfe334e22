package app

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/peconfig"
)

// parallelPipeline is src -> agg -> sink with agg replicated.
func parallelPipeline(width int32) *v1alpha1.JobSpec {
	s := chain(3)
	s.Application.Operators[1] = op("agg", v1alpha1.KindAggregate)
	s.Application.Streams = []v1alpha1.Stream{st("src", 0, "agg", 0), st("agg", 0, "sink", 0)}
	s.Application.ParallelRegions = []v1alpha1.ParallelRegionDef{{Name: "par", Operators: []string{"agg"}, Width: width}}
	return s
}

func peConfigs(t *testing.T, p *Plan) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, pe := range p.PEs {
		b, err := json.Marshal(pe.Config)
		if err != nil {
			t.Fatal(err)
		}
		out[pe.Name] = string(b)
	}
	return out
}

func TestParallelExpansion(t *testing.T) {
	p, errs := Build("ns", "j", parallelPipeline(2))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	var names []string
	for _, pe := range p.PEs {
		names = append(names, pe.Name+":"+strings.Join(pe.Operators, ","))
	}
	want := []string{"j-pe-0:src,par-in0", "j-pe-1:par-out0,sink", "j-par-0:agg-0", "j-par-1:agg-1"}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Fatalf("PEs (-want +got):\n%s", diff)
	}
	if len(p.Parallel) != 1 || p.Parallel[0].Width != 2 || p.Parallel[0].Resource != "j-par" ||
		!cmp.Equal(p.Parallel[0].PEs, []string{"j-par-0", "j-par-1"}) {
		t.Fatalf("parallel plan %+v", p.Parallel)
	}
	// The split partitions by key over both channels.
	split := p.PEs[0].Config.Operators[1]
	if split.Kind != v1alpha1.KindSplit || *split.Params.Outputs != 2 || split.Params.SplitBy != "key" {
		t.Fatalf("split %+v", split)
	}
}

func TestWidthChangeKeepsUnaffectedPEs(t *testing.T) {
	at := func(w int32) map[string]string {
		p, errs := BuildWidths("ns", "j", parallelPipeline(2), Widths{"par": w})
		if len(errs) > 0 {
			t.Fatal(errs)
		}
		return peConfigs(t, p)
	}
	two, four := at(2), at(4)
	if len(four) != 6 {
		t.Fatalf("width 4 has %d PEs", len(four))
	}
	for _, name := range []string{"j-par-0", "j-par-1"} {
		if two[name] != four[name] {
			t.Errorf("channel PE %s changed with the width:\n%s\n%s", name, two[name], four[name])
		}
	}
	for _, name := range []string{"j-pe-0", "j-pe-1"} {
		if two[name] == four[name] {
			t.Errorf("PE %s next to the region should change with the width", name)
		}
	}
	// And back: the same plan as before.
	if diff := cmp.Diff(two, at(2)); diff != "" {
		t.Fatalf("2 -> 4 -> 2 is not the plan of width 2:\n%s", diff)
	}
}

func TestParallelInsideConsistentRegion(t *testing.T) {
	s := withRegion(parallelPipeline(3), "src", "agg", "sink")
	p, errs := Build("ns", "j", s)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if got := p.Regions[0].Spec.PEs; len(got) != 5 {
		t.Fatalf("consistent region PEs %v, want all 5", got)
	}
	if got := p.Regions[0].Spec.Operators; len(got) != 7 {
		t.Fatalf("consistent region operators %v: want src, sink, split, union and 3 copies", got)
	}
	// Channel PEs are told their channel and the operators they copy, so
	// that a reset can find their keys in every channel's checkpoint; PEs
	// next to the region are not channels. The width is the region's.
	if got := p.Regions[0].Spec.ParallelWidths; len(got) != 1 || got["par"] != 3 {
		t.Fatalf("consistent region's parallel widths %v, want par: 3", got)
	}
	for i, pe := range p.PEs {
		ch := pe.Config.Channel
		if i < 2 {
			if ch != nil {
				t.Fatalf("PE %s outside the parallel region has channel %+v", pe.Name, ch)
			}
			continue
		}
		c := int32(i - 2)
		want := &peconfig.Channel{Region: "par", Index: c, PartitionBy: "key", Group: 0, Groups: 1,
			Operators: map[string]string{ChannelOperator("agg", c): "agg"}}
		if diff := cmp.Diff(want, ch); diff != "" {
			t.Fatalf("PE %s channel (-want +got):\n%s", pe.Name, diff)
		}
		if name := ChannelPEName("j", "par", c, 0, 1); name != pe.Name {
			t.Fatalf("ChannelPEName gives %s for PE %s", name, pe.Name)
		}
	}
	// Another width changes the region's widths, not the kept channels'
	// configurations (their pods stay untouched).
	s.Application.ParallelRegions[0].Width = 5
	wider, errs := Build("ns", "j", s)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if got := wider.Regions[0].Spec.ParallelWidths["par"]; got != 5 {
		t.Fatalf("width 5: region says %d", got)
	}
	for i := 2; i < len(p.PEs); i++ {
		if diff := cmp.Diff(p.PEs[i].Config, wider.PEs[i].Config); diff != "" {
			t.Fatalf("channel PE %s's configuration changed with the width (-3 +5):\n%s", p.PEs[i].Name, diff)
		}
	}
	// Outside a consistent region channels are not told.
	plain, _ := Build("ns", "j", parallelPipeline(3))
	for _, pe := range plain.PEs {
		if pe.Config.Channel != nil {
			t.Fatalf("PE %s of a region without checkpoints has channel %+v", pe.Name, pe.Config.Channel)
		}
	}
}

// A channel of several PEs: each PE knows its group, and ChannelPEName
// names the PE of a group in any channel.
func TestChannelGroupsInsideConsistentRegion(t *testing.T) {
	s := chain(4)
	s.Application.Operators[1] = op("m", v1alpha1.KindMap)
	s.Application.Operators[2] = op("agg", v1alpha1.KindAggregate)
	s.Application.Streams = []v1alpha1.Stream{st("src", 0, "m", 0), st("m", 0, "agg", 0), st("agg", 0, "sink", 0)}
	s.Application.ParallelRegions = []v1alpha1.ParallelRegionDef{{Name: "par", Operators: []string{"m", "agg"}, Width: 2,
		PartitionBy: "roundRobin"}}
	s.Fusion = v1alpha1.Fusion{Mode: v1alpha1.FusionPerOperator}
	s = withRegion(s, "src", "m", "agg", "sink")
	p, errs := Build("ns", "j", s)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	seen := 0
	for _, pe := range p.PEs {
		ch := pe.Config.Channel
		if ch == nil {
			continue
		}
		seen++
		if ch.Groups != 2 || ch.PartitionBy != "roundRobin" || len(ch.Operators) != 1 {
			t.Fatalf("PE %s channel %+v", pe.Name, ch)
		}
		if name := ChannelPEName("j", "par", ch.Index, int(ch.Group), int(ch.Groups)); name != pe.Name {
			t.Fatalf("ChannelPEName gives %s for PE %s (%+v)", name, pe.Name, ch)
		}
		for op, logical := range ch.Operators {
			if ChannelOperator(logical, ch.Index) != op {
				t.Fatalf("PE %s: %s copies %s", pe.Name, op, logical)
			}
		}
	}
	if seen != 4 {
		t.Fatalf("%d channel PEs, want 2 channels x 2", seen)
	}
}

func TestParallelErrors(t *testing.T) {
	cases := []struct {
		name string
		spec func() *v1alpha1.JobSpec
		w    Widths
		want string
	}{
		{"source in region", func() *v1alpha1.JobSpec {
			s := parallelPipeline(2)
			s.Application.ParallelRegions[0].Operators = []string{"src", "agg"}
			return s
		}, nil, "a source cannot be replicated"},
		{"unknown operator", func() *v1alpha1.JobSpec {
			s := parallelPipeline(2)
			s.Application.ParallelRegions[0].Operators = []string{"nope"}
			return s
		}, nil, `Not found: "nope"`},
		{"width too large", func() *v1alpha1.JobSpec { return parallelPipeline(2) }, Widths{"par": 1000}, "a width is 1 to 256"},
		{"fusion across the boundary", func() *v1alpha1.JobSpec {
			s := parallelPipeline(2)
			s.Fusion = v1alpha1.Fusion{Mode: v1alpha1.FusionManual, Groups: []v1alpha1.FusionGroup{{Operators: []string{"src", "agg"}}}}
			return s
		}, nil, "across the boundary of parallel region"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, errs := BuildWidths("ns", "j", c.spec(), c.w)
			if len(errs) == 0 || !strings.Contains(errs.ToAggregate().Error(), c.want) {
				t.Fatalf("errors %v, want one containing %q", errs, c.want)
			}
		})
	}
}
