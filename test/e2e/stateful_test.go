//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"sluice.dev/sluice/kindconfig"
	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/app"
	"sluice.dev/sluice/platform/checkpoint"
	"sluice.dev/sluice/platform/runtime/engine"
	"sluice.dev/sluice/platform/runtime/operators"
	"sluice.dev/sluice/platform/runtime/wire"
)

// minIO deploys MinIO into ns for the S3 checkpoint store. Without the
// MinIO image the test skips, or fails when SLUICE_REQUIRE_S3=1 (CI).
func minIO(t *testing.T, c *kindconfig.Cluster, ns string) (endpoint, secret string) {
	t.Helper()
	endpoint, secret, err := c.DeployMinIO(context.Background(), ns)
	if errors.Is(err, kindconfig.ErrMinIOImageMissing) {
		if os.Getenv("SLUICE_REQUIRE_S3") == "1" {
			t.Fatalf("SLUICE_REQUIRE_S3=1 and no MinIO image: %v", err)
		}
		t.Skipf("no MinIO for the S3 checkpoint store (set SLUICE_REQUIRE_S3=1 to fail instead): %v", err)
	}
	if err != nil {
		t.Fatalf("deploying MinIO: %v", err)
	}
	return endpoint, secret
}

// MinIO deployed by kindconfig serves S3 on the control-plane node: an
// object written from the test process is listed and read back.
func TestMinIOInCluster(t *testing.T) {
	c := cluster(t)
	ctx := context.Background()
	ns := namespace(t, c, "e2e-minio")
	endpoint, secret := minIO(t, c, ns)
	mc, err := c.MinIOClient(ctx, ns)
	if err != nil {
		t.Fatal(err)
	}
	body := []byte("written from the test process")
	if _, err := mc.PutObject(ctx, kindconfig.MinIOBucket, "probe/a", bytes.NewReader(body), int64(len(body)), minio.PutObjectOptions{}); err != nil {
		t.Fatalf("put: %v", err)
	}
	objs, err := c.ListMinIO(ctx, ns, "probe/")
	if err != nil || objs["probe/a"] != int64(len(body)) {
		t.Fatalf("listing: %v %v", objs, err)
	}
	o, err := mc.GetObject(ctx, kindconfig.MinIOBucket, "probe/a", minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(o)
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("read back %q (%v)", got, err)
	}
	t.Logf("MinIO at %s (in-cluster), credentials in Secret %s", endpoint, secret)
}

// The stateful workload: a paced keyed source, a tumbling-window sum per
// key and a sink, one PE each on three different workers (exlocated), in
// one periodic consistent region checkpointing to MinIO. Event time is a
// function of the sequence number and aggregates in a region close windows
// only on later tuples or at the end, so the sink's final summary is a
// function of the source's parameters alone.
const (
	sfCount  = 400_000
	sfRate   = 2_000
	sfKeys   = 16
	sfWindow = 1000 // ms
	sfJob    = "agg"
	sfRegion = "main"
	sfPrefix = "e2e"
)

var sfOperators = []string{"src", "sum", "sink"}

func statefulJob(ns, endpoint, secret string) *v1alpha1.Job {
	d := func(x time.Duration) *metav1.Duration { return &metav1.Duration{Duration: x} }
	return &v1alpha1.Job{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: sfJob},
		Spec: v1alpha1.JobSpec{
			Application: v1alpha1.Application{
				Operators: []v1alpha1.Operator{
					{Name: "src", Kind: v1alpha1.KindSource, Exlocate: "spread", Params: &v1alpha1.OperatorParams{
						Rate: ptr.To[int64](sfRate), Count: ptr.To[int64](sfCount), Keys: ptr.To[int64](sfKeys), TupleSize: ptr.To[int32](64)}},
					{Name: "sum", Kind: v1alpha1.KindAggregate, Exlocate: "spread", Params: &v1alpha1.OperatorParams{
						WindowMillis: ptr.To[int64](sfWindow), Function: "sum"}},
					{Name: "sink", Kind: v1alpha1.KindSink, Exlocate: "spread"},
				},
				Streams: []v1alpha1.Stream{
					{From: v1alpha1.Endpoint{Operator: "src"}, To: v1alpha1.Endpoint{Operator: "sum"}},
					{From: v1alpha1.Endpoint{Operator: "sum"}, To: v1alpha1.Endpoint{Operator: "sink"}},
				},
				ConsistentRegions: []v1alpha1.ConsistentRegionDef{{
					Name: sfRegion, Operators: sfOperators, Trigger: v1alpha1.TriggerPeriodic,
					Period: d(time.Second), DrainTimeout: d(15 * time.Second), ResetTimeout: d(30 * time.Second),
					// Faults during resets and a stopped node make resets in
					// a row; the test wants recovery, not the Failed state.
					MaxConsecutiveResets: 100,
				}},
			},
			Fusion: v1alpha1.Fusion{Mode: v1alpha1.FusionPerOperator},
			CheckpointStore: &v1alpha1.CheckpointStore{Type: v1alpha1.StoreS3, Endpoint: endpoint,
				Bucket: kindconfig.MinIOBucket, Prefix: sfPrefix, Insecure: true, CredentialsSecret: secret},
			PE: v1alpha1.PETemplate{RestartPolicy: &v1alpha1.PERestartPolicy{RestartFailed: true, RestartDeleted: true},
				TerminationGracePeriodSeconds: ptr.To[int64](2)},
		},
	}
}

// emitTo feeds an operator's output into the next operator, in process.
type emitTo struct{ next operators.Operator }

func (e emitTo) Emit(_ int, t *wire.Tuple) { e.next.Process(0, t) }

// expectedSummary runs the workload's operators (the runtime's own code)
// in this process, without pacing, network or failures: the sink summary
// a correct run must end with.
func expectedSummary(t *testing.T, job *v1alpha1.Job) operators.Summary {
	t.Helper()
	ops := job.Spec.Application.Operators
	names := map[uint32]string{}
	for _, op := range ops {
		names[operators.OriginID(op.Name)] = op.Name
	}
	env := func(out operators.Emitter) operators.Env {
		return operators.Env{PE: "in-process", Out: out, Epoch: engine.RegionTupleEpoch, Names: names,
			Now: func() int64 { return 0 }}
	}
	sink := operators.NewSink(ops[2].Name, env(nil))
	agg, err := operators.NewAggregate(ops[1].Name, ops[1].Params, env(emitTo{sink}))
	if err != nil {
		t.Fatal(err)
	}
	src := operators.NewSource(ops[0].Name, ops[0].Params, env(emitTo{agg}))
	src.Emit(uint64(*ops[0].Params.Count), 0)
	agg.Finish()
	sink.Finish()
	return sink.Summary()
}

// fingerprint is the part of a sink summary a correct run determines:
// counts, the order-independent digest and per-origin sequence accounting.
func fingerprint(s operators.Summary) string {
	var o []string
	for _, x := range s.Origins {
		o = append(o, fmt.Sprintf("%s:epoch=%d,next=%d,tuples=%d,missing=%d,lost=%d,dups=%d,sum=%d",
			x.Name, x.Epoch, x.Next, x.Tuples, x.Missing, x.UpstreamLost, x.Duplicates, x.ValueSum))
	}
	sort.Strings(o)
	return fmt.Sprintf("complete=%v tuples=%d digest=%016x valueSum=%d gaps=%d dups=%d origins=[%s]",
		s.Complete, s.Tuples, s.Digest, s.ValueSum, s.Gaps, s.Duplicates, strings.Join(o, " "))
}

// regionWatch polls the ConsistentRegion and records its transitions, the
// durations of the resets (the coordinator's lastResetDuration at each
// Resetting -> Healthy) and the checkpoint objects seen in MinIO.
type regionWatch struct {
	c      *kindconfig.Cluster
	ns     string
	mu     sync.Mutex
	st     v1alpha1.ConsistentRegionStatus
	seen   bool
	resets []time.Duration
	// outages: entering Resetting to leaving it, as this process saw it.
	outages    []time.Duration
	resetStart time.Time
	states     []string
	objects    map[string]int64 // every checkpoint object listed, by key
	listErr    error
}

func watchRegion(t *testing.T, c *kindconfig.Cluster, ns string) *regionWatch {
	w := &regionWatch{c: c, ns: ns, objects: map[string]int64{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		lastList := time.Time{}
		for ctx.Err() == nil {
			var cr v1alpha1.ConsistentRegion
			err := c.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: app.RegionResourceName(sfJob, sfRegion)}, &cr)
			if err == nil {
				w.observe(cr.Status)
			}
			if time.Since(lastList) > 3*time.Second {
				lastList = time.Now()
				objs, err := c.ListMinIO(ctx, ns, sfPrefix+"/")
				w.mu.Lock()
				w.listErr = err
				for k, v := range objs {
					w.objects[k] = v
				}
				w.mu.Unlock()
			}
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return w
}

func (w *regionWatch) observe(s v1alpha1.ConsistentRegionStatus) {
	w.mu.Lock()
	defer w.mu.Unlock()
	prev := w.st.State
	if !w.seen || s.State != prev {
		w.states = append(w.states, string(s.State))
		if s.State == v1alpha1.RegionResetting && prev != v1alpha1.RegionResetting {
			w.resetStart = time.Now()
		}
		// A reset ends when the region leaves Resetting: for Healthy, or
		// straight on to Draining when the period is already over (Healthy
		// may last less than a poll). The first reset aligns the PEs at
		// start; it is not a recovery.
		if prev == v1alpha1.RegionResetting && s.State != v1alpha1.RegionFailed && s.Resets > 0 && !w.resetStart.IsZero() {
			if s.LastResetDuration != nil {
				w.resets = append(w.resets, s.LastResetDuration.Duration)
			}
			w.outages = append(w.outages, time.Since(w.resetStart))
		}
	}
	w.st, w.seen = s, true
}

func (w *regionWatch) status() v1alpha1.ConsistentRegionStatus {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.st
}

// wait polls the watched status until cond holds; it fails the test on a
// Failed region or after timeout.
func (w *regionWatch) wait(t *testing.T, timeout time.Duration, what string, cond func(v1alpha1.ConsistentRegionStatus) bool) bool {
	t.Helper()
	end := time.Now().Add(timeout)
	for time.Now().Before(end) {
		s := w.status()
		if s.State == v1alpha1.RegionFailed {
			t.Fatalf("region Failed while waiting for %s: %+v", what, s)
		}
		if cond(s) {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

// fault is one injected failure and the region state it hit.
type fault struct {
	Kind   string
	Target string
	State  v1alpha1.RegionState
	At     time.Duration
}

type stateful struct {
	t      *testing.T
	c      *kindconfig.Cluster
	ns     string
	rng    *rand.Rand
	w      *regionWatch
	t0     time.Time
	faults []fault
}

func (s *stateful) record(kind, target string, st v1alpha1.RegionState) {
	f := fault{Kind: kind, Target: target, State: st, At: time.Since(s.t0).Round(100 * time.Millisecond)}
	s.faults = append(s.faults, f)
	s.t.Logf("fault %d: %s %s while %s at %s", len(s.faults), kind, target, st, f.At)
}

// pePod returns the live pod of PE index i (waiting for one to exist).
func (s *stateful) pePod(i int) *corev1.Pod {
	s.t.Helper()
	var pod *corev1.Pod
	waitFor(s.t, 3*time.Minute, fmt.Sprintf("a running pod of PE %d", i), func(ctx context.Context) (bool, string) {
		pe, err := getPE(ctx, s.c, s.ns, sfJob, int32(i))
		if err != nil {
			return false, err.Error()
		}
		var p corev1.Pod
		if pe.Status.PodName == "" {
			return false, "no pod"
		}
		if err := s.c.Client.Get(ctx, client.ObjectKey{Namespace: s.ns, Name: pe.Status.PodName}, &p); err != nil {
			return false, err.Error()
		}
		pod = &p
		running := p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning && len(p.Status.ContainerStatuses) > 0 &&
			p.Status.ContainerStatuses[0].State.Running != nil
		return running, fmt.Sprintf("pod %s phase %s", p.Name, p.Status.Phase)
	})
	return pod
}

func (s *stateful) deletePod(i int) {
	pod := s.pePod(i)
	st := s.w.status().State
	if err := s.c.Client.Delete(context.Background(), pod); err != nil {
		s.t.Fatalf("deleting pod %s: %v", pod.Name, err)
	}
	s.record("delete pod", pod.Name, st)
}

// killProcess SIGKILLs the PE process inside its container, through the
// node's containerd (as experiments/kindbackend does).
// A PE process restarts in its pod, in a new container: the pod's status
// can still name the container that just ended, so a kill that finds no
// running task reads the pod again and retries.
func (s *stateful) killProcess(i int) {
	var out []byte
	var err error
	for attempt := 0; attempt < 20; attempt++ {
		pod := s.pePod(i)
		_, id, _ := strings.Cut(pod.Status.ContainerStatuses[0].ContainerID, "://")
		st := s.w.status().State
		out, err = exec.Command("docker", "exec", pod.Spec.NodeName, "ctr", "-n", "k8s.io", "tasks", "kill", "-s", "SIGKILL", id).CombinedOutput()
		if err == nil {
			s.record("kill process", pod.Name, st)
			return
		}
		if !strings.Contains(string(out), "not found") {
			s.t.Fatalf("killing the PE process of %s on %s: %v: %s", pod.Name, pod.Spec.NodeName, err, out)
		}
		time.Sleep(500 * time.Millisecond)
	}
	s.t.Fatalf("killing the PE process of PE %d: no running task after 20 tries: %v: %s", i, err, out)
}

func (s *stateful) killOperator() {
	op, err := s.c.OperatorPod(context.Background())
	if err != nil {
		s.t.Fatal(err)
	}
	st := s.w.status().State
	if err := s.c.Client.Delete(context.Background(), op, client.GracePeriodSeconds(0)); err != nil {
		s.t.Fatalf("deleting operator pod: %v", err)
	}
	s.record("kill operator", op.Name, st)
}

// stopNode stops the node container of PE i's pod for down, then starts
// it again and waits for every node to be Ready. The PE cannot move away:
// the three PEs are exlocated over the three workers, so its replacement
// waits for the node.
func (s *stateful) stopNode(i int, down time.Duration) {
	node := s.pePod(i).Spec.NodeName
	st := s.w.status().State
	var cmd *exec.Cmd
	if d := kindconfig.SharedKindDir(repoDir()); d != "" {
		cmd = exec.Command(filepath.Join(d, "node-stop"), node, "2")
	} else {
		cmd = exec.Command("docker", "stop", "-t", "2", node)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		s.t.Fatalf("stopping node %s: %v: %s", node, err, out)
	}
	s.record("stop node", node, st)
	time.Sleep(down)
	if out, err := exec.Command("docker", "start", node).CombinedOutput(); err != nil {
		s.t.Fatalf("starting node %s: %v: %s", node, err, out)
	}
	s.t.Logf("node %s started again after %s", node, down)
	if err := s.c.WaitNodesReady(context.Background(), 3*time.Minute); err != nil {
		s.t.Fatal(err)
	}
}

// recovered waits until the region is Healthy with no reset pending and
// has completed a checkpoint after the fault.
func (s *stateful) recovered(after int64) {
	s.t.Helper()
	if !s.w.wait(s.t, 5*time.Minute, "recovery", func(st v1alpha1.ConsistentRegionStatus) bool {
		return st.State == v1alpha1.RegionHealthy && st.ConsecutiveResets == 0 && st.LastCompletedSeq > after
	}) {
		s.t.Fatalf("no recovery and new checkpoint within 5m after fault %d; region %+v", len(s.faults), s.w.status())
	}
}

// sinkSummary reads the sink PE's /summary through the pod proxy.
func sinkSummary(ctx context.Context, c *kindconfig.Cluster, ns string) (operators.Summary, error) {
	pe, err := getPE(ctx, c, ns, sfJob, 2)
	if err != nil {
		return operators.Summary{}, err
	}
	if pe.Status.PodName == "" {
		return operators.Summary{}, errors.New("sink PE has no pod")
	}
	return podSummary(ctx, c, ns, pe.Status.PodName)
}

// podSummary reads the summary of the one sink of a PE pod through the
// API server's pod proxy.
func podSummary(ctx context.Context, c *kindconfig.Cluster, ns, pod string) (operators.Summary, error) {
	b, err := c.ScrapePod(ctx, ns, pod, int(v1alpha1.PEHealthPort), "/summary")
	if err != nil {
		return operators.Summary{}, err
	}
	var ss []operators.Summary
	if err := json.Unmarshal(b, &ss); err != nil || len(ss) != 1 {
		return operators.Summary{}, fmt.Errorf("summary %q: %v", b, err)
	}
	return ss[0], nil
}

// A keyed aggregate in a consistent region checkpointing to MinIO keeps
// exactly-once results through PE pod deletions, PE process kills, a
// worker node stop and start and an operator kill, injected at seeded
// random points, some while the region drains or resets: the sink's final
// summary equals the one computed in process without failures.
func TestStatefulExactlyOnceUnderFaults(t *testing.T) {
	c := cluster(t)
	ctx := context.Background()
	ns := namespace(t, c, "e2e-stateful")
	endpoint, secret := minIO(t, c, ns)
	job := statefulJob(ns, endpoint, secret)
	want := expectedSummary(t, job)
	var valueSum int64
	for seq := uint64(0); seq < sfCount; seq++ {
		valueSum += int64(1 + seq%10)
	}
	windows := (sfCount + sfRate*sfWindow/1000 - 1) / (sfRate * sfWindow / 1000)
	if !want.Complete || want.ValueSum != valueSum || want.Tuples != uint64(windows*sfKeys) {
		t.Fatalf("in-process expectation %s; want %d windows x %d keys, value sum %d", fingerprint(want), windows, sfKeys, valueSum)
	}
	t.Logf("expected: %s", fingerprint(want))

	seed := uint64(20261124)
	s := &stateful{t: t, c: c, ns: ns, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
	s.w = watchRegion(t, c, ns)
	if err := c.Client.Create(ctx, job); err != nil {
		t.Fatalf("creating Job: %v", err)
	}
	waitSubmitted(t, c, ns, sfJob, submitTimeout)
	s.t0 = time.Now()
	nodes := map[string]int{}
	for i := range sfOperators {
		p := s.pePod(i)
		nodes[p.Spec.NodeName]++
		t.Logf("PE %d (%s) on %s", i, sfOperators[i], p.Spec.NodeName)
	}
	if len(nodes) != 3 {
		t.Fatalf("the exlocated PEs share nodes: %v", nodes)
	}
	if !s.w.wait(t, 2*time.Minute, "the first checkpoint", func(st v1alpha1.ConsistentRegionStatus) bool {
		return st.State == v1alpha1.RegionHealthy && st.LastCompletedSeq >= 1
	}) {
		t.Fatalf("no checkpoint: %+v", s.w.status())
	}

	// Ten PE faults in a seeded order, the node stop early (the longest
	// outage, while the source has most to send) and the operator kill in
	// the middle. Modes: "healthy" waits a random while, "drain" waits for
	// the next drain, "reset" hits the reset the previous fault started.
	plan := []string{"delete", "delete", "delete", "delete", "delete", "kill", "kill", "kill", "kill", "kill"}
	s.rng.Shuffle(len(plan), func(i, j int) { plan[i], plan[j] = plan[j], plan[i] })
	plan = slices.Insert(plan, 1, "node")
	plan = slices.Insert(plan, 6, "operator")
	chained := false // the previous fault's reset is the target of this one
	for i, kind := range plan {
		before := s.w.status()
		mode := []string{"healthy", "drain", "reset"}[s.rng.IntN(3)]
		if kind == "node" || kind == "operator" {
			mode = []string{"healthy", "drain"}[s.rng.IntN(2)]
		}
		last := i == len(plan)-1
		switch mode {
		case "healthy":
			time.Sleep(time.Duration(500+s.rng.IntN(2500)) * time.Millisecond)
		case "drain":
			seq := before.CurrentSeq
			if !s.w.wait(t, 30*time.Second, "a drain", func(st v1alpha1.ConsistentRegionStatus) bool {
				return st.State == v1alpha1.RegionDraining && st.CurrentSeq > seq
			}) {
				t.Logf("no drain within 30s; injecting anyway")
			}
		case "reset":
			if !chained {
				time.Sleep(time.Duration(500+s.rng.IntN(2500)) * time.Millisecond)
			} else {
				s.w.wait(t, time.Minute, "a reset", func(st v1alpha1.ConsistentRegionStatus) bool {
					return st.State == v1alpha1.RegionResetting
				})
				time.Sleep(time.Duration(s.rng.IntN(300)) * time.Millisecond)
			}
		}
		pe := s.rng.IntN(len(sfOperators))
		switch kind {
		case "delete":
			s.deletePod(pe)
		case "kill":
			s.killProcess(pe)
		case "node":
			s.stopNode(pe, 20*time.Second)
		case "operator":
			s.killOperator()
		}
		// The next fault chains into this one's reset when it is a PE
		// fault in "reset" mode; otherwise wait for recovery first.
		next := ""
		if !last {
			next = plan[i+1]
		}
		chained = !last && (next == "delete" || next == "kill") && s.rng.IntN(2) == 0 && kind != "node"
		if !chained {
			s.recovered(before.LastCompletedSeq)
		}
	}

	if sum, err := sinkSummary(ctx, c, ns); err == nil {
		t.Logf("after the last fault the sink has %d of %d tuples (complete %v)", sum.Tuples, want.Tuples, sum.Complete)
	}
	// The source finishes; the sink completes.
	var got operators.Summary
	waitFor(t, 10*time.Minute, "the sink to complete", func(ctx context.Context) (bool, string) {
		sum, err := sinkSummary(ctx, c, ns)
		if err != nil {
			return false, err.Error()
		}
		got = sum
		return sum.Complete, fmt.Sprintf("%d tuples, region %s", sum.Tuples, s.w.status().State)
	})
	st := s.w.status()
	objs, err := c.ListMinIO(ctx, ns, sfPrefix+"/")
	if err != nil {
		t.Fatalf("listing the checkpoints in MinIO: %v", err)
	}

	// Report.
	var lost, dup int64
	if got.Tuples < want.Tuples {
		lost += int64(want.Tuples - got.Tuples)
	} else {
		dup += int64(got.Tuples - want.Tuples)
	}
	lost += int64(got.Gaps)
	dup += int64(got.Duplicates)
	byKind, byState := map[string]int{}, map[v1alpha1.RegionState]int{}
	for _, f := range s.faults {
		byKind[f.Kind]++
		byState[f.State]++
	}
	s.w.mu.Lock()
	resets, outages, seenObjs, states := s.w.resets, s.w.outages, len(s.w.objects), len(s.w.states)
	s.w.mu.Unlock()
	round := func(ds []time.Duration) []string {
		var out []string
		for _, d := range ds {
			out = append(out, d.Round(10*time.Millisecond).String())
		}
		return out
	}
	t.Logf("faults: %d %v by region state %v", len(s.faults), byKind, byState)
	t.Logf("region: %d checkpoints, %d resets, epoch %d, %d state changes seen, checkpointBytes %d",
		st.Checkpoints, st.Resets, st.Epoch, states, st.CheckpointBytes)
	t.Logf("reset durations (coordinator's lastResetDuration as each reset ended): %v", round(resets))
	t.Logf("resets seen from the test (entering Resetting to leaving it): %v", round(outages))
	t.Logf("sink: %d tuples (expected %d): lost %d, duplicated %d; value sum %d (expected %d); digest equal %v",
		got.Tuples, want.Tuples, lost, dup, got.ValueSum, want.ValueSum, got.Digest == want.Digest)
	t.Logf("MinIO: %d checkpoint objects now, %d distinct seen during the run", len(objs), seenObjs)

	if fingerprint(got) != fingerprint(want) {
		t.Errorf("sink summary differs from the failure-free result:\n got  %s\n want %s", fingerprint(got), fingerprint(want))
	}
	if lost != 0 || dup != 0 {
		t.Errorf("lost %d, duplicated %d", lost, dup)
	}
	if len(s.faults) < 12 || st.Resets < 10 {
		t.Errorf("%d faults and %d resets; the test means at least 12 faults, each making a reset", len(s.faults), st.Resets)
	}
	// Checkpoints are really in MinIO: every PE of the region has objects
	// under <prefix>/<namespace>/<job>/<region>/<pe>/, not empty.
	for i := range sfOperators {
		pe := app.PEName(sfJob, int32(i))
		name, err := checkpoint.ObjectName(checkpoint.Key{Namespace: ns, Job: sfJob, Region: sfRegion, PE: pe})
		if err != nil {
			t.Fatal(err)
		}
		dir := sfPrefix + "/" + path.Dir(name) + "/"
		n := 0
		for k, size := range objs {
			if strings.HasPrefix(k, dir) && size > 0 {
				n++
			}
		}
		if n == 0 {
			t.Errorf("no checkpoint of %s in MinIO under %s; objects: %v", pe, dir, objs)
		}
	}
	if st.CheckpointBytes <= 0 || seenObjs <= len(objs) {
		t.Errorf("checkpointBytes %d, %d objects seen over the run, %d now: checkpoints were not taken and pruned in MinIO", st.CheckpointBytes, seenObjs, len(objs))
	}
}
