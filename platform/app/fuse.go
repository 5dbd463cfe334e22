package app

import (
	"fmt"
	"sort"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"sluice.dev/sluice/platform/api/v1alpha1"
)

// Fuse partitions a validated graph into processing elements. Each returned
// group lists operator positions in topological order; groups are ordered by
// their first operator's place in that order, so PE indexes are stable for a
// given spec.
func Fuse(g *Graph) ([][]int, field.ErrorList) {
	fusion := g.Spec.Fusion
	path := field.NewPath("spec", "fusion")
	n := len(g.Spec.Application.Operators)
	var groups [][]int
	switch fusion.Mode {
	case "", v1alpha1.FusionPerOperator:
		for _, i := range g.Order {
			groups = append(groups, []int{i})
		}
	case v1alpha1.FusionTarget:
		if fusion.TargetPEs == nil || *fusion.TargetPEs < 1 {
			return nil, field.ErrorList{field.Required(path.Child("targetPEs"), "mode target needs targetPEs > 0")}
		}
		target := int(*fusion.TargetPEs)
		if target > n {
			return nil, field.ErrorList{field.Invalid(path.Child("targetPEs"), target,
				fmt.Sprintf("more PEs than the %d operators of the application", n))}
		}
		groups = fuseTarget(g, target)
	case v1alpha1.FusionManual:
		var errs field.ErrorList
		groups, errs = fuseManual(g, path)
		if len(errs) > 0 {
			return nil, errs
		}
	default:
		return nil, field.ErrorList{field.NotSupported(path.Child("mode"), fusion.Mode, []string{"perOperator", "target", "manual"})}
	}
	if errs := checkFusedPlacement(g, groups); len(errs) > 0 {
		return nil, errs
	}
	return groups, nil
}

// fuseTarget walks the topological order and cuts it into target chunks of
// n/target operators (rounded down or up, so that exactly target PEs come
// out), starting a new chunk early where placement forbids two operators to
// share a PE. Placement can therefore yield more PEs than the target, never
// fewer.
func fuseTarget(g *Graph, target int) [][]int {
	n := len(g.Order)
	var groups [][]int
	var cur []int
	chunk := 0
	for k, i := range g.Order {
		// Chunk of position k when n positions are spread evenly over target
		// chunks; a plain ceil(n/target) size would leave too few chunks
		// (5 operators, target 4: sizes 2,2,1).
		c := k * target / n
		if len(cur) > 0 && (c != chunk || !compatible(g, cur, i)) {
			groups = append(groups, cur)
			cur = nil
		}
		chunk = c
		cur = append(cur, i)
	}
	if len(cur) > 0 {
		groups = append(groups, cur)
	}
	return groups
}

func fuseManual(g *Graph, path *field.Path) ([][]int, field.ErrorList) {
	var errs field.ErrorList
	groupOf := make([]int, len(g.Spec.Application.Operators))
	for i := range groupOf {
		groupOf[i] = -1
	}
	for gi, grp := range g.Spec.Fusion.Groups {
		for oi, name := range grp.Operators {
			p := path.Child("groups").Index(gi).Child("operators").Index(oi)
			i, ok := g.Index[name]
			if !ok {
				errs = append(errs, field.NotFound(p, name))
				continue
			}
			if groupOf[i] >= 0 {
				errs = append(errs, field.Duplicate(p, name))
				continue
			}
			groupOf[i] = gi
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	byGroup := map[int][]int{}
	var groups [][]int
	for _, i := range g.Order {
		gi := groupOf[i]
		if gi < 0 {
			groups = append(groups, []int{i})
			continue
		}
		if _, started := byGroup[gi]; !started {
			groups = append(groups, nil) // placeholder, filled below
			byGroup[gi] = []int{len(groups) - 1}
		}
		slot := byGroup[gi][0]
		groups[slot] = append(groups[slot], i)
	}
	return groups, nil
}

// compatible reports whether operator i may join the operators of group.
func compatible(g *Graph, group []int, i int) bool {
	op := g.Operator(i)
	for _, j := range group {
		o := g.Operator(j)
		if o.HostPool != op.HostPool {
			return false
		}
		if op.Exlocate != "" && o.Exlocate == op.Exlocate {
			return false
		}
	}
	return true
}

// checkFusedPlacement rejects PEs whose operators' placement contradicts:
// different host pools, or two operators that must be on different hosts.
func checkFusedPlacement(g *Graph, groups [][]int) field.ErrorList {
	var errs field.ErrorList
	ops := field.NewPath("spec", "application", "operators")
	for pe, grp := range groups {
		first := g.Operator(grp[0])
		exlocated := map[string]string{}
		for _, i := range grp {
			op := g.Operator(i)
			if op.HostPool != first.HostPool {
				errs = append(errs, field.Invalid(ops.Index(i).Child("hostPool"), op.HostPool,
					fmt.Sprintf("fused into PE %d with operator %q of host pool %q", pe, first.Name, first.HostPool)))
			}
			if op.Exlocate == "" {
				continue
			}
			if other, ok := exlocated[op.Exlocate]; ok {
				errs = append(errs, field.Invalid(ops.Index(i).Child("exlocate"), op.Exlocate,
					fmt.Sprintf("fused into PE %d with operator %q of the same exlocation group", pe, other)))
			}
			exlocated[op.Exlocate] = op.Name
		}
		if len(errs) > 8 { // enough to act on; a 10,000-operator mistake need not list them all
			break
		}
	}
	// Colocation puts PEs on one host, transitively: PEs sharing a colocate
	// tag, directly or through other PEs, end up together. Two such PEs
	// cannot also share an exlocate tag, whether the tags come from one
	// operator or from different operators fused into each PE; their pods'
	// affinity and anti-affinity could never both hold.
	parent := make([]int, len(groups))
	for i := range parent {
		parent[i] = i
	}
	find := func(x int) int {
		for parent[x] != x {
			parent[x] = parent[parent[x]]
			x = parent[x]
		}
		return x
	}
	firstPE := map[string]int{} // colocate tag -> first PE carrying it
	for pe, grp := range groups {
		for _, i := range grp {
			tag := g.Operator(i).Colocate
			if tag == "" {
				continue
			}
			if q, ok := firstPE[tag]; ok {
				parent[find(pe)] = find(q)
			} else {
				firstPE[tag] = pe
			}
		}
	}
	type hostTag struct {
		host int // root PE of the colocated set
		tag  string
	}
	type holder struct{ pe, op int }
	exloc := map[hostTag]holder{}
	for pe, grp := range groups {
		host := find(pe)
		for _, i := range grp {
			op := g.Operator(i)
			if op.Exlocate == "" {
				continue
			}
			k := hostTag{host, op.Exlocate}
			h, ok := exloc[k]
			if !ok {
				exloc[k] = holder{pe, i}
				continue
			}
			if h.pe != pe && len(errs) <= 8 {
				errs = append(errs, field.Invalid(ops.Index(i).Child("exlocate"), op.Exlocate,
					fmt.Sprintf("PE %d (operator %q) must share a host with PE %d (operator %q) by colocation, and be on another host by the same exlocation group",
						pe, op.Name, h.pe, g.Operator(h.op).Name)))
			}
		}
	}
	return errs
}

// sortedSet returns the distinct non-empty strings of in, sorted.
func sortedSet(in []string) []string {
	m := map[string]bool{}
	for _, s := range in {
		if s != "" {
			m[s] = true
		}
	}
	out := make([]string, 0, len(m))
	for s := range m {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}
