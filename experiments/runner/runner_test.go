package runner

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	clocktesting "k8s.io/utils/clock/testing"

	"sluice.dev/sluice/experiments/results"
	"sluice.dev/sluice/experiments/spec"
)

const def = `
name: fakeexp
workload: pipeline-${pes}.yaml
cluster:
  name: c1
  nodes: [{name: w, count: 1, cpu: "2", memory: 2Gi}]
observe: 0s
timeout: 1m
sweep:
- {name: pes, values: [2, 4]}
repetitions: 2
seed: 11
metrics: [submission]
plot: {x: pes, xLabel: PEs (count), metrics: [submission]}
`

// fakeBackend is a unit-test stand-in for a real backend: its value is a
// function of the trial's seed and parameters, it can fail chosen trials,
// and it advances a fake clock by 10 s per trial.
type fakeBackend struct {
	clk    *clocktesting.FakeClock
	failOn map[int]bool
	mu     sync.Mutex
	calls  []int
	// gate, when set, holds trial 0 until trial 1 has finished, so that
	// parallel runs finish out of order.
	gate chan struct{}
	// name replaces "fake"; flag is put on every row and trial; cancel is
	// called after trial 1.
	name, flag string
	cancel     func()
}

func (f *fakeBackend) Name() string {
	if f.name != "" {
		return f.name
	}
	return "fake"
}

func (f *fakeBackend) Run(ctx context.Context, t spec.Trial) (Result, error) {
	rows, err := f.rows(ctx, t)
	var info *results.TrialInfo
	if f.flag != "" {
		info = &results.TrialInfo{Flags: []string{f.flag}}
		for i := range rows {
			rows[i].Flags = f.flag
		}
	}
	if f.cancel != nil && t.Index == 1 {
		f.cancel()
	}
	return Result{Rows: rows, Info: info}, err
}

// Describe marks the metadata, as a real backend names its cluster.
func (f *fakeBackend) Describe(md *results.Metadata) { md.Profile = "described-" + f.Name() }

func (f *fakeBackend) rows(ctx context.Context, t spec.Trial) ([]results.Row, error) {
	if f.gate != nil {
		if t.Index == 0 {
			<-f.gate
		}
		if t.Index == 1 {
			defer close(f.gate)
		}
	}
	f.mu.Lock()
	f.calls = append(f.calls, t.Index)
	if f.clk != nil {
		f.clk.Step(10 * time.Second)
	}
	f.mu.Unlock()
	if f.failOn[t.Index] {
		return nil, fmt.Errorf("injected failure of trial %d", t.Index)
	}
	pes, _ := strconv.Atoi(t.Point.Map()["pes"])
	return []results.Row{
		{Metric: "submission", Value: float64(pes) + float64(t.Seed%1000)/1000, Unit: "s"},
		{Metric: "pod_startup", Subject: "pod-a", Value: float64(t.Repetition), Unit: "s"},
	}, nil
}

func writeDef(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "fakeexp.yaml")
	if err := os.WriteFile(p, []byte(def), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func trials(t *testing.T) (*spec.Definition, []spec.Trial) {
	t.Helper()
	d, err := spec.Parse([]byte(def))
	if err != nil {
		t.Fatal(err)
	}
	tr, err := d.Trials("../../workloads")
	if err != nil {
		t.Fatal(err)
	}
	return d, tr
}

func TestRunTrialsStampsAndOrders(t *testing.T) {
	d, tr := trials(t)
	seq, err := RunTrials(context.Background(), d, tr, &fakeBackend{}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(seq.Rows) != 8 || len(seq.Failures) != 0 {
		t.Fatalf("%d rows %d failures", len(seq.Rows), len(seq.Failures))
	}
	r := seq.Rows[6] // pes=4, rep 1, first row
	want := results.Row{Experiment: "fakeexp", Backend: "fake", Cluster: "c1", Params: "pes=4", Repetition: 1,
		Seed: tr[3].Seed, Metric: "submission", Value: 4 + float64(tr[3].Seed%1000)/1000, Unit: "s"}
	if diff := cmp.Diff(want, r); diff != "" {
		t.Error(diff)
	}
	// Parallel trials that finish out of order still give rows in trial order.
	fb := &fakeBackend{gate: make(chan struct{})}
	par, err := RunTrials(context.Background(), d, tr, fb, Options{Parallel: 2})
	if err != nil {
		t.Fatal(err)
	}
	if fb.calls[0] == 0 {
		t.Fatalf("trial 0 finished first (%v); the test did not reorder", fb.calls)
	}
	if diff := cmp.Diff(seq.Rows, par.Rows); diff != "" {
		t.Error(diff)
	}
}

func TestRunTrialsRecordsFailures(t *testing.T) {
	d, tr := trials(t)
	out, err := RunTrials(context.Background(), d, tr, &fakeBackend{failOn: map[int]bool{2: true}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Rows) != 6 {
		t.Errorf("%d rows, want 6 from the 3 good trials", len(out.Rows))
	}
	want := []results.Failure{{Params: "pes=4", Repetition: 0, Seed: tr[2].Seed, Error: "injected failure of trial 2"}}
	if diff := cmp.Diff(want, out.Failures); diff != "" {
		t.Error(diff)
	}
}

func TestRunTrialsCancelled(t *testing.T) {
	d, tr := trials(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := RunTrials(ctx, d, tr, &fakeBackend{}, Options{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v", err)
	}
}

func TestRunWritesFilesDeterministically(t *testing.T) {
	defPath := writeDef(t)
	var csvs [][]byte
	for i := 0; i < 2; i++ {
		out := t.TempDir()
		rep, err := Run(context.Background(), Config{DefinitionFile: defPath, WorkloadsDir: "../../workloads",
			ResultsDir: out}, &fakeBackend{})
		if err != nil {
			t.Fatal(err)
		}
		br := rep.Backends[0]
		if br.CSV != filepath.Join(out, "fakeexp", "fake.csv") || br.JSON != filepath.Join(out, "fakeexp", "fake.json") {
			t.Fatalf("report %+v", rep)
		}
		b, err := os.ReadFile(br.CSV)
		if err != nil {
			t.Fatal(err)
		}
		csvs = append(csvs, b)
		md, err := results.ReadMetadataFile(br.JSON)
		if err != nil {
			t.Fatal(err)
		}
		compact := func(raw []byte) string {
			var c bytes.Buffer
			json.Compact(&c, raw)
			return c.String()
		}
		if md.Experiment != "fakeexp" || md.Backend != "fake" || md.Seed != 11 || md.Trials != 4 || md.Rows != 8 ||
			md.GitCommit == "" || md.Machine.CPUs == 0 || md.End.Before(md.Start) ||
			!strings.Contains(compact(md.Parameters), `"values":["2","4"]`) || !strings.Contains(compact(md.Definition), `"name":"fakeexp"`) ||
			md.Profile != "described-fake" || len(md.TrialInfo) != 4 || md.TrialInfo[3].Params != "pes=4" || md.TrialInfo[3].Repetition != 1 {
			t.Errorf("metadata %+v", md)
		}
	}
	if !bytes.Equal(csvs[0], csvs[1]) {
		t.Error("two runs of one definition and seed differ")
	}
	// A different seed changes the values.
	rep, err := Run(context.Background(), Config{DefinitionFile: defPath, WorkloadsDir: "../../workloads",
		ResultsDir: t.TempDir(), Seed: 12, Repetitions: 3}, &fakeBackend{})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(rep.Backends[0].CSV)
	if bytes.Equal(b, csvs[0]) || rep.Backends[0].Rows != 12 {
		t.Errorf("seed/repetition overrides ignored: %d rows", rep.Backends[0].Rows)
	}
}

// Each trial runs on the platform backend, then on its baseline; points
// and a tag choose what runs and where it goes; flags reach rows and
// metadata.
func TestRunPairedPointsAndTag(t *testing.T) {
	defPath := writeDef(t)
	out := t.TempDir()
	var order []string
	var mu sync.Mutex
	platform := &fakeBackend{name: "kind", flag: results.FlagNoisy}
	baseline := &fakeBackend{name: "kind-baseline"}
	rec := func(b *fakeBackend) Backend { return recording{b, &order, &mu} }
	rep, err := Run(context.Background(), Config{DefinitionFile: defPath, WorkloadsDir: "../../workloads", ResultsDir: out,
		Points: []string{"pes=4"}, Tag: "quiet"}, rec(platform), rec(baseline))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"kind pes=4 rep=0", "kind-baseline pes=4 rep=0", "kind pes=4 rep=1", "kind-baseline pes=4 rep=1"}; !cmp.Equal(order, want) {
		t.Errorf("order %v, want %v", order, want)
	}
	if len(rep.Backends) != 2 || rep.Backends[1].CSV != filepath.Join(out, "fakeexp", "kind-baseline-quiet.csv") {
		t.Fatalf("report %+v", rep.Backends)
	}
	rows, err := results.ReadFile(rep.Backends[0].CSV)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 4 || rows[0].Params != "pes=4" || rows[0].Flags != results.FlagNoisy || rows[0].Cluster != "c1" {
		t.Errorf("platform rows %+v", rows)
	}
	md, err := results.ReadMetadataFile(rep.Backends[0].JSON)
	if err != nil {
		t.Fatal(err)
	}
	if len(md.TrialInfo) != 2 || md.TrialInfo[0].Flags[0] != results.FlagNoisy || md.TrialInfo[0].Backend != "kind" {
		t.Errorf("trial info %+v", md.TrialInfo)
	}
	if _, err := Run(context.Background(), Config{DefinitionFile: defPath, WorkloadsDir: "../../workloads", ResultsDir: out,
		Points: []string{"pes=3"}}, platform); err == nil || !strings.Contains(err.Error(), "pes=2, pes=4") {
		t.Errorf("unknown point: %v", err)
	}
}

// recording notes the order of trials across backends.
type recording struct {
	*fakeBackend
	order *[]string
	mu    *sync.Mutex
}

func (r recording) Run(ctx context.Context, t spec.Trial) (Result, error) {
	r.mu.Lock()
	*r.order = append(*r.order, r.Name()+" "+t.String())
	r.mu.Unlock()
	return r.fakeBackend.Run(ctx, t)
}

// An interrupted run still writes what finished, and says so.
func TestRunInterruptedKeepsFinishedTrials(t *testing.T) {
	defPath := writeDef(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rep, err := Run(ctx, Config{DefinitionFile: defPath, WorkloadsDir: "../../workloads", ResultsDir: t.TempDir()},
		&fakeBackend{cancel: cancel})
	if err == nil || !errors.Is(err, context.Canceled) || rep == nil {
		t.Fatalf("err %v, report %+v", err, rep)
	}
	rows, _ := results.ReadFile(rep.Backends[0].CSV)
	if len(rows) != 4 {
		t.Errorf("%d rows written, want the 2 finished trials' 4", len(rows))
	}
}

func TestRunRejectsBadDefinition(t *testing.T) {
	p := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(p, []byte(strings.Replace(def, "repetitions: 2", "repetitions: 2\nrepeat: 3", 1)), 0o644)
	_, err := Run(context.Background(), Config{DefinitionFile: p, WorkloadsDir: "../../workloads", ResultsDir: t.TempDir()}, &fakeBackend{})
	if err == nil || !strings.Contains(err.Error(), `unknown field "repeat"`) || !strings.Contains(err.Error(), "bad.yaml") {
		t.Fatalf("err %v", err)
	}
}

func TestProgressPlainLines(t *testing.T) {
	d, tr := trials(t)
	clk := clocktesting.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	var buf bytes.Buffer
	_, err := RunTrials(context.Background(), d, tr, &fakeBackend{clk: clk, failOn: map[int]bool{1: true}},
		Options{Progress: &buf, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	want := `fakeexp [fake]: 4 trials
fakeexp [fake]: 1/4 pes=2 rep=0 ok elapsed 10s eta 30s
fakeexp [fake]: 2/4 pes=2 rep=1 FAILED: injected failure of trial 1 elapsed 20s eta 20s
fakeexp [fake]: 3/4 pes=4 rep=0 ok elapsed 30s eta 10s
fakeexp [fake]: 4/4 pes=4 rep=1 ok elapsed 40s eta 0s
fakeexp [fake]: 4 trials, 1 failed, in 40s
`
	if diff := cmp.Diff(want, buf.String()); diff != "" {
		t.Error(diff)
	}
	if strings.ContainsAny(buf.String(), "\r\x1b") {
		t.Error("control characters in non-terminal output")
	}
}

func TestProgressBar(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	var buf bytes.Buffer
	p := NewProgress(&buf, true, clk, "x", 4)
	p.Started("pes=2 rep=0")
	clk.Step(5 * time.Second)
	p.Finished("pes=2 rep=0", nil)
	out := buf.String()
	last := out[strings.LastIndex(out, "\r"):]
	want := "\r\x1b[Kx [=======>                      ] 1/4 elapsed 5s eta 15s  pes=2 rep=0"
	if last != want {
		t.Errorf("bar %q, want %q", last, want)
	}
}
