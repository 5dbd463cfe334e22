package local

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/runtime/operators"
	"sluice.dev/sluice/platform/runtime/wire"
)

// buildPE compiles the pe binary into the test's temporary directory.
func buildPE(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "pe")
	out, err := exec.Command("go", "build", "-o", bin, "sluice.dev/sluice/cmd/pe").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// freeBase is FreeBase for a test.
func freeBase(t *testing.T, n int) int {
	t.Helper()
	base, err := FreeBase(n, nil)
	if err != nil {
		t.Fatal(err)
	}
	return base
}

func pipeline(t *testing.T, edit func(ops []v1alpha1.Operator)) *v1alpha1.Job {
	t.Helper()
	job, err := LoadJob("../../../workloads/pipeline.yaml")
	if err != nil {
		t.Fatal(err)
	}
	edit(job.Spec.Application.Operators)
	return job
}

func i64(v int64) *int64 { return &v }

func start(t *testing.T, job *v1alpha1.Job) *Cluster {
	t.Helper()
	bin := buildPE(t)
	dir := t.TempDir()
	if d := os.Getenv("SLUICE_TEST_DIR"); d != "" {
		dir = d
	}
	c, err := New(Config{Binary: bin, Dir: dir, BasePort: freeBase(t, 8), Job: job})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.PEs) < 3 {
		t.Fatalf("pipeline fused into %d PEs, want at least 3", len(c.PEs))
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Stop(5 * time.Second)
		if t.Failed() {
			for _, p := range c.PEs {
				t.Logf("log of %s in %s", p.Name, p.Dir)
			}
		}
	})
	return c
}

func waitUntil(t *testing.T, d time.Duration, what string, f func() bool) {
	t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if f() {
			return
		}
	}
	t.Fatalf("timed out after %s waiting for %s", d, what)
}

// Without failures the sink sees every tuple exactly once: no gaps, no
// duplicates, and the aggregate's per-window counts add up to the number
// of tuples the source emitted.
func TestPipelineProcessesNoFailure(t *testing.T) {
	const n = 30000
	c := start(t, pipeline(t, func(ops []v1alpha1.Operator) {
		ops[0].Params.Count, ops[0].Params.Rate = i64(n), i64(30000)
	}))
	waitUntil(t, 20*time.Second, "the sink to complete", c.Complete)
	time.Sleep(100 * time.Millisecond) // let the late-tuple gauge be refreshed
	late, err := c.Metric(c.PEs[2].Name, "sluice_pe_aggregate_late_tuples")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Stop(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	sink := c.PEs[len(c.PEs)-1].Name
	s, err := c.ReadSummaryFile(sink)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Sinks) != 1 {
		t.Fatalf("summary %+v", s)
	}
	x := s.Sinks[0]
	if !x.Complete || x.ValueSum != n || x.Gaps != 0 || x.Duplicates != 0 || x.Restarts != 0 || x.Tuples == 0 {
		t.Fatalf("sink summary: %+v", x)
	}
	if x.Origins[0].Name != "per-key" || x.Origins[0].Next != x.Tuples {
		t.Fatalf("aggregate numbering: %+v", x.Origins)
	}
	// Event time is a function of the sequence number, so the aggregate
	// emits one tuple per (window, key) of the source's data, unless a
	// stall of a whole window of wall time made tuples late.
	src := operators.NewSource("src", c.Plan.PEs[0].Config.Operators[0].Params, operators.Env{})
	cells := map[[2]int64]bool{}
	var tp wire.Tuple
	for s := uint64(0); s < n; s++ {
		src.Tuple(s, 0, &tp)
		cells[[2]int64{tp.Event / 100e6, int64(tp.Key)}] = true
	}
	if (late == 0 && x.Tuples != uint64(len(cells))) || x.Tuples < uint64(len(cells)) {
		t.Fatalf("%d aggregate outputs for %d (window, key) cells, %v late tuples", x.Tuples, len(cells), late)
	}
}

// Killing the middle PE with SIGKILL loses what was in flight to it. The
// source's connection goes down (the source PE turns unready), comes back
// with a reconnect once the PE is restarted, tuples flow again, and the
// sink reports the loss as gaps, without duplicates.
func TestKillMiddlePE(t *testing.T) {
	c := start(t, pipeline(t, func(ops []v1alpha1.Operator) {
		// Unbounded and unpaced: the links run full, so the kill always
		// finds tuples in flight.
		ops[0].Params.Count, ops[0].Params.Rate = nil, i64(0)
		ops[2].Params.WindowMillis = i64(50)
	}))
	src, mid, sink := c.PEs[0].Name, c.PEs[1].Name, c.PEs[len(c.PEs)-1].Name
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	sinkTuples := func() uint64 {
		s, err := c.Summaries(sink)
		if err != nil || len(s) == 0 {
			return 0
		}
		return s[0].Tuples
	}
	waitUntil(t, 10*time.Second, "tuples at the sink", func() bool { return sinkTuples() > 20 })
	before, _ := c.Summaries(sink)
	if before[0].Gaps != 0 || before[0].Duplicates != 0 {
		t.Fatalf("gaps before any failure: %+v", before[0])
	}

	if err := c.Kill(mid); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 5*time.Second, "the source PE to notice", func() bool { ok, _ := c.Ready(src); return !ok })
	if ok, why := c.Ready(src); ok || why == "" {
		t.Fatalf("source PE ready with its peer dead: %q", why)
	}
	time.Sleep(300 * time.Millisecond) // the source retries while the peer is down
	if err := c.StartPE(mid); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, "the source to reconnect", func() bool {
		v, err := c.Metric(src, "sluice_pe_reconnects_total", `direction="out"`)
		return err == nil && v >= 1
	})
	ctx2, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel2()
	if err := c.WaitReady(ctx2); err != nil {
		t.Fatal(err)
	}
	resumed := sinkTuples()
	waitUntil(t, 10*time.Second, "flow to resume", func() bool { return sinkTuples() > resumed+20 })
	waitUntil(t, 10*time.Second, "the sink to report the gap", func() bool {
		s, err := c.Summaries(sink)
		return err == nil && len(s) > 0 && s[0].Gaps > 0
	})
	if err := c.Stop(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	s, err := c.ReadSummaryFile(sink)
	if err != nil {
		t.Fatal(err)
	}
	x := s.Sinks[0]
	// The loss happened between source and aggregate: the aggregate saw
	// the source's sequence jump and reported it downstream.
	if x.UpstreamLost == 0 || x.Missing != 0 || x.Duplicates != 0 || x.Gaps != x.UpstreamLost {
		t.Fatalf("sink summary after a killed middle PE: %+v", x)
	}
	fmt.Printf("kill test: sink saw %d tuples, %d source tuples reported lost\n", x.Tuples, x.UpstreamLost)
}

// `pe local` as a user runs it: it starts the PEs, prints progress, stops
// when the sinks complete and prints their summaries.
func TestPELocalCommand(t *testing.T) {
	bin := buildPE(t)
	job := pipeline(t, func(ops []v1alpha1.Operator) {
		ops[0].Params.Count, ops[0].Params.Rate = i64(5000), i64(10000)
	})
	dir := t.TempDir()
	b, err := yaml.Marshal(job)
	if err != nil {
		t.Fatal(err)
	}
	jobFile := filepath.Join(dir, "job.yaml")
	if err := os.WriteFile(jobFile, b, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "local", "--job", jobFile, "--dir", filepath.Join(dir, "run"),
		"--base-port", strconv.Itoa(freeBase(t, 8)), "--duration", "25s")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("pe local: %v\n%s", err, out)
	}
	for _, want := range []string{"4 PEs", "ready 4/4 PEs", "stopping (all sinks complete)",
		"complete=true", "gaps=0 duplicates=0 reordered=0 valueSum=5000"} {
		if !strings.Contains(string(out), want) {
			t.Fatalf("output lacks %q:\n%s", want, out)
		}
	}
	for _, f := range []string{"ports.json", "resolve.json", "pipeline-pe-0/pe.json", "pipeline-pe-3/summary.json"} {
		if _, err := os.Stat(filepath.Join(dir, "run", f)); err != nil {
			t.Errorf("missing %s: %v", f, err)
		}
	}
}
