package app

import (
	"fmt"
	"sort"

	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"

	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/peconfig"
)

// Widths maps a parallel region's name to its running width; a region
// missing here runs at the width its definition gives.
type Widths map[string]int32

// ParallelResourceName is the name of a Job's ParallelRegion object.
func ParallelResourceName(job, region string) string { return job + "-" + region }

// ChannelOperator is the name of channel c's copy of operator op.
func ChannelOperator(op string, c int32) string { return fmt.Sprintf("%s-%d", op, c) }

// ChannelPEName is the name of the PE of channel c of a parallel region
// whose channels have groups PEs each; group is the PE's position among
// them.
func ChannelPEName(job, region string, c int32, group, groups int) string {
	name := fmt.Sprintf("%s-%s-%d", job, region, c)
	if groups > 1 {
		name = fmt.Sprintf("%s-%d", name, group)
	}
	return name
}

// The operators a parallel region adds around its channels: a split per
// stream that enters the region and a union per stream that leaves it.
func splitName(region string, k int) string { return fmt.Sprintf("%s-in%d", region, k) }
func mergeName(region string, k int) string { return fmt.Sprintf("%s-out%d", region, k) }

// channel says which channel of which region an expanded operator is.
type channel struct {
	region string
	c      int32
}

// expansion is an application with its parallel regions unrolled.
type expansion struct {
	spec *v1alpha1.JobSpec
	// channelOf holds every channel copy.
	channelOf map[string]channel
	// fusedWith maps an added split or union to the original operator whose
	// PE carries it (the stream's source, or its target).
	fusedWith map[string]string
	// regionOf maps an original operator to its parallel region.
	regionOf map[string]string
	widths   map[string]int32
}

// validateParallel checks the parallel regions of a valid graph.
func validateParallel(g *Graph, widths Widths) field.ErrorList {
	var errs field.ErrorList
	path := field.NewPath("spec", "application", "parallelRegions")
	regionOf := map[string]string{}
	names := map[string]bool{}
	for _, def := range g.Spec.Application.ConsistentRegions {
		names[def.Name] = true // one namespace of region resources per Job
	}
	for r, def := range g.Spec.Application.ParallelRegions {
		p := path.Index(r)
		if names[def.Name] {
			errs = append(errs, field.Duplicate(p.Child("name"), def.Name))
		}
		names[def.Name] = true
		if w := width(def, widths); w < 1 || w > v1alpha1.MaxParallelWidth {
			errs = append(errs, field.Invalid(p.Child("width"), w, fmt.Sprintf("a width is 1 to %d", v1alpha1.MaxParallelWidth)))
		}
		if len(def.Operators) == 0 {
			errs = append(errs, field.Required(p.Child("operators"), "a region needs at least one operator"))
		}
		for k, name := range def.Operators {
			i, ok := g.Index[name]
			switch {
			case !ok:
				errs = append(errs, field.NotFound(p.Child("operators").Index(k), name))
				continue
			case g.Operator(i).Kind == v1alpha1.KindSource:
				errs = append(errs, field.Invalid(p.Child("operators").Index(k), name, "a source cannot be replicated: every channel would emit the same tuples"))
			}
			if other, dup := regionOf[name]; dup {
				errs = append(errs, field.Invalid(p.Child("operators").Index(k), name, fmt.Sprintf("already in parallel region %q", other)))
			}
			regionOf[name] = def.Name
		}
	}
	if len(errs) > 0 {
		return errs
	}
	entering := map[string]int{}
	for _, st := range g.Spec.Application.Streams {
		from, to := regionOf[st.From.Operator], regionOf[st.To.Operator]
		if from != "" && to != "" && from != to {
			errs = append(errs, field.Invalid(field.NewPath("spec", "application", "streams"), st.From.Operator+" -> "+st.To.Operator,
				"joins two parallel regions directly; put an operator between them"))
		}
		if to != "" && from != to {
			entering[to]++
		}
	}
	for r, def := range g.Spec.Application.ParallelRegions {
		if entering[def.Name] == 0 {
			errs = append(errs, field.Invalid(path.Index(r).Child("operators"), def.Operators, "no stream enters the region"))
		}
	}
	return errs
}

func width(def v1alpha1.ParallelRegionDef, widths Widths) int32 {
	if w, ok := widths[def.Name]; ok {
		return w
	}
	if def.Width == 0 {
		return 2
	}
	return def.Width
}

// expand unrolls the parallel regions of a validated spec. Streams keep
// stable IDs across width changes as far as possible: the streams outside
// every region come first, in declaration order, then each region's
// channels in order; so a channel below both the old and the new width
// keeps its stream IDs (except that channels of regions declared after a
// resized one shift).
func expand(g *Graph, widths Widths) *expansion {
	spec := g.Spec
	x := &expansion{channelOf: map[string]channel{}, fusedWith: map[string]string{}, regionOf: map[string]string{},
		widths: map[string]int32{}}
	if len(spec.Application.ParallelRegions) == 0 {
		x.spec = spec
		return x
	}
	defs := map[string]v1alpha1.ParallelRegionDef{}
	for _, def := range spec.Application.ParallelRegions {
		defs[def.Name] = def
		x.widths[def.Name] = width(def, widths)
		for _, op := range def.Operators {
			x.regionOf[op] = def.Name
		}
	}
	out := spec.DeepCopy()
	app := &out.Application
	app.Operators, app.Streams = nil, nil
	for _, op := range spec.Application.Operators {
		if x.regionOf[op.Name] == "" {
			app.Operators = append(app.Operators, op)
		}
	}
	// Streams outside regions, with entering and leaving streams ending at
	// the added split or starting at the added union.
	in, outk := map[string]int{}, map[string]int{}
	split := map[int]string{} // stream index -> split name
	merge := map[int]string{} // stream index -> union name
	for s, st := range spec.Application.Streams {
		from, to := x.regionOf[st.From.Operator], x.regionOf[st.To.Operator]
		switch {
		case from == "" && to == "":
			app.Streams = append(app.Streams, st)
		case to != "" && from != to:
			name := splitName(to, in[to])
			in[to]++
			split[s] = name
			x.fusedWith[name] = st.From.Operator
			params := &v1alpha1.OperatorParams{Outputs: ptr.To(x.widths[to]), SplitBy: defs[to].PartitionBy}
			if params.SplitBy == "" {
				params.SplitBy = "key"
			}
			app.Operators = append(app.Operators, v1alpha1.Operator{Name: name, Kind: v1alpha1.KindSplit, Params: params})
			app.Streams = append(app.Streams, v1alpha1.Stream{From: st.From, To: v1alpha1.Endpoint{Operator: name}})
		case from != "" && to != from:
			name := mergeName(from, outk[from])
			outk[from]++
			merge[s] = name
			x.fusedWith[name] = st.To.Operator
			app.Operators = append(app.Operators, v1alpha1.Operator{Name: name, Kind: v1alpha1.KindUnion,
				Params: &v1alpha1.OperatorParams{Inputs: ptr.To(x.widths[from])}})
			app.Streams = append(app.Streams, v1alpha1.Stream{From: v1alpha1.Endpoint{Operator: name}, To: st.To})
		}
	}
	for _, def := range spec.Application.ParallelRegions {
		for c := int32(0); c < x.widths[def.Name]; c++ {
			for _, name := range def.Operators {
				op := spec.Application.Operators[g.Index[name]]
				op.Name = ChannelOperator(name, c)
				app.Operators = append(app.Operators, op)
				x.channelOf[op.Name] = channel{region: def.Name, c: c}
			}
			for s, st := range spec.Application.Streams {
				from, to := x.regionOf[st.From.Operator], x.regionOf[st.To.Operator]
				switch {
				case to == def.Name && from != to:
					app.Streams = append(app.Streams, v1alpha1.Stream{
						From: v1alpha1.Endpoint{Operator: split[s], Port: c},
						To:   v1alpha1.Endpoint{Operator: ChannelOperator(st.To.Operator, c), Port: st.To.Port}})
				case from == def.Name && to == def.Name:
					app.Streams = append(app.Streams, v1alpha1.Stream{
						From: v1alpha1.Endpoint{Operator: ChannelOperator(st.From.Operator, c), Port: st.From.Port},
						To:   v1alpha1.Endpoint{Operator: ChannelOperator(st.To.Operator, c), Port: st.To.Port}})
				case from == def.Name && to != from:
					app.Streams = append(app.Streams, v1alpha1.Stream{
						From: v1alpha1.Endpoint{Operator: ChannelOperator(st.From.Operator, c), Port: st.From.Port},
						To:   v1alpha1.Endpoint{Operator: merge[s], Port: c}})
				}
			}
		}
	}
	// Consistent regions cover the copies of their operators and the splits
	// and unions their PEs carry.
	for r := range app.ConsistentRegions {
		cr := &app.ConsistentRegions[r]
		member := map[string]bool{}
		for _, op := range cr.Operators {
			member[op] = true
		}
		var ops []string
		for _, op := range app.Operators {
			orig := op.Name
			if ch, ok := x.channelOf[op.Name]; ok {
				orig = op.Name[:len(op.Name)-len(fmt.Sprint(ch.c))-1]
			} else if with, ok := x.fusedWith[op.Name]; ok {
				orig = with
			}
			if member[orig] {
				ops = append(ops, op.Name)
			}
		}
		cr.Operators = ops
	}
	out.Application.ParallelRegions = nil
	x.spec = out
	return x
}

// expandGroups turns the fusion of the original graph into the fusion of
// the expanded one: a group of a parallel region's operators becomes one
// group per channel; other groups also carry the splits and unions fused
// with their operators. Channel groups come last, by region, channel and
// position, and are named after their channel.
func (x *expansion) expandGroups(job string, orig *Graph, groups [][]int, eg *Graph) ([][]int, []string, field.ErrorList) {
	pos := make([]int, len(eg.Spec.Application.Operators))
	for k, i := range eg.Order {
		pos[i] = k
	}
	topo := func(grp []int) []int {
		sort.Slice(grp, func(a, b int) bool { return pos[grp[a]] < pos[grp[b]] })
		return grp
	}
	carried := map[string][]string{}
	for hidden, with := range x.fusedWith {
		carried[with] = append(carried[with], hidden)
	}
	var plain [][]int
	perRegion := map[string][][]string{}
	var errs field.ErrorList
	for _, grp := range groups {
		region := x.regionOf[orig.Operator(grp[0]).Name]
		var names []string
		for _, i := range grp {
			name := orig.Operator(i).Name
			if x.regionOf[name] != region {
				errs = append(errs, field.Invalid(field.NewPath("spec", "fusion"), name, fmt.Sprintf(
					"fused with %q across the boundary of parallel region %q; a PE is inside a parallel region or outside it",
					orig.Operator(grp[0]).Name, orNone(region+x.regionOf[name]))))
				break
			}
			names = append(names, name)
		}
		if region != "" {
			perRegion[region] = append(perRegion[region], names)
			continue
		}
		var idx []int
		for _, name := range names {
			idx = append(idx, eg.Index[name])
			for _, h := range carried[name] {
				idx = append(idx, eg.Index[h])
			}
		}
		plain = append(plain, topo(idx))
	}
	if len(errs) > 0 {
		return nil, nil, errs
	}
	out := plain
	var pes []string
	for i := range plain {
		pes = append(pes, PEName(job, int32(i)))
	}
	for _, def := range orig.Spec.Application.ParallelRegions {
		grps := perRegion[def.Name]
		for c := int32(0); c < x.widths[def.Name]; c++ {
			for k, names := range grps {
				var idx []int
				for _, name := range names {
					idx = append(idx, eg.Index[ChannelOperator(name, c)])
				}
				out = append(out, topo(idx))
				pes = append(pes, ChannelPEName(job, def.Name, c, k, len(grps)))
			}
		}
	}
	return out, pes, nil
}

// ParallelPlan is a parallel region at its planned width.
type ParallelPlan struct {
	// Resource is the name of the ParallelRegion object.
	Resource string
	Region   string
	// Width the plan was made for; InitialWidth is the definition's.
	Width, InitialWidth int32
	// PEs of the region's channels.
	PEs []string
}

func (p *Plan) planParallel(job string, spec *v1alpha1.JobSpec, x *expansion) {
	for _, def := range spec.Application.ParallelRegions {
		pp := ParallelPlan{Resource: ParallelResourceName(job, def.Name), Region: def.Name,
			Width: x.widths[def.Name], InitialWidth: width(def, nil)}
		var mine []*PEPlan
		for i := range p.PEs {
			if ch, ok := x.channelOf[p.PEs[i].Operators[0]]; ok && ch.region == def.Name {
				pp.PEs = append(pp.PEs, p.PEs[i].Name)
				mine = append(mine, &p.PEs[i])
			}
		}
		p.Parallel = append(p.Parallel, pp)
		// Channel PEs come by channel, then group.
		groups := len(mine) / int(max(pp.Width, 1))
		partition := def.PartitionBy
		if partition == "" {
			partition = "key"
		}
		for k, pe := range mine {
			if pe.Config.Region == nil {
				continue
			}
			// The width is not in the channel's configuration (a width
			// change would relaunch every channel): the consistent region
			// carries it, per epoch.
			p.regionOf(pe.Config.Region.Name).setWidth(def.Name, pp.Width)
			ch := x.channelOf[pe.Operators[0]]
			cfg := &peconfig.Channel{Region: def.Name, Index: ch.c, PartitionBy: partition,
				Group: int32(k % groups), Groups: int32(groups), Operators: map[string]string{}}
			for _, op := range pe.Operators {
				c := x.channelOf[op]
				cfg.Operators[op] = op[:len(op)-len(fmt.Sprint(c.c))-1]
			}
			pe.Config.Channel = cfg
		}
	}
}

// regionOf is the plan of the consistent region named name.
func (p *Plan) regionOf(name string) *RegionPlan {
	for i := range p.Regions {
		if p.Regions[i].Spec.Region == name {
			return &p.Regions[i]
		}
	}
	return nil
}

// setWidth records the width of a parallel region inside the region.
func (r *RegionPlan) setWidth(parallel string, width int32) {
	if r.Spec.ParallelWidths == nil {
		r.Spec.ParallelWidths = map[string]int32{}
	}
	r.Spec.ParallelWidths[parallel] = width
}
