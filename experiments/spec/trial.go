package spec

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"

	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/app"
)

// KV is one parameter value of a sweep point.
type KV struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Point is one combination of parameter values, in sweep order.
type Point []KV

// String is the point as key=value pairs joined by ";", the form stored in
// result rows.
func (p Point) String() string {
	parts := make([]string, len(p))
	for i, kv := range p {
		parts[i] = kv.Name + "=" + kv.Value
	}
	return strings.Join(parts, ";")
}

// Map returns the point as a map.
func (p Point) Map() map[string]string {
	m := make(map[string]string, len(p))
	for _, kv := range p {
		m[kv.Name] = kv.Value
	}
	return m
}

// ParsePoint reads the String form back.
func ParsePoint(s string) (Point, error) {
	if s == "" {
		return nil, nil
	}
	var p Point
	for _, part := range strings.Split(s, ";") {
		k, v, ok := strings.Cut(part, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("parameter %q is not key=value", part)
		}
		p = append(p, KV{k, v})
	}
	return p, nil
}

// Points expands the sweep: the cartesian product of the parameters'
// values, the last parameter varying fastest. No sweep is one empty point.
func (d *Definition) Points() []Point {
	points := []Point{nil}
	for _, p := range d.Sweep {
		var next []Point
		for _, base := range points {
			for _, v := range p.Values {
				pt := append(slices.Clone(base), KV{p.Name, v})
				next = append(next, pt)
			}
		}
		points = next
	}
	return points
}

// Scenario is a definition resolved for one sweep point: what a backend
// builds and does.
type Scenario struct {
	// WorkloadFile is the workload's file name under workloads/.
	WorkloadFile string
	// Job is the workload with the PE overrides applied.
	Job *v1alpha1.Job
	// PEs is the number of processing elements of the fused application.
	PEs     int
	Cluster Cluster
	Faults  []ResolvedFault
	Observe time.Duration
	Timeout time.Duration
	Metrics []string
}

// ResolvedFault is a fault with its templates expanded and checked.
type ResolvedFault struct {
	At     time.Duration
	Action Action
	// PE index, or -1 when the fault names none.
	PE int
	// Node name; empty with stopNode/startNode means the node of PE.
	Node        string
	Propagation metav1.DeletionPropagation
}

// Trial is one run: a sweep point and a repetition, with its own seed.
type Trial struct {
	Experiment string
	// Index is the trial's place in the run order, Total the run's size.
	Index, Total int
	Point        Point
	Repetition   int
	Seed         int64
	Scenario     Scenario
}

// String names the trial in progress output.
func (t Trial) String() string {
	if len(t.Point) == 0 {
		return fmt.Sprintf("rep=%d", t.Repetition)
	}
	return fmt.Sprintf("%s rep=%d", t.Point, t.Repetition)
}

// DeriveSeed gives the seed of one trial. It depends only on the
// definition's seed, the point and the repetition (not on run order), and
// different trials get unrelated seeds.
func DeriveSeed(seed int64, p Point, repetition int) int64 {
	h := fnv.New64a()
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(seed))
	h.Write(b[:])
	h.Write([]byte(p.String()))
	binary.LittleEndian.PutUint64(b[:], uint64(repetition))
	h.Write(b[:])
	// splitmix64 finaliser: spread FNV's weak low bits.
	z := h.Sum64() + 0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	z ^= z >> 31
	return int64(z &^ (1 << 63)) // non-negative
}

// Trials expands the definition into the trials of a run, point-major with
// repetitions inner, each resolved and seeded.
func (d *Definition) Trials(workloadsDir string) ([]Trial, error) {
	points := d.Points()
	total := len(points) * d.Repetitions
	out := make([]Trial, 0, total)
	for _, pt := range points {
		sc, errs := d.resolve(pt, workloadsDir)
		if len(errs) > 0 {
			return nil, fmt.Errorf("%s: point %s:\n%s", d.Name, pt, formatErrs(errs))
		}
		for r := 0; r < d.Repetitions; r++ {
			out = append(out, Trial{Experiment: d.Name, Index: len(out), Total: total, Point: pt,
				Repetition: r, Seed: DeriveSeed(d.Seed, pt, r), Scenario: *sc})
		}
	}
	return out, nil
}

// resolve expands the templates for one point and checks the result. With
// an empty workloadsDir the workload is not read (and PE indexes not checked).
func (d *Definition) resolve(pt Point, workloadsDir string) (*Scenario, field.ErrorList) {
	params := pt.Map()
	var errs field.ErrorList
	sc := &Scenario{
		WorkloadFile: expand(d.Workload, params),
		Cluster:      d.Cluster,
		Observe:      d.Observe.Duration,
		Timeout:      d.Timeout.Duration,
		Metrics:      d.Metrics,
		PEs:          -1,
	}
	wp := field.NewPath("workload")
	if filepath.Base(sc.WorkloadFile) != sc.WorkloadFile || !strings.HasSuffix(sc.WorkloadFile, ".yaml") {
		errs = append(errs, field.Invalid(wp, sc.WorkloadFile, "must be a file name ending in .yaml, inside workloads/"))
	} else if workloadsDir != "" {
		job, err := LoadWorkload(filepath.Join(workloadsDir, sc.WorkloadFile))
		if err != nil {
			errs = append(errs, field.Invalid(wp, sc.WorkloadFile, err.Error()))
		} else {
			sc.Job = job
		}
	}
	cpu, memory, cpuLimit := expand(d.PE.CPU, params), expand(d.PE.Memory, params), expand(d.PE.CPULimit, params)
	for _, q := range []struct {
		path    *field.Path
		s       string
		name    corev1.ResourceName
		request bool
		limit   bool
	}{
		{field.NewPath("pe", "cpu"), cpu, corev1.ResourceCPU, true, cpuLimit == ""},
		{field.NewPath("pe", "cpuLimit"), cpuLimit, corev1.ResourceCPU, false, true},
		{field.NewPath("pe", "memory"), memory, corev1.ResourceMemory, true, true},
	} {
		if q.s == "" {
			continue
		}
		v, err := resource.ParseQuantity(q.s)
		if err != nil || v.Sign() <= 0 {
			errs = append(errs, field.Invalid(q.path, q.s, "must be a positive quantity"))
			continue
		}
		if sc.Job != nil {
			r := &sc.Job.Spec.PE.Resources
			if r.Requests == nil {
				r.Requests = corev1.ResourceList{}
			}
			if r.Limits == nil {
				r.Limits = corev1.ResourceList{}
			}
			if q.request {
				r.Requests[q.name] = v
			}
			if q.limit {
				r.Limits[q.name] = v
			}
		}
	}
	if sc.Job != nil {
		r := sc.Job.Spec.PE.Resources
		if req, lim := r.Requests[corev1.ResourceCPU], r.Limits[corev1.ResourceCPU]; cpuLimit != "" && !lim.IsZero() && lim.Cmp(req) < 0 {
			errs = append(errs, field.Invalid(field.NewPath("pe", "cpuLimit"), cpuLimit, "below the CPU request "+req.String()))
		}
		plan, perrs := app.Build(sc.Job.Namespace, sc.Job.Name, &sc.Job.Spec)
		if len(perrs) > 0 {
			errs = append(errs, field.Invalid(wp, sc.WorkloadFile, perrs.ToAggregate().Error()))
		} else {
			sc.PEs = len(plan.PEs)
		}
	}
	nodes := d.Cluster.NodeNames()
	for i, f := range d.Faults {
		p := field.NewPath("faults").Index(i)
		rf := ResolvedFault{At: f.At.Duration, Action: Action(expand(f.Action, params)), PE: -1,
			Node: expand(f.Node, params)}
		if !slices.Contains(Actions, rf.Action) {
			errs = append(errs, field.NotSupported(p.Child("action"), string(rf.Action), actionNames()))
		}
		if pe := expand(f.PE, params); pe != "" {
			n, err := strconv.Atoi(pe)
			switch {
			case err != nil || n < 0:
				errs = append(errs, field.Invalid(p.Child("pe"), pe, "must be a PE index (0, 1, ...)"))
			case sc.PEs >= 0 && n >= sc.PEs:
				errs = append(errs, field.Invalid(p.Child("pe"), pe, fmt.Sprintf("the workload has %d PEs", sc.PEs)))
			default:
				rf.PE = n
			}
		}
		if rf.Node != "" && !slices.Contains(nodes, rf.Node) {
			errs = append(errs, field.NotSupported(p.Child("node"), rf.Node, nodes))
		}
		switch rf.Action {
		case DeletePod, KillContainer:
			if f.PE == "" {
				errs = append(errs, field.Required(p.Child("pe"), string(rf.Action)+" acts on a PE"))
			}
		case StopNode, StartNode:
			if f.PE == "" && f.Node == "" {
				errs = append(errs, field.Required(p.Child("node"), string(rf.Action)+" needs node or pe (the PE's node)"))
			}
		}
		prop, ok := propagation(expand(f.Propagation, params))
		switch {
		case !ok:
			errs = append(errs, field.NotSupported(p.Child("propagation"), expand(f.Propagation, params), []string{"Background", "Foreground"}))
		case f.Propagation != "" && rf.Action != DeleteJob:
			errs = append(errs, field.Invalid(p.Child("propagation"), f.Propagation, "only deleteJob has a propagation"))
		}
		rf.Propagation = prop
		sc.Faults = append(sc.Faults, rf)
	}
	slices.SortStableFunc(sc.Faults, func(a, b ResolvedFault) int { return cmp.Compare(a.At, b.At) })
	return sc, errs
}

func actionNames() []string {
	out := make([]string, len(Actions))
	for i, a := range Actions {
		out[i] = string(a)
	}
	return out
}

// LoadWorkload reads a Job YAML strictly and checks that the platform can
// build it (the same validation and fusion the Job controller runs).
func LoadWorkload(path string) (*v1alpha1.Job, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var job v1alpha1.Job
	if err := yaml.UnmarshalStrict(data, &job); err != nil {
		return nil, fmt.Errorf("decoding %s: %w", filepath.Base(path), err)
	}
	if job.Kind != "Job" || job.APIVersion != v1alpha1.GroupVersion.String() {
		return nil, fmt.Errorf("%s: want kind Job of %s, got %s %s", filepath.Base(path), v1alpha1.GroupVersion, job.APIVersion, job.Kind)
	}
	if job.Name == "" {
		return nil, fmt.Errorf("%s: metadata.name is required", filepath.Base(path))
	}
	if job.Namespace == "" {
		job.Namespace = "default"
	}
	if _, errs := app.Build(job.Namespace, job.Name, &job.Spec); len(errs) > 0 {
		return nil, fmt.Errorf("%s: %w", filepath.Base(path), errs.ToAggregate())
	}
	return &job, nil
}
