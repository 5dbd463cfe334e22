package local

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/peconfig"
	"sluice.dev/sluice/platform/runtime/regionctl"
)

// The supervisor tests run the test binary itself as a fake PE process
// (fakePE), so that they exercise the supervisor, the region state machine
// and the file-based control without depending on the engine.
func TestMain(m *testing.M) {
	if os.Getenv("SLUICE_FAKE_PE") == "1" {
		os.Exit(fakePE(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// fakePE is a stand-in for `pe run` that follows its region's commands at
// once: it applies every epoch and writes every checkpoint it is asked for,
// and is always ready.
func fakePE(args []string) int {
	if len(args) == 0 || args[0] != "run" {
		return 2
	}
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	cfgPath := fs.String("config", "", "")
	healthAddr := fs.String("health-addr", "", "")
	regionDir := fs.String("region-dir", "", "")
	for _, f := range []string{"ports", "listen-host", "listen-base", "resolve", "summary"} {
		fs.String(f, "", "")
	}
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	b, err := os.ReadFile(*cfgPath)
	if err != nil {
		return 1
	}
	pe, err := peconfig.ParsePE(b)
	if err == nil && os.Getenv("SLUICE_FAKE_PE_CRASH") == pe.Name {
		return 3
	}
	if err != nil || pe.Region == nil || *regionDir == "" || pe.Store == nil {
		fmt.Fprintln(os.Stderr, "fake PE: no region configuration", err)
		return 1
	}
	l, err := net.Listen("tcp", *healthAddr)
	if err != nil {
		return 1
	}
	go http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/summary" {
			w.Write([]byte("[]"))
		}
	}))
	ctl := regionctl.NewFiles(*regionDir, pe.Region.Name, pe.Name, 5*time.Millisecond)
	go ctl.Run(context.Background())
	ctx := context.Background()
	prog := v1alpha1.RegionProgress{Region: pe.Region.Name}
	ctl.Report(ctx, prog)
	for c := range ctl.Commands() {
		switch c.State {
		case v1alpha1.RegionResetting:
			prog.Epoch = c.Epoch
		case v1alpha1.RegionDraining:
			if c.Epoch == prog.Epoch {
				prog.Checkpointed, prog.Bytes = c.CurrentSeq, 100
			}
		}
		ctl.Report(ctx, prog)
	}
	return 0
}

func regionJob(t *testing.T, period time.Duration) *v1alpha1.Job {
	t.Helper()
	job, err := LoadJob("../../../workloads/pipeline.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var ops []string
	for _, op := range job.Spec.Application.Operators {
		ops = append(ops, op.Name)
	}
	job.Spec.Application.ConsistentRegions = []v1alpha1.ConsistentRegionDef{{Name: "main", Operators: ops,
		Period: &metav1.Duration{Duration: period}}}
	job.Spec.CheckpointStore = &v1alpha1.CheckpointStore{Type: v1alpha1.StoreFilesystem, Path: "/var/lib/sluice/checkpoints"}
	return job
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestRegionPlansApplyAPIDefaults(t *testing.T) {
	job := regionJob(t, 0)
	job.Spec.Application.ConsistentRegions[0].Period = nil
	c, err := New(Config{Binary: "unused", Dir: t.TempDir(), BasePort: 30000, Job: job})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Regions) != 1 {
		t.Fatalf("regions %+v", c.Regions)
	}
	s := c.Regions[0].Spec
	if s.Period.Duration != 5*time.Second || s.DrainTimeout.Duration != 30*time.Second || s.ResetTimeout.Duration != 30*time.Second ||
		s.MaxConsecutiveResets != 5 || s.Trigger != v1alpha1.TriggerPeriodic || s.JobName != "pipeline" || s.Region != "main" {
		t.Fatalf("spec %+v", s)
	}
	if len(s.PEs) != len(c.PEs) {
		t.Fatalf("region PEs %v, plan PEs %d", s.PEs, len(c.PEs))
	}
	if c.Regions[0].Resource != "pipeline-main" || c.Regions[0].Spec.Region != "main" {
		t.Fatalf("resource %q", c.Regions[0].Resource)
	}
	for _, p := range c.PEs {
		b, err := os.ReadFile(p.Dir + "/" + v1alpha1.PEConfigKey)
		if err != nil {
			t.Fatal(err)
		}
		pe, err := peconfig.ParsePE(b)
		if err != nil {
			t.Fatal(err)
		}
		if pe.Region == nil || pe.Region.Resource != "pipeline-main" || pe.Store == nil ||
			pe.Store.Type != "filesystem" || pe.Store.Path != c.cfg.StorePath {
			t.Fatalf("PE %s config region %+v store %+v", p.Name, pe.Region, pe.Store)
		}
		if !strings.Contains(strings.Join(c.Args(p.Name), " "), "--region-dir "+c.cfg.Dir) {
			t.Fatalf("args of %s: %v", p.Name, c.Args(p.Name))
		}
	}
}

// The supervisor aligns the PEs on epoch 1, takes periodic checkpoints,
// and after a PE is killed restarts it and resets the region to its last
// complete checkpoint.
func TestSupervisorRunsRegionAndRestartsPEs(t *testing.T) {
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("SLUICE_FAKE_PE", "1")
	var log lockedBuffer
	c, err := New(Config{Binary: bin, Dir: t.TempDir(), BasePort: freeBase(t, 8), Job: regionJob(t, 100*time.Millisecond), Log: &log})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	defer c.Stop(2 * time.Second)
	st := func() v1alpha1.ConsistentRegionStatus {
		s, ok := c.RegionStatus("main")
		if !ok {
			t.Fatal("no region main")
		}
		return s
	}
	waitUntil(t, 10*time.Second, "three checkpoints", func() bool { return st().LastCompletedSeq >= 3 })
	s := st()
	if s.Epoch != 1 || s.Resets != 0 || len(s.PEs) != len(c.PEs) {
		t.Fatalf("status after checkpoints without failures: %+v", s)
	}
	// The file holds what the supervisor decided.
	f, err := regionctl.ReadRegionFile(regionctl.RegionFile(c.cfg.Dir, "main"))
	if err != nil {
		t.Fatal(err)
	}
	if f.Epoch != 1 || f.LastCompletedSeq < 3 {
		t.Fatalf("region file %+v", f)
	}

	victim := c.PEs[1].Name
	if err := c.Kill(victim); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 5*time.Second, "a reset", func() bool { return st().Resets >= 1 })
	s = st()
	if s.Epoch != 2 || s.RestoreSeq == 0 || s.RestoreSeq != s.LastCompletedSeq {
		t.Fatalf("status after the kill: %+v", s)
	}
	waitUntil(t, 10*time.Second, "the region to recover", func() bool {
		s := st()
		return s.State == v1alpha1.RegionHealthy && s.Epoch >= 2
	})
	if n := c.Restarts(victim); n != 1 {
		t.Fatalf("%s restarted %d times, want 1", victim, n)
	}
	for _, p := range c.PEs {
		if p.Name != victim && c.Restarts(p.Name) != 0 {
			t.Fatalf("%s restarted", p.Name)
		}
	}
	resets, drains := c.RegionHistory("main")
	if len(resets) < 2 || len(drains) < 3 {
		t.Fatalf("history: resets %v drains %v", resets, drains)
	}
	before := st().LastCompletedSeq
	waitUntil(t, 10*time.Second, "checkpoints after the reset", func() bool { return st().LastCompletedSeq >= before+2 })
	for _, want := range []string{"Initializing -> Resetting", "Resetting -> Healthy", "Healthy -> Draining", "PE " + victim + " restarted", "PEOutOfSync"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, log.String())
		}
	}
}

// A PE that fails right after it starts is restarted with a doubling
// delay: 100ms, 200ms, 400ms, 800ms, 1.6s, 3.2s leave room for at most
// five restarts in 5s, however fast the machine (without the back-off a
// restart comes every few hundred ms).
func TestSupervisorBacksOffCrashLoops(t *testing.T) {
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("SLUICE_FAKE_PE", "1")
	var log lockedBuffer
	c, err := New(Config{Binary: bin, Dir: t.TempDir(), BasePort: freeBase(t, 8), Job: regionJob(t, time.Second), Log: &log})
	if err != nil {
		t.Fatal(err)
	}
	crasher := c.PEs[1].Name
	t.Setenv("SLUICE_FAKE_PE_CRASH", crasher)
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	defer c.Stop(2 * time.Second)
	time.Sleep(5 * time.Second)
	n := c.Restarts(crasher)
	if n < 2 || n > 5 {
		t.Fatalf("%s restarted %d times in 5s, want 2 to 5:\n%s", crasher, n, log.String())
	}
	if s, _ := c.RegionStatus("main"); s.State != v1alpha1.RegionInitializing {
		t.Fatalf("region with a crashing PE: %+v", s)
	}
	for _, p := range c.PEs {
		if p.Name != crasher && c.Restarts(p.Name) != 0 {
			t.Fatalf("%s restarted", p.Name)
		}
	}
}
