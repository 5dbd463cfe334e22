package results

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"sluice.dev/sluice/experiments/hostcpu"
)

// Metadata describes one run: what ran, where and when.
type Metadata struct {
	Experiment string `json:"experiment"`
	Backend    string `json:"backend"`
	// DefinitionFile is the path of the definition as given to the runner.
	DefinitionFile string `json:"definitionFile"`
	// Definition is the decoded definition, re-encoded.
	Definition json.RawMessage `json:"definition"`
	// Parameters are the swept parameters and their values.
	Parameters  json.RawMessage `json:"parameters"`
	Seed        int64           `json:"seed"`
	Repetitions int             `json:"repetitions"`
	Trials      int             `json:"trials"`
	Rows        int             `json:"rows"`
	// Failures are the trials that returned an error, with the error.
	Failures    []Failure `json:"failures,omitempty"`
	CSV         string    `json:"csv"`
	GitCommit   string    `json:"gitCommit"`
	GitDirty    bool      `json:"gitDirty"`
	ToolVersion string    `json:"toolVersion"`
	Machine     Machine   `json:"machine"`
	Start       time.Time `json:"start"`
	End         time.Time `json:"end"`
	// Command is the run's command line, so that a figure can be made
	// again from its metadata.
	Command string `json:"command,omitempty"`
	// Profile is the simulator profile the run used, and ModelParameters
	// every parameter of every model with its value, unit and source.
	Profile         string          `json:"profile,omitempty"`
	ModelParameters json.RawMessage `json:"modelParameters,omitempty"`
	// Cluster is the real cluster the rows were measured on.
	Cluster *ClusterInfo `json:"clusterInfo,omitempty"`
	// Forced: started on a busy host by request; every row is flagged.
	Forced bool `json:"forced,omitempty"`
	// Quiet is the test the host passed before the run (or failed, when
	// Forced).
	Quiet *hostcpu.Usage `json:"quiet,omitempty"`
	// TrialInfo describes each trial: when it ran, what the host did
	// meanwhile and the flags its rows got.
	TrialInfo []TrialInfo `json:"trialInfo,omitempty"`
}

// ClusterInfo identifies a real cluster.
type ClusterInfo struct {
	// Provider is "kind", or what the nodes' providerID says.
	Provider          string     `json:"provider"`
	Name              string     `json:"name"`
	KubernetesVersion string     `json:"kubernetesVersion"`
	NodeImage         string     `json:"nodeImage,omitempty"`
	Nodes             []NodeInfo `json:"nodes"`
	// HostCores is the number of cores of the one host every node runs
	// on (kind); 0 when the nodes are machines of their own.
	HostCores int `json:"hostCores,omitempty"`
}

// NodeInfo is one node as the API server reports it.
type NodeInfo struct {
	Name     string `json:"name"`
	Role     string `json:"role"`
	CPU      string `json:"cpu"`
	Memory   string `json:"memory"`
	Pods     string `json:"pods"`
	Kubelet  string `json:"kubeletVersion"`
	Runtime  string `json:"containerRuntime"`
	Provider string `json:"providerID,omitempty"`
}

// TrialInfo is one trial's conditions.
type TrialInfo struct {
	Backend    string    `json:"backend"`
	Params     string    `json:"params"`
	Repetition int       `json:"repetition"`
	Seed       int64     `json:"seed"`
	Start      time.Time `json:"start"`
	End        time.Time `json:"end"`
	// Host is the host's load and CPU over the trial (kind).
	Host  *hostcpu.Usage `json:"host,omitempty"`
	Flags []string       `json:"flags,omitempty"`
}

// Failure is a trial that did not complete.
type Failure struct {
	Params     string `json:"params"`
	Repetition int    `json:"repetition"`
	Seed       int64  `json:"seed"`
	Error      string `json:"error"`
}

// Machine is the host the runner ran on.
type Machine struct {
	GOOS      string `json:"goos"`
	GOARCH    string `json:"goarch"`
	CPUs      int    `json:"cpus"`
	Hostname  string `json:"hostname"`
	GoVersion string `json:"goVersion"`
}

// ThisMachine describes the current host.
func ThisMachine() Machine {
	h, err := os.Hostname()
	if err != nil {
		h = "unknown"
	}
	return Machine{GOOS: runtime.GOOS, GOARCH: runtime.GOARCH, CPUs: runtime.NumCPU(), Hostname: h, GoVersion: runtime.Version()}
}

// GitCommit returns HEAD of the repository containing dir and whether the
// tree has uncommitted changes; "unknown" when git or the repository is
// unavailable.
func GitCommit(ctx context.Context, dir string) (string, bool) {
	cmd := exec.CommandContext(ctx, "git", "rev-parse", "HEAD")
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		return "unknown", false
	}
	st := exec.CommandContext(ctx, "git", "status", "--porcelain", "--untracked-files=no")
	st.Dir = dir
	dirty, err := st.Output()
	return strings.TrimSpace(string(out)), err == nil && len(strings.TrimSpace(string(dirty))) > 0
}

// ToolVersion is the runner's module version, or its VCS revision when
// built from a checkout, or "devel".
func ToolVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	v := bi.Main.Version
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" {
			v += "+" + s.Value
		}
	}
	if v == "" {
		return "devel"
	}
	return v
}

// WriteMetadata writes m as indented JSON.
func WriteMetadata(w io.Writer, m *Metadata) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(m)
}

// WriteMetadataFile writes m to path atomically.
func WriteMetadataFile(path string, m *Metadata) error {
	return writeAtomic(path, func(w io.Writer) error { return WriteMetadata(w, m) })
}

// ReadMetadataFile reads a metadata file.
func ReadMetadataFile(path string) (*Metadata, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var m Metadata
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, err
	}
	return &m, nil
}
