package app

import (
	"fmt"
	"strings"

	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"sluice.dev/sluice/platform/api/v1alpha1"
)

// MaxJobNameLength keeps generated names (<job>-pe-<index>-<launch>) within
// the 63 characters of a DNS label.
const MaxJobNameLength = 40

// maxPorts bounds the ports of a split or union, as the CRD schema does.
const maxPorts = 1024

// Graph is a validated application with its operators indexed.
type Graph struct {
	Spec *v1alpha1.JobSpec
	// Index maps an operator name to its position in Spec.Application.Operators.
	Index map[string]int
	// Order is a topological order of operator positions.
	Order []int
	// Out lists, per operator position, the stream IDs leaving it.
	Out [][]int32
	// In lists, per operator position, the stream IDs entering it.
	In [][]int32
}

// Operator returns the operator at position i.
func (g *Graph) Operator(i int) *v1alpha1.Operator { return &g.Spec.Application.Operators[i] }

// Validate checks what the API server's schema cannot: references between
// operators, streams, pools and fusion groups, port ranges, cycles and
// placement contradictions. It returns every fault it finds, each naming the
// field at fault.
func Validate(jobName string, spec *v1alpha1.JobSpec) (*Graph, field.ErrorList) {
	var errs field.ErrorList
	root := field.NewPath("spec")
	appPath := root.Child("application")
	if len(jobName) > MaxJobNameLength {
		errs = append(errs, field.TooLong(field.NewPath("metadata", "name"), jobName, MaxJobNameLength))
	} else if msgs := validation.IsDNS1035Label(jobName); len(msgs) > 0 {
		// The API server admits any DNS subdomain as a Job name ("1st",
		// "a.b"), but the name prefixes the PEs' Services, which must be
		// DNS-1035 labels; without this the Services are refused and the
		// submission only times out.
		errs = append(errs, field.Invalid(field.NewPath("metadata", "name"), jobName,
			"prefixes the names of the Job's Services: "+strings.Join(msgs, "; ")))
	}
	ops := spec.Application.Operators
	if len(ops) == 0 {
		errs = append(errs, field.Required(appPath.Child("operators"), "an application needs at least one operator"))
		return nil, errs
	}
	pools := map[string]bool{}
	for i, p := range spec.Placement.HostPools {
		path := root.Child("placement", "hostPools").Index(i)
		if pools[p.Name] {
			errs = append(errs, field.Duplicate(path.Child("name"), p.Name))
		}
		pools[p.Name] = true
		// The selector becomes the PE pods' node affinity, which the API
		// server would refuse pod by pod; refuse it here, once, by field.
		errs = append(errs, metav1validation.ValidateLabels(p.NodeSelector, path.Child("nodeSelector"))...)
	}
	g := &Graph{Spec: spec, Index: make(map[string]int, len(ops)),
		Out: make([][]int32, len(ops)), In: make([][]int32, len(ops))}
	for i := range ops {
		op := &ops[i]
		p := appPath.Child("operators").Index(i)
		if _, dup := g.Index[op.Name]; dup {
			errs = append(errs, field.Duplicate(p.Child("name"), op.Name))
			continue
		}
		g.Index[op.Name] = i
		if !KnownKind(op.Kind) {
			errs = append(errs, field.NotSupported(p.Child("kind"), op.Kind, []string{"source", "map", "filter", "aggregate", "split", "union", "sink", "export", "import"}))
		}
		// The CRD schema bounds these, but Jobs read from files (local mode,
		// experiment definitions) or stored by the simulated API server
		// reach Validate unchecked; a huge arity would make the port checks
		// below loop for as long.
		if op.Params != nil && op.Kind == v1alpha1.KindSplit && op.Params.Outputs != nil && (*op.Params.Outputs < 1 || *op.Params.Outputs > maxPorts) {
			errs = append(errs, field.Invalid(p.Child("params", "outputs"), *op.Params.Outputs, fmt.Sprintf("a split has 1 to %d output ports", maxPorts)))
		}
		if op.Params != nil && op.Kind == v1alpha1.KindUnion && op.Params.Inputs != nil && (*op.Params.Inputs < 1 || *op.Params.Inputs > maxPorts) {
			errs = append(errs, field.Invalid(p.Child("params", "inputs"), *op.Params.Inputs, fmt.Sprintf("a union has 1 to %d input ports", maxPorts)))
		}
		if op.HostPool != "" && !pools[op.HostPool] {
			errs = append(errs, field.NotFound(p.Child("hostPool"), op.HostPool))
		}
		if op.Colocate != "" && op.Colocate == op.Exlocate {
			errs = append(errs, field.Invalid(p.Child("exlocate"), op.Exlocate, "an operator cannot be colocated and exlocated with the same group"))
		}
	}
	inUsed := map[v1alpha1.Endpoint]bool{}
	outUsed := map[v1alpha1.Endpoint]bool{}
	seen := map[v1alpha1.Stream]bool{}
	for s, st := range spec.Application.Streams {
		p := appPath.Child("streams").Index(s)
		if seen[st] {
			errs = append(errs, field.Duplicate(p, fmt.Sprintf("%s:%d -> %s:%d", st.From.Operator, st.From.Port, st.To.Operator, st.To.Port)))
			continue
		}
		seen[st] = true
		from, okFrom := g.Index[st.From.Operator]
		to, okTo := g.Index[st.To.Operator]
		if !okFrom {
			errs = append(errs, field.NotFound(p.Child("from", "operator"), st.From.Operator))
		} else if n := OutputPorts(&ops[from]); st.From.Port < 0 || st.From.Port >= n {
			errs = append(errs, field.Invalid(p.Child("from", "port"), st.From.Port,
				fmt.Sprintf("operator %q (%s) has %d output port(s)", st.From.Operator, ops[from].Kind, n)))
			okFrom = false
		}
		if !okTo {
			errs = append(errs, field.NotFound(p.Child("to", "operator"), st.To.Operator))
		} else if n := InputPorts(&ops[to]); st.To.Port < 0 || st.To.Port >= n {
			errs = append(errs, field.Invalid(p.Child("to", "port"), st.To.Port,
				fmt.Sprintf("operator %q (%s) has %d input port(s)", st.To.Operator, ops[to].Kind, n)))
			okTo = false
		}
		if okFrom && okTo {
			g.Out[from] = append(g.Out[from], int32(s))
			g.In[to] = append(g.In[to], int32(s))
			outUsed[st.From] = true
			inUsed[st.To] = true
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	for i := range ops {
		op := &ops[i]
		p := appPath.Child("operators").Index(i)
		for port := int32(0); port < InputPorts(op); port++ {
			if !inUsed[v1alpha1.Endpoint{Operator: op.Name, Port: port}] {
				errs = append(errs, field.Invalid(p, op.Name, fmt.Sprintf("input port %d is not fed by any stream", port)))
			}
		}
		for port := int32(0); port < OutputPorts(op); port++ {
			if !outUsed[v1alpha1.Endpoint{Operator: op.Name, Port: port}] {
				errs = append(errs, field.Invalid(p, op.Name, fmt.Sprintf("output port %d feeds no stream", port)))
			}
		}
	}
	order, cycle := topoOrder(g)
	if cycle != "" {
		errs = append(errs, field.Invalid(appPath.Child("streams"), cycle, "the streams form a cycle"))
	}
	g.Order = order
	errs = append(errs, validateRegions(g)...)
	errs = append(errs, validateImportExport(g)...)
	if len(errs) > 0 {
		return nil, errs
	}
	return g, nil
}

// topoOrder orders operators so that every stream goes forward (Kahn's
// algorithm, ties by declaration order). On a cycle it names one operator on it.
func topoOrder(g *Graph) ([]int, string) {
	ops := g.Spec.Application.Operators
	streams := g.Spec.Application.Streams
	indeg := make([]int, len(ops))
	for i := range ops {
		indeg[i] = len(g.In[i])
	}
	queue := make([]int, 0, len(ops))
	for i := range ops {
		if indeg[i] == 0 {
			queue = append(queue, i)
		}
	}
	order := make([]int, 0, len(ops))
	for len(queue) > 0 {
		i := queue[0]
		queue = queue[1:]
		order = append(order, i)
		for _, s := range g.Out[i] {
			to := g.Index[streams[s].To.Operator]
			indeg[to]--
			if indeg[to] == 0 {
				queue = append(queue, to)
			}
		}
	}
	if len(order) < len(ops) {
		// Every operator left over has a predecessor that is left over too
		// (its in-degree never reached 0), so walking predecessors must come
		// back to an operator already visited: that one is on a cycle. The
		// first left-over operator may only be downstream of one.
		left := -1
		for i := range ops {
			if indeg[i] > 0 {
				left = i
				break
			}
		}
		visited := map[int]bool{}
		for !visited[left] {
			visited[left] = true
			for _, s := range g.In[left] {
				if from := g.Index[streams[s].From.Operator]; indeg[from] > 0 {
					left = from
					break
				}
			}
		}
		return nil, ops[left].Name
	}
	return order, ""
}
