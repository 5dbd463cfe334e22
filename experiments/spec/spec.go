// Package spec is the format of experiment definitions: the data files under
// experiments/defs that say what to run (workload, cluster shape, fault
// schedule, parameter sweep, repetitions, seed) independently of where it
// runs. A definition expands into Trials, one per sweep point and repetition,
// and every backend runs the same Trials.
package spec

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"
)

// Definition is one experiment as written in experiments/defs/<name>.yaml.
//
// String fields marked "may hold ${param}" are templates: ${p} is replaced by
// the value of sweep parameter p in each trial.
type Definition struct {
	// Name of the experiment; it names the results directory and the figure.
	Name string `json:"name"`
	// Description is one sentence for the figure's caption and the metadata.
	Description string `json:"description,omitempty"`
	// Workload is a Job YAML file under workloads/ (may hold ${param}).
	Workload string `json:"workload"`
	// PE overrides the resources of every PE of the workload (may hold ${param}).
	// +optional
	PE PEOverride `json:"pe,omitempty"`
	// Cluster is the shape of the cluster the workload runs on.
	Cluster Cluster `json:"cluster"`
	// Faults are injected after the Job is first Submitted (or its
	// submission timed out), in the order of their times.
	// +optional
	Faults []Fault `json:"faults,omitempty"`
	// Observe is how long the trial keeps watching after the last fault (or
	// after submission when there is none) to measure data flow.
	Observe metav1.Duration `json:"observe"`
	// Timeout bounds one trial; a trial that reaches it fails.
	Timeout metav1.Duration `json:"timeout"`
	// Sweep lists the parameters and their values; trials are the cartesian
	// product, the last parameter varying fastest.
	// +optional
	Sweep []Param `json:"sweep,omitempty"`
	// Repetitions of every sweep point.
	Repetitions int `json:"repetitions"`
	// Seed from which each trial's seed is derived.
	Seed int64 `json:"seed"`
	// Metrics the trial records; names from the metrics catalogue.
	Metrics []string `json:"metrics"`
	// Plot says how the figure of the experiment is drawn.
	Plot Plot `json:"plot"`
}

// PEOverride replaces resources in the workload's PE template.
type PEOverride struct {
	// CPU request (and limit, unless CPULimit is set) of each PE container,
	// a quantity such as 500m.
	CPU string `json:"cpu,omitempty"`
	// CPULimit, if set, is the CPU limit instead of CPU: a limit above the
	// request lets PEs use idle cores (Burstable pods), so more PE work
	// than cores can be placed.
	CPULimit string `json:"cpuLimit,omitempty"`
	// Memory request (and limit) of each PE container, such as 256Mi.
	Memory string `json:"memory,omitempty"`
}

// Cluster is a cluster shape: groups of identical nodes.
type Cluster struct {
	// Name labels the shape in result rows (for example "4x2cpu").
	Name string `json:"name"`
	// Nodes are groups of identical worker nodes.
	Nodes []NodeGroup `json:"nodes"`
}

// NodeGroup is Count identical nodes named <Name>-0 .. <Name>-(Count-1).
type NodeGroup struct {
	Name   string            `json:"name"`
	Count  int               `json:"count"`
	CPU    string            `json:"cpu"`
	Memory string            `json:"memory"`
	Labels map[string]string `json:"labels,omitempty"`
}

// Fault is one entry of the fault schedule.
type Fault struct {
	// At is the time after the Job's first submission at which to act.
	At metav1.Duration `json:"at"`
	// Action is one of the Action constants (may hold ${param}).
	Action string `json:"action"`
	// PE is the index of the processing element acted on (deletePod,
	// killContainer; for stopNode/startNode without Node, the PE's node).
	// May hold ${param}.
	// +optional
	PE string `json:"pe,omitempty"`
	// Node names the node of stopNode/startNode (may hold ${param}).
	// +optional
	Node string `json:"node,omitempty"`
	// Propagation of deleteJob: Background or Foreground (may hold ${param}).
	// +optional
	Propagation string `json:"propagation,omitempty"`
}

// Action is what a fault does.
type Action string

const (
	// DeletePod deletes the current pod of a PE.
	DeletePod Action = "deletePod"
	// KillContainer makes the PE container of a PE's pod exit with failure.
	KillContainer Action = "killContainer"
	// StopNode stops a node: its kubelet stops reporting and its pods stop.
	StopNode Action = "stopNode"
	// StartNode starts a stopped node again.
	StartNode Action = "startNode"
	// DeleteJob deletes the Job with a propagation policy.
	DeleteJob Action = "deleteJob"
)

// Actions lists the supported actions in documentation order.
var Actions = []Action{DeletePod, KillContainer, StopNode, StartNode, DeleteJob}

// Param is one swept parameter. Values are kept as written (numbers become
// their decimal text).
type Param struct {
	Name   string   `json:"name"`
	Values []string `json:"values"`
}

// Plot says how the experiment's figure is drawn from its rows.
type Plot struct {
	// X is the sweep parameter on the horizontal axis.
	X string `json:"x"`
	// XLabel is the axis label, with its unit in parentheses.
	XLabel string `json:"xLabel"`
	// LogX draws a numeric X on a log2 scale.
	// +optional
	LogX bool `json:"logX,omitempty"`
	// LogY draws the metrics on a log10 scale (for values spanning decades);
	// a panel with a value <= 0 stays linear.
	// +optional
	LogY bool `json:"logY,omitempty"`
	// Series are further sweep parameters that split lines (besides the backend).
	// +optional
	Series []string `json:"series,omitempty"`
	// Metrics are drawn one panel each, in this order.
	Metrics []string `json:"metrics"`
}

// ParamRef matches a ${name} template reference.
var paramRef = regexp.MustCompile(`\$\{([^}]*)\}`)

// Parse decodes a definition strictly: unknown or duplicate fields are errors.
func Parse(data []byte) (*Definition, error) {
	var d Definition
	if err := yaml.UnmarshalStrict(data, &d); err != nil {
		return nil, fmt.Errorf("decoding definition: %w", err)
	}
	return &d, nil
}

// Load reads, decodes and validates the definition in path. workloadsDir is
// where the workload files it names live; an empty workloadsDir skips the
// checks of workload files.
func Load(path, workloadsDir string) (*Definition, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	d, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if errs := d.Validate(workloadsDir); len(errs) > 0 {
		return nil, fmt.Errorf("%s: invalid definition:\n%s", path, formatErrs(errs))
	}
	return d, nil
}

// LoadNamed loads experiments/defs/<name>.yaml from defsDir.
func LoadNamed(defsDir, name, workloadsDir string) (*Definition, error) {
	return Load(filepath.Join(defsDir, name+".yaml"), workloadsDir)
}

// Names lists the experiments defined in defsDir, sorted.
func Names(defsDir string) ([]string, error) {
	m, err := filepath.Glob(filepath.Join(defsDir, "*.yaml"))
	if err != nil {
		return nil, err
	}
	var out []string
	for _, f := range m {
		out = append(out, strings.TrimSuffix(filepath.Base(f), ".yaml"))
	}
	return out, nil
}

func formatErrs(errs field.ErrorList) string {
	var b bytes.Buffer
	for _, e := range errs {
		fmt.Fprintf(&b, "  %s\n", e.Error())
	}
	return strings.TrimRight(b.String(), "\n")
}

// Canonical is the definition re-encoded as JSON, for the run's metadata.
func (d *Definition) Canonical() []byte {
	b, err := yaml.Marshal(d)
	if err != nil {
		panic(err) // a decoded Definition always encodes
	}
	j, err := yaml.YAMLToJSON(b)
	if err != nil {
		panic(err)
	}
	return j
}

// expand replaces every ${p} in s by params[p].
func expand(s string, params map[string]string) string {
	return paramRef.ReplaceAllStringFunc(s, func(m string) string {
		return params[m[2:len(m)-1]]
	})
}
