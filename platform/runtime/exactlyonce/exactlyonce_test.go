// Package exactlyonce tests consistent regions end to end: real `pe run`
// processes on loopback under the local supervisor, real TCP between them,
// the filesystem checkpoint store, and PEs SIGKILLed at random points. The
// sink's final summary must equal the one of a run without failures.
package exactlyonce

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/runtime/local"
	"sluice.dev/sluice/platform/runtime/operators"
)

var peBinary string

// TestMain builds the pe binary once for every test.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sluice-exactlyonce")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	peBinary = filepath.Join(dir, "pe")
	if out, err := exec.Command("go", "build", "-o", peBinary, "sluice.dev/sluice/cmd/pe").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// The workload: a paced keyed source, a tumbling-window sum per key and a
// sink, one PE each, in one periodic region. Event time is a function of
// the sequence number and the window is long against every pause a drain
// or reset causes, so the aggregate's output is a function of its input
// alone and two correct runs give the same sink summary.
const (
	count        = 160_000
	rate         = 16_000
	keys         = 16
	windowMillis = 1000
	period       = 300 * time.Millisecond
)

func job() *v1alpha1.Job {
	i64 := func(v int64) *int64 { return &v }
	d := func(x time.Duration) *metav1.Duration { return &metav1.Duration{Duration: x} }
	return &v1alpha1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "eo", Namespace: "default"},
		Spec: v1alpha1.JobSpec{
			Application: v1alpha1.Application{
				Operators: []v1alpha1.Operator{
					{Name: "src", Kind: v1alpha1.KindSource, Params: &v1alpha1.OperatorParams{
						Rate: i64(rate), Count: i64(count), Keys: i64(keys), TupleSize: int32p(64)}},
					{Name: "sum", Kind: v1alpha1.KindAggregate, Params: &v1alpha1.OperatorParams{
						WindowMillis: i64(windowMillis), Function: "sum"}},
					{Name: "sink", Kind: v1alpha1.KindSink},
				},
				Streams: []v1alpha1.Stream{
					{From: v1alpha1.Endpoint{Operator: "src"}, To: v1alpha1.Endpoint{Operator: "sum"}},
					{From: v1alpha1.Endpoint{Operator: "sum"}, To: v1alpha1.Endpoint{Operator: "sink"}},
				},
				ConsistentRegions: []v1alpha1.ConsistentRegionDef{{
					Name: "main", Operators: []string{"src", "sum", "sink"}, Trigger: v1alpha1.TriggerPeriodic,
					Period: d(period), DrainTimeout: d(5 * time.Second), ResetTimeout: d(10 * time.Second),
					// Kills during resets make resets in a row; the test
					// wants recovery, not the Failed state.
					MaxConsecutiveResets: 50,
				}},
			},
			Fusion:          v1alpha1.Fusion{Mode: v1alpha1.FusionPerOperator},
			CheckpointStore: &v1alpha1.CheckpointStore{Type: v1alpha1.StoreFilesystem, Path: "/unused"},
		},
	}
}

func int32p(v int32) *int32 { return &v }

// freeBase is local.FreeBase for a test.
func freeBase(t *testing.T, n int, rng *rand.Rand) int {
	t.Helper()
	base, err := local.FreeBase(n, rng)
	if err != nil {
		t.Fatal(err)
	}
	return base
}

// run is one local run of the workload.
type run struct {
	t   *testing.T
	c   *local.Cluster
	rng *rand.Rand
	log *os.File
	// kills: what was killed and in which region state.
	mu    sync.Mutex
	kills []kill
}

type kill struct {
	PE    string
	State v1alpha1.RegionState
	At    time.Duration
}

func start(t *testing.T, seed uint64) *run {
	t.Helper()
	return startJob(t, seed, job())
}

func startJob(t *testing.T, seed uint64, j *v1alpha1.Job) *run {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	dir := t.TempDir()
	if os.Getenv("SLUICE_KEEP_DIR") != "" {
		// Keep the PEs' logs and checkpoints for inspection.
		var err error
		if dir, err = os.MkdirTemp("", "sluice-"+t.Name()+"-"); err != nil {
			t.Fatal(err)
		}
	}
	log, err := os.Create(filepath.Join(dir, "supervisor.log"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := local.New(local.Config{Binary: peBinary, Dir: dir, BasePort: freeBase(t, 8, rng), Job: j, Log: log, Supervise: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.PEs) < 3 || len(c.Regions) != len(j.Spec.Application.ConsistentRegions) ||
		(len(c.Regions) == 1 && len(c.Regions[0].Spec.PEs) != len(c.PEs)) {
		t.Fatalf("%d PEs, regions %+v", len(c.PEs), c.Regions)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	r := &run{t: t, c: c, rng: rng, log: log}
	t.Cleanup(func() {
		c.Stop(5 * time.Second)
		log.Close()
		if t.Failed() {
			b, _ := os.ReadFile(log.Name())
			t.Logf("supervisor log:\n%s", b)
			for _, p := range c.PEs {
				t.Logf("PE log: %s", filepath.Join(p.Dir, "pe.log"))
			}
		}
	})
	return r
}

func (r *run) status() v1alpha1.ConsistentRegionStatus {
	if len(r.c.Regions) == 0 {
		return v1alpha1.ConsistentRegionStatus{}
	}
	s, ok := r.c.RegionStatus("main")
	if !ok {
		r.t.Fatal("no region main")
	}
	return s
}

func (r *run) sink() string { return r.c.PEs[len(r.c.PEs)-1].Name }

func (r *run) sinkSummary() (operators.Summary, bool) {
	s, err := r.c.Summaries(r.sink())
	if err != nil || len(s) != 1 {
		return operators.Summary{}, false
	}
	return s[0], true
}

func (r *run) complete() bool {
	s, ok := r.sinkSummary()
	return ok && s.Complete
}

func (r *run) waitUntil(d time.Duration, what string, f func() bool) {
	r.t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(2 * time.Millisecond) {
		if f() {
			return
		}
	}
	st := r.status()
	// Stuck PEs print their goroutines into their logs.
	for _, p := range r.c.PEs {
		r.c.Signal(p.Name, syscall.SIGQUIT)
	}
	time.Sleep(300 * time.Millisecond)
	r.t.Fatalf("timed out after %s waiting for %s; region %+v%s", d, what, st, r.stuckResets())
}

// stuckResets names the PEs whose goroutine dump shows a region reset
// waiting for the engine's lock.
func (r *run) stuckResets() string {
	var out string
	for _, p := range r.c.PEs {
		b, _ := os.ReadFile(filepath.Join(p.Dir, "pe.log"))
		for _, g := range strings.Split(string(b), "\n\ngoroutine ") {
			if strings.Contains(g, "[sync.Mutex.Lock") && strings.Contains(g, "engine.(*Engine).reset(") {
				out += fmt.Sprintf("\n%s: a region reset waits for the engine lock (goroutine dump in %s; SLUICE_KEEP_DIR=1 keeps it)", p.Name, filepath.Join(p.Dir, "pe.log"))
				break
			}
		}
	}
	return out
}

// kill SIGKILLs a PE and records the region's state at that moment.
func (r *run) kill(pe string, start time.Time) {
	st := r.status().State
	if err := r.c.Kill(pe); err != nil {
		r.t.Fatal(err)
	}
	r.mu.Lock()
	r.kills = append(r.kills, kill{PE: pe, State: st, At: time.Since(start)})
	r.mu.Unlock()
	fmt.Fprintf(r.log, "test: killed %s while %s\n", pe, st)
}

func (r *run) randomPE() string { return r.c.PEs[r.rng.IntN(len(r.c.PEs))].Name }

// recovered waits until the region is Healthy and has completed a
// checkpoint after the last reset, so that consecutive resets do not pile
// up, and the source has not finished yet (kills stay in the stream).
func (r *run) waitRecovered() {
	r.t.Helper()
	st := r.status()
	r.waitUntil(30*time.Second, "recovery and a new checkpoint", func() bool {
		s := r.status()
		if s.State == v1alpha1.RegionFailed {
			r.t.Fatalf("region failed: %+v", s)
		}
		return s.State == v1alpha1.RegionHealthy && s.ConsecutiveResets == 0 && s.LastCompletedSeq > st.LastCompletedSeq
	})
}

// result is what a run is judged by.
type result struct {
	Summary operators.Summary
	Status  v1alpha1.ConsistentRegionStatus
	// Resets are the durations of the resets after the initial one.
	Resets []time.Duration
	Kills  []kill
}

// finish waits for the sink to complete, stops the run and reads the
// sink's final summary.
func (r *run) finish() result {
	r.t.Helper()
	r.waitUntil(50*time.Second, "the sink to complete", r.complete)
	live, _ := r.sinkSummary()
	st := r.status()
	if err := r.c.Stop(5 * time.Second); err != nil {
		r.t.Fatal(err)
	}
	f, err := r.c.ReadSummaryFile(r.sink())
	if err != nil {
		r.t.Fatal(err)
	}
	if len(f.Sinks) != 1 {
		r.t.Fatalf("summary file %+v", f)
	}
	if a, b := fingerprint(live), fingerprint(f.Sinks[0]); a != b {
		r.t.Fatalf("the sink's summary changed after completion:\n live %s\n file %s", a, b)
	}
	resets, _ := r.c.RegionHistory("main")
	if len(resets) > 0 {
		resets = resets[1:]
	}
	return result{Summary: f.Sinks[0], Status: st, Resets: resets, Kills: r.kills}
}

// fingerprint is the part of a sink summary that a correct run determines:
// counts, the digest of what the sink received and per-origin sequence
// accounting (origins by name, since IDs and epochs are per process).
func fingerprint(s operators.Summary) string {
	var o []string
	for _, x := range s.Origins {
		o = append(o, fmt.Sprintf("%s:epoch=%d,next=%d,tuples=%d,missing=%d,lost=%d,dups=%d,restarts=%d,sum=%d",
			x.Name, x.Epoch, x.Next, x.Tuples, x.Missing, x.UpstreamLost, x.Duplicates, x.Restarts, x.ValueSum))
	}
	sort.Strings(o)
	return fmt.Sprintf("complete=%v tuples=%d digest=%016x valueSum=%d gaps=%d dups=%d origins=[%s]",
		s.Complete, s.Tuples, s.Digest, s.ValueSum, s.Gaps, s.Duplicates, strings.Join(o, " "))
}

var (
	baseOnce sync.Once
	base     result
	baseErr  string
)

// baseline runs the workload once without failures (shared by the tests).
func baseline(t *testing.T) result {
	t.Helper()
	baseOnce.Do(func() {
		// Stays set if the run below fails the test that made it.
		baseErr = "the run without failures failed (in " + t.Name() + ")"
		r := start(t, 1)
		base = r.finish()
		baseErr = ""
		if s := base.Summary; !s.Complete || s.Gaps != 0 || s.Duplicates != 0 || s.Tuples == 0 {
			baseErr = "run without failures: " + fingerprint(s)
		}
	})
	if baseErr != "" {
		t.Fatal(baseErr)
	}
	return base
}

// expectedValueSum is the sum of every source tuple's value: the
// aggregate's sums add up to it when each input is counted exactly once.
func expectedValueSum() int64 {
	var v int64
	for s := uint64(0); s < count; s++ {
		v += int64(1 + s%10)
	}
	return v
}

// compare reports the difference with the baseline: tuples lost and
// duplicated at the sink (by count and by the sink's own sequence
// accounting) and the input tuples lost or duplicated (by the sum of
// values, each source tuple's value being at least 1).
func compare(t *testing.T, name string, got, want result) {
	t.Helper()
	g, w := got.Summary, want.Summary
	var lost, dup int64
	if g.Tuples < w.Tuples {
		lost += int64(w.Tuples - g.Tuples)
	} else {
		dup += int64(g.Tuples - w.Tuples)
	}
	lost += int64(g.Gaps)
	dup += int64(g.Duplicates)
	inputDelta := g.ValueSum - w.ValueSum
	var resets []string
	for _, d := range got.Resets {
		resets = append(resets, d.Round(time.Millisecond).String())
	}
	byState := map[v1alpha1.RegionState]int{}
	for _, k := range got.Kills {
		byState[k.State]++
	}
	report := fmt.Sprintf("%s: %d kills %v; region: %d checkpoints, %d resets, epoch %d; sink tuples %d (baseline %d): lost %d, duplicated %d; input value sum delta %d; digest equal %v; reset durations %v",
		name, len(got.Kills), byState, got.Status.Checkpoints, got.Status.Resets, got.Status.Epoch,
		g.Tuples, w.Tuples, lost, dup, inputDelta, g.Digest == w.Digest, resets)
	t.Log(report)
	fmt.Println("exactlyonce:", report)
	if fingerprint(g) != fingerprint(w) {
		t.Errorf("sink summary differs from the run without failures:\n got  %s\n want %s", fingerprint(g), fingerprint(w))
	}
	if lost != 0 || dup != 0 || inputDelta != 0 {
		t.Errorf("lost %d, duplicated %d, input value sum delta %d", lost, dup, inputDelta)
	}
}

// A run without failures takes checkpoints and delivers every tuple once.
func TestNoFailures(t *testing.T) {
	b := baseline(t)
	s := b.Summary
	if s.ValueSum != expectedValueSum() {
		t.Fatalf("sink value sum %d, source values add up to %d", s.ValueSum, expectedValueSum())
	}
	// One output per (window, key): the source's event time spans
	// count/rate seconds.
	windows := (count + rate*windowMillis/1000 - 1) / (rate * windowMillis / 1000)
	if s.Tuples != uint64(windows*keys) {
		t.Fatalf("sink tuples %d, want %d windows x %d keys", s.Tuples, windows, keys)
	}
	if b.Status.Checkpoints < 5 || b.Status.Resets != 0 || b.Status.Epoch != 1 {
		t.Fatalf("region status of a run without failures: %+v", b.Status)
	}
	t.Logf("baseline: %s; %d checkpoints, last drain %v", fingerprint(s), b.Status.Checkpoints, b.Status.LastDrainDuration)
}

// PEs killed at random moments, one at a time.
func TestRandomKills(t *testing.T) {
	want := baseline(t)
	r := start(t, 7)
	t0 := time.Now()
	r.waitUntil(20*time.Second, "the first checkpoint", func() bool { return r.status().LastCompletedSeq >= 1 })
	for i := 0; i < 8; i++ {
		time.Sleep(time.Duration(50+r.rng.IntN(400)) * time.Millisecond)
		r.kill(r.randomPE(), t0)
		r.waitRecovered()
	}
	compare(t, "random kills", r.finish(), want)
}

// PEs killed while the region drains: after the sources paused and markers
// are in flight, before every PE has written its checkpoint.
func TestKillsDuringDrain(t *testing.T) {
	want := baseline(t)
	r := start(t, 11)
	t0 := time.Now()
	r.waitUntil(20*time.Second, "the first checkpoint", func() bool { return r.status().LastCompletedSeq >= 1 })
	drainKills := 0
	for drainKills < 7 {
		if time.Since(t0) > 40*time.Second {
			t.Fatalf("only %d kills during drains", drainKills)
		}
		// Wait for the next drain, then kill after a random few ms if it
		// is still going on.
		seq := r.status().CurrentSeq
		r.waitUntil(10*time.Second, "a drain", func() bool {
			s := r.status()
			return s.State == v1alpha1.RegionDraining && s.CurrentSeq > seq
		})
		time.Sleep(time.Duration(r.rng.IntN(8000)) * time.Microsecond)
		if s := r.status(); s.State != v1alpha1.RegionDraining {
			continue
		}
		r.kill(r.randomPE(), t0)
		if r.kills[len(r.kills)-1].State == v1alpha1.RegionDraining {
			drainKills++
		}
		r.waitRecovered()
	}
	compare(t, "kills during drain", r.finish(), want)
}

// PEs killed while the region resets: a first kill starts a reset, more
// kills (of any PE, the restarted one included) hit it before it is done.
func TestKillsDuringReset(t *testing.T) {
	want := baseline(t)
	r := start(t, 23)
	t0 := time.Now()
	r.waitUntil(20*time.Second, "the first checkpoint", func() bool { return r.status().LastCompletedSeq >= 1 })
	resetKills := 0
	for round := 0; resetKills < 7; round++ {
		if time.Since(t0) > 40*time.Second {
			t.Fatalf("only %d kills during resets", resetKills)
		}
		time.Sleep(time.Duration(r.rng.IntN(300)) * time.Millisecond)
		r.kill(r.randomPE(), t0)
		r.waitUntil(5*time.Second, "a reset", func() bool { return r.status().State == v1alpha1.RegionResetting })
		for j := 0; j < 1+r.rng.IntN(2); j++ {
			time.Sleep(time.Duration(r.rng.IntN(250)) * time.Millisecond)
			if r.status().State != v1alpha1.RegionResetting {
				break
			}
			r.kill(r.randomPE(), t0)
			if r.kills[len(r.kills)-1].State == v1alpha1.RegionResetting {
				resetKills++
			}
		}
		r.waitRecovered()
	}
	compare(t, "kills during reset", r.finish(), want)
}

// `pe local` with a consistent region: the supervisor's transitions are
// printed, checkpoints land in the run directory's filesystem store and the
// sink completes exactly once.
func TestPELocalCommandWithRegion(t *testing.T) {
	j := job()
	n := int64(24_000)
	j.Spec.Application.Operators[0].Params.Count = &n
	dir := t.TempDir()
	b, err := yaml.Marshal(j)
	if err != nil {
		t.Fatal(err)
	}
	jobFile := filepath.Join(dir, "job.yaml")
	if err := os.WriteFile(jobFile, b, 0o644); err != nil {
		t.Fatal(err)
	}
	run := filepath.Join(dir, "run")
	out, err := exec.Command(peBinary, "local", "--job", jobFile, "--dir", run,
		"--base-port", strconv.Itoa(freeBase(t, 8, rand.New(rand.NewPCG(3, 4)))), "--duration", "40s").CombinedOutput()
	if err != nil {
		t.Fatalf("pe local: %v\n%s", err, out)
	}
	var sum int64
	for s := int64(0); s < n; s++ {
		sum += 1 + s%10
	}
	for _, want := range []string{"region main: Initializing -> Resetting (epoch 1", "region main: Resetting -> Healthy",
		"region main: Healthy -> Draining", "region main: Draining -> Healthy", "stopping (all sinks complete)",
		fmt.Sprintf("complete=true tuples=%d gaps=0 duplicates=0 reordered=0 valueSum=%d", 2*keys, sum)} {
		if !strings.Contains(string(out), want) {
			t.Fatalf("output lacks %q:\n%s", want, out)
		}
	}
	// Each PE pruned its older checkpoints and keeps at least the last
	// complete one.
	for _, pe := range []string{"eo-pe-0", "eo-pe-1", "eo-pe-2"} {
		ents, err := os.ReadDir(filepath.Join(run, "checkpoints", "default", "eo", "main", pe))
		if err != nil || len(ents) == 0 {
			t.Fatalf("checkpoints of %s: %v, %d files\n%s", pe, err, len(ents), out)
		}
	}
}

// Without a consistent region the same kind of failure does change the
// sink's summary: the comparison above is able to see lost tuples.
func TestKillWithoutRegionChangesTheResult(t *testing.T) {
	want := baseline(t)
	j := job()
	j.Spec.Application.ConsistentRegions, j.Spec.CheckpointStore = nil, nil
	r := startJob(t, 5, j)
	r.waitUntil(20*time.Second, "output at the sink", func() bool {
		s, ok := r.sinkSummary()
		return ok && s.Tuples >= 2*keys
	})
	agg := r.c.PEs[1].Name
	r.kill(agg, time.Now())
	r.waitUntil(10*time.Second, agg+" to be replaced", func() bool { ok, _ := r.c.Ready(agg); return ok })
	got := r.finish()
	if fingerprint(got.Summary) == fingerprint(want.Summary) {
		t.Fatalf("a run without a region lost the aggregate's state and still matches: %s", fingerprint(got.Summary))
	}
	if got.Summary.ValueSum >= want.Summary.ValueSum {
		t.Fatalf("value sum %d after losing the aggregate's windows, %d without failures", got.Summary.ValueSum, want.Summary.ValueSum)
	}
	t.Logf("without a region: %s (input value sum delta %d)", fingerprint(got.Summary), got.Summary.ValueSum-want.Summary.ValueSum)
}
