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
