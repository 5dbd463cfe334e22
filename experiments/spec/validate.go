package spec

import (
	"fmt"
	"regexp"
	"strconv"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"sluice.dev/sluice/experiments/metrics"
)

var paramName = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9_]*$`)

// Validate checks the definition. With a non-empty workloadsDir it also
// resolves every sweep point and checks the workload files, PE indexes and
// node names each point names.
func (d *Definition) Validate(workloadsDir string) field.ErrorList {
	var errs field.ErrorList
	if d.Name == "" {
		errs = append(errs, field.Required(field.NewPath("name"), ""))
	} else if msgs := validation.IsDNS1123Label(d.Name); len(msgs) > 0 {
		errs = append(errs, field.Invalid(field.NewPath("name"), d.Name, msgs[0]))
	}
	if d.Workload == "" {
		errs = append(errs, field.Required(field.NewPath("workload"), "a Job YAML file under workloads/"))
	}
	errs = append(errs, d.validateSweep()...)
	errs = append(errs, d.validateRefs()...)
	errs = append(errs, d.Cluster.validate(field.NewPath("cluster"))...)
	for i, f := range d.Faults {
		p := field.NewPath("faults").Index(i)
		if f.At.Duration < 0 {
			errs = append(errs, field.Invalid(p.Child("at"), f.At.Duration.String(), "must not be negative"))
		}
		if f.Action == "" {
			errs = append(errs, field.Required(p.Child("action"), ""))
		}
	}
	if d.Observe.Duration < 0 {
		errs = append(errs, field.Invalid(field.NewPath("observe"), d.Observe.Duration.String(), "must not be negative"))
	}
	if d.Timeout.Duration <= 0 {
		errs = append(errs, field.Required(field.NewPath("timeout"), "a positive duration bounding one trial"))
	}
	if d.Repetitions < 1 {
		errs = append(errs, field.Invalid(field.NewPath("repetitions"), d.Repetitions, "must be at least 1"))
	}
	errs = append(errs, d.validateMetrics()...)
	if len(errs) > 0 {
		return errs
	}
	// Resolve every point so that a bad value of one point is reported
	// before anything runs.
	seen := map[string]bool{}
	for _, pt := range d.Points() {
		s, perrs := d.resolve(pt, workloadsDir)
		for _, e := range perrs {
			if len(pt) > 0 {
				e.Field = fmt.Sprintf("sweep point %s: %s", pt, e.Field)
			}
			if !seen[e.Error()] {
				seen[e.Error()] = true
				errs = append(errs, e)
			}
		}
		_ = s
	}
	return errs
}

func (d *Definition) validateSweep() field.ErrorList {
	var errs field.ErrorList
	names := map[string]bool{}
	for i, p := range d.Sweep {
		path := field.NewPath("sweep").Index(i)
		switch {
		case !paramName.MatchString(p.Name):
			errs = append(errs, field.Invalid(path.Child("name"), p.Name, "must match "+paramName.String()))
		case names[p.Name]:
			errs = append(errs, field.Duplicate(path.Child("name"), p.Name))
		}
		names[p.Name] = true
		if len(p.Values) == 0 {
			errs = append(errs, field.Required(path.Child("values"), "at least one value"))
		}
		vals := map[string]bool{}
		for j, v := range p.Values {
			if v == "" {
				errs = append(errs, field.Invalid(path.Child("values").Index(j), v, "must not be empty"))
			}
			if vals[v] {
				errs = append(errs, field.Duplicate(path.Child("values").Index(j), v))
			}
			vals[v] = true
		}
	}
	return errs
}

// templates lists the fields that may hold ${param}, with their paths.
func (d *Definition) templates() []struct {
	path *field.Path
	s    string
} {
	type t = struct {
		path *field.Path
		s    string
	}
	out := []t{
		{field.NewPath("workload"), d.Workload},
		{field.NewPath("pe", "cpu"), d.PE.CPU},
		{field.NewPath("pe", "memory"), d.PE.Memory},
		{field.NewPath("pe", "cpuLimit"), d.PE.CPULimit},
	}
	for i, f := range d.Faults {
		p := field.NewPath("faults").Index(i)
		out = append(out, t{p.Child("action"), f.Action}, t{p.Child("pe"), f.PE},
			t{p.Child("node"), f.Node}, t{p.Child("propagation"), f.Propagation})
	}
	return out
}

// validateRefs checks that templates name sweep parameters, that every
// parameter is used (else its trials would be identical), and that the plot
// names parameters.
func (d *Definition) validateRefs() field.ErrorList {
	var errs field.ErrorList
	declared := map[string]bool{}
	for _, p := range d.Sweep {
		declared[p.Name] = true
	}
	used := map[string]bool{}
	for _, t := range d.templates() {
		for _, m := range paramRef.FindAllStringSubmatch(t.s, -1) {
			if !declared[m[1]] {
				errs = append(errs, field.Invalid(t.path, t.s, fmt.Sprintf("${%s} is not a sweep parameter", m[1])))
			}
			used[m[1]] = true
		}
	}
	for i, p := range d.Sweep {
		if paramName.MatchString(p.Name) && !used[p.Name] {
			errs = append(errs, field.Invalid(field.NewPath("sweep").Index(i).Child("name"), p.Name,
				"not referenced as ${"+p.Name+"} by any field, so its trials would be identical"))
		}
	}
	pp := field.NewPath("plot")
	if d.Plot.X != "" && !declared[d.Plot.X] {
		errs = append(errs, field.NotFound(pp.Child("x"), d.Plot.X))
	}
	if d.Plot.X == "" && len(d.Sweep) > 0 {
		errs = append(errs, field.Required(pp.Child("x"), "the sweep parameter on the horizontal axis"))
	}
	if d.Plot.X != "" && d.Plot.XLabel == "" {
		errs = append(errs, field.Required(pp.Child("xLabel"), "axis label with its unit"))
	}
	for i, s := range d.Plot.Series {
		if !declared[s] || s == d.Plot.X {
			errs = append(errs, field.Invalid(pp.Child("series").Index(i), s, "must be a sweep parameter other than plot.x"))
		}
	}
	return errs
}

func (d *Definition) validateMetrics() field.ErrorList {
	var errs field.ErrorList
	path := field.NewPath("metrics")
	if len(d.Metrics) == 0 {
		errs = append(errs, field.Required(path, "at least one metric"))
	}
	have := map[string]bool{}
	for i, m := range d.Metrics {
		if _, ok := metrics.Lookup(m); !ok {
			errs = append(errs, field.NotSupported(path.Index(i), m, metrics.Names()))
		}
		if have[m] {
			errs = append(errs, field.Duplicate(path.Index(i), m))
		}
		have[m] = true
	}
	pp := field.NewPath("plot", "metrics")
	if len(d.Plot.Metrics) == 0 {
		errs = append(errs, field.Required(pp, "at least one metric to draw"))
	}
	for i, m := range d.Plot.Metrics {
		if !have[m] {
			errs = append(errs, field.Invalid(pp.Index(i), m, "not one of the definition's metrics"))
		}
	}
	return errs
}

func (c *Cluster) validate(path *field.Path) field.ErrorList {
	var errs field.ErrorList
	if c.Name == "" {
		errs = append(errs, field.Required(path.Child("name"), ""))
	}
	if len(c.Nodes) == 0 {
		errs = append(errs, field.Required(path.Child("nodes"), "at least one node group"))
	}
	names := map[string]bool{}
	for i, g := range c.Nodes {
		p := path.Child("nodes").Index(i)
		if msgs := validation.IsDNS1123Label(g.Name); len(msgs) > 0 {
			errs = append(errs, field.Invalid(p.Child("name"), g.Name, msgs[0]))
		} else if names[g.Name] {
			errs = append(errs, field.Duplicate(p.Child("name"), g.Name))
		}
		names[g.Name] = true
		if g.Count < 1 {
			errs = append(errs, field.Invalid(p.Child("count"), g.Count, "must be at least 1"))
		}
		errs = append(errs, positiveQuantity(p.Child("cpu"), g.CPU)...)
		errs = append(errs, positiveQuantity(p.Child("memory"), g.Memory)...)
		for k, v := range g.Labels {
			for _, m := range validation.IsQualifiedName(k) {
				errs = append(errs, field.Invalid(p.Child("labels").Key(k), k, m))
			}
			for _, m := range validation.IsValidLabelValue(v) {
				errs = append(errs, field.Invalid(p.Child("labels").Key(k), v, m))
			}
		}
	}
	return errs
}

func positiveQuantity(path *field.Path, s string) field.ErrorList {
	if s == "" {
		return field.ErrorList{field.Required(path, "a quantity such as 2 or 4Gi")}
	}
	q, err := resource.ParseQuantity(s)
	if err != nil {
		return field.ErrorList{field.Invalid(path, s, err.Error())}
	}
	if q.Sign() <= 0 {
		return field.ErrorList{field.Invalid(path, s, "must be positive")}
	}
	return nil
}

// NodeNames lists the cluster's node names in order.
func (c *Cluster) NodeNames() []string {
	var out []string
	for _, g := range c.Nodes {
		for i := 0; i < g.Count; i++ {
			out = append(out, g.Name+"-"+strconv.Itoa(i))
		}
	}
	return out
}

func propagation(s string) (metav1.DeletionPropagation, bool) {
	switch metav1.DeletionPropagation(s) {
	case "", metav1.DeletePropagationBackground:
		return metav1.DeletePropagationBackground, true
	case metav1.DeletePropagationForeground:
		return metav1.DeletePropagationForeground, true
	}
	return "", false
}
