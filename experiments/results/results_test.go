package results

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var sample = []Row{
	{"recovery", "sim", "4x4cpu", "fault=deletePod", 0, 123, "recovery_connected", "", 1.25, "s", ""},
	{"recovery", "sim", "4x4cpu", "fault=deletePod", 1, 456, "recovery_connected", "", 0.1 + 0.2, "s", ""},
	{"submission", "kind", "a,b \"quoted\"", "pes=4;cpu=500m", 2, math.MaxInt64, "pod_startup", "pipeline-4-pe-1-0", 1e-9, "s", FlagNoisy + ";" + FlagForced},
	{"oversubscription", "sim", "2x2cpu", "", 0, 0, "throughput", "", 123456789.125, "tuples/s", ""},
}

func TestCSVRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteCSV(&buf, sample); err != nil {
		t.Fatal(err)
	}
	first := buf.String()
	if !strings.HasPrefix(first, "experiment,backend,cluster,params,repetition,seed,metric,subject,value,unit,flags\n") {
		t.Fatalf("header: %q", first)
	}
	got, err := ReadCSV(&buf)
	if err != nil {
		t.Fatal(err)
	}
	// Exact float equality: values must survive the text form bit for bit.
	if diff := cmp.Diff(sample, got); diff != "" {
		t.Fatal(diff)
	}
	var again bytes.Buffer
	if err := WriteCSV(&again, got); err != nil {
		t.Fatal(err)
	}
	if again.String() != first {
		t.Error("second write differs from the first")
	}
}

// Files written before the flags column read as rows with no flags.
func TestCSVReadsLegacyHeader(t *testing.T) {
	doc := "experiment,backend,cluster,params,repetition,seed,metric,subject,value,unit\ne,kind,c,p=1,0,1,m,,2.5,s\n"
	rows, err := ReadCSV(strings.NewReader(doc))
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || rows[0].Value != 2.5 || !rows[0].Trusted() {
		t.Fatalf("rows %+v", rows)
	}
}

func TestCSVErrors(t *testing.T) {
	if err := WriteCSV(&bytes.Buffer{}, []Row{{Metric: "x", Value: math.NaN()}}); err == nil {
		t.Error("NaN accepted")
	}
	for name, doc := range map[string]string{
		"bad header": "experiment,backend,cluster,params,rep,seed,metric,subject,value,unit\n",
		"bad value":  strings.Join(Header, ",") + "\ne,b,c,p,0,1,m,,fast,s\n",
		"bad seed":   strings.Join(Header, ",") + "\ne,b,c,p,0,x,m,,1,s\n",
		"short row":  strings.Join(Header, ",") + "\ne,b,c\n",
	} {
		if _, err := ReadCSV(strings.NewReader(doc)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestFilesAndReadExperiment(t *testing.T) {
	dir := t.TempDir()
	simCSV, simJSON := Paths(dir, "recovery", "sim")
	if simCSV != filepath.Join(dir, "recovery", "sim.csv") || simJSON != filepath.Join(dir, "recovery", "sim.json") {
		t.Fatalf("paths %s %s", simCSV, simJSON)
	}
	kindCSV, _ := Paths(dir, "recovery", "kind")
	if err := WriteFile(simCSV, sample[:2]); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(kindCSV, sample[2:3]); err != nil {
		t.Fatal(err)
	}
	rows, err := ReadExperiment(dir, "recovery")
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 3 {
		t.Fatalf("%d rows, want both backends' 3", len(rows))
	}
	left, _ := filepath.Glob(filepath.Join(dir, "recovery", ".tmp-*"))
	if len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

func TestMetadata(t *testing.T) {
	m := ThisMachine()
	if m.GOOS != runtime.GOOS || m.GOARCH != runtime.GOARCH || m.CPUs != runtime.NumCPU() || m.Hostname == "" {
		t.Errorf("machine %+v", m)
	}
	// The test runs inside the repository, so HEAD is a 40-hex commit.
	commit, _ := GitCommit(context.Background(), ".")
	if len(commit) != 40 {
		t.Errorf("commit %q", commit)
	}
	if c, dirty := GitCommit(context.Background(), t.TempDir()); c != "unknown" || dirty {
		t.Errorf("outside a repository: %q %v", c, dirty)
	}
	md := &Metadata{Experiment: "recovery", Backend: "sim", Definition: json.RawMessage(`{"name":"recovery"}`),
		Parameters: json.RawMessage(`[{"name":"fault","values":["deletePod"]}]`), Seed: 5, Repetitions: 2, Trials: 2,
		GitCommit: commit, Machine: m, ToolVersion: ToolVersion(),
		Start: time.Date(2026, 11, 24, 5, 0, 0, 0, time.UTC), End: time.Date(2026, 11, 24, 5, 1, 0, 0, time.UTC),
		Failures: []Failure{{Params: "fault=deletePod", Repetition: 1, Seed: 9, Error: "timeout"}}}
	path := filepath.Join(t.TempDir(), "x", "sim.json")
	if err := WriteMetadataFile(path, md); err != nil {
		t.Fatal(err)
	}
	back, err := ReadMetadataFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// Raw JSON comes back indented; compare it compacted.
	for _, r := range []*json.RawMessage{&back.Definition, &back.Parameters} {
		var c bytes.Buffer
		if err := json.Compact(&c, *r); err != nil {
			t.Fatal(err)
		}
		*r = c.Bytes()
	}
	if diff := cmp.Diff(md, back); diff != "" {
		t.Error(diff)
	}
	raw, _ := os.ReadFile(path)
	for _, key := range []string{`"gitCommit"`, `"definition"`, `"parameters"`, `"seed": 5`, `"backend": "sim"`, `"hostname"`, `"start": "2026-11-24T05:00:00Z"`, `"toolVersion"`} {
		if !bytes.Contains(raw, []byte(key)) {
			t.Errorf("metadata lacks %s:\n%s", key, raw)
		}
	}
}
