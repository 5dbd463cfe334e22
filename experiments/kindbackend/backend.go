// Package kindbackend runs experiment trials on a real kind cluster with
// the real operator and PE images, measured by the same definitions as the
// simulator backend (experiments/metrics): watch events stamped on receipt,
// the harness's own actions, and sink counters scraped from the PE pods.
//
// Every trial runs in a namespace of its own, which is deleted (and waited
// for) before the next. Faults: deletePod deletes a PE's pod,
// killContainer SIGKILLs its container inside the node (ctr), stopNode
// stops the node's container (shared/kind's node-stop, else docker stop)
// and startNode starts it again; a node the trial stopped is started again
// at its end.
//
// The Baseline mode measures what plain Kubernetes does for the same
// trial, so that the platform's cost is a ratio measured in one run: N
// bare pods created directly (the very pod the platform would create for a
// self-contained one-PE application) against the submission of an N-PE
// Job, and a one-replica Deployment's pod replacement against PE recovery.
package kindbackend

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"sluice.dev/sluice/experiments/hostcpu"
	"sluice.dev/sluice/experiments/metrics"
	"sluice.dev/sluice/experiments/results"
	"sluice.dev/sluice/experiments/runner"
	"sluice.dev/sluice/experiments/spec"
	"sluice.dev/sluice/kindconfig"
	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/app"
)

// Mode selects what a trial measures.
type Mode int

const (
	// Platform runs the definition's Job through the operator.
	Platform Mode = iota
	// Baseline runs the plain-Kubernetes counterpart of the trial.
	Baseline
)

// Backend runs trials on one kind cluster.
type Backend struct {
	Cluster *kindconfig.Cluster
	Mode    Mode
	// SharedKind is the offline kind scripts' directory ("" when absent).
	SharedKind string
	// Log receives one line per harness step; nil discards.
	Log io.Writer
	// ScrapeEvery is the sink sampling period (default 500ms).
	ScrapeEvery time.Duration
	// NodeDelay, when positive, is a one-way delay added with tc netem to
	// the traffic between kind workers for the length of every trial.
	NodeDelay time.Duration
	// Forced: the run was started on a busy host by request; every row
	// gets the flag "forced".
	Forced bool
	// Quiet is the host's quiet test before the run.
	Quiet *hostcpu.Usage
	clk   clock.Clock
	wc    client.WithWatch
	host  *hostProbe
}

// New returns a backend on a cluster (see kindconfig.Ensure).
func New(c *kindconfig.Cluster, mode Mode, log io.Writer) (*Backend, error) {
	wc, err := client.NewWithWatch(c.Config, client.Options{Scheme: kindconfig.Scheme()})
	if err != nil {
		return nil, err
	}
	host, err := newHostProbe(context.Background(), c)
	if err != nil {
		return nil, fmt.Errorf("host CPU accounting: %w", err)
	}
	return &Backend{Cluster: c, Mode: mode, SharedKind: kindconfig.SharedKindDir(c.RepoDir), Log: log,
		ScrapeEvery: 500 * time.Millisecond, clk: clock.RealClock{}, wc: wc, host: host}, nil
}

// Name is "kind", or "kind-baseline" in Baseline mode: the backend column
// of the rows, so that figures draw the baseline as a series of its own.
// With a NodeDelay the platform's rows are "kind-netem<delay>", a series
// of their own beside the undelayed cluster's.
func (b *Backend) Name() string {
	if b.Mode == Baseline {
		return "kind-baseline"
	}
	if b.NodeDelay > 0 {
		return "kind-netem" + b.NodeDelay.String()
	}
	return "kind"
}

// HasBaseline says whether a trial has a plain-Kubernetes counterpart on
// kind: N bare pods for a submission without faults or observation
// window, a Deployment for pod-level faults. GC, latency and
// oversubscription have none.
func HasBaseline(sc spec.Scenario) bool {
	if len(sc.Faults) == 0 {
		return sc.Observe == 0 && slices.Contains(sc.Metrics, metrics.Submission)
	}
	for _, f := range sc.Faults {
		switch f.Action {
		case spec.DeletePod, spec.KillContainer, spec.StopNode, spec.StartNode:
		default:
			return false
		}
	}
	return true
}

// Applies says whether the backend runs a trial: the platform every one,
// the baseline those with a plain-Kubernetes counterpart (HasBaseline).
func (b *Backend) Applies(t spec.Trial) bool {
	return b.Mode != Baseline || HasBaseline(t.Scenario)
}

func (b *Backend) logf(format string, a ...any) {
	if b.Log != nil {
		fmt.Fprintf(b.Log, "%s %s: "+format+"\n", append([]any{time.Now().UTC().Format("15:04:05"), b.Name()}, a...)...)
	}
}

// Run runs one trial, and accounts for the host's CPU meanwhile: rows of
// a trial during which other work used the host are flagged noisy.
func (b *Backend) Run(ctx context.Context, t spec.Trial) (runner.Result, error) {
	var before *hostcpu.Snapshot
	if b.host != nil {
		b.host.refresh(ctx, b.Cluster)
		before, _ = b.host.take()
	}
	var ns string
	var after *hostcpu.Snapshot
	rows, err := b.run(ctx, t, func(name string) { ns = name }, func() {
		if before != nil {
			after, _ = b.host.take()
		}
	})
	res := runner.Result{Rows: rows}
	if before != nil && after != nil {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		res.Info = b.trialInfo(cctx, before, after, ns)
		cancel()
		flags := strings.Join(res.Info.Flags, ";")
		for i := range res.Rows {
			res.Rows[i].Flags = flags
		}
		u := res.Info.Host
		b.logf("host over the trial: %.2f cores busy (cluster %.2f, harness %.2f, outside %.2f), load %.2f -> %.2f %v",
			u.Host, u.Cluster, u.Self, u.Outside, u.LoadBefore[0], u.LoadAfter[0], res.Info.Flags)
	}
	return res, err
}

// run runs a trial; named learns its namespace, and measured is called
// when the trial's measurement ends, before the namespace is cleaned up.
func (b *Backend) run(ctx context.Context, t spec.Trial, named func(string), measured func()) ([]results.Row, error) {
	sc := t.Scenario
	if sc.Job == nil {
		return nil, fmt.Errorf("trial %s has no workload", t)
	}
	ctx, cancel := context.WithTimeout(ctx, sc.Timeout)
	defer cancel()
	ns := fmt.Sprintf("kx-%s-%d-%s", strings.ToLower(t.Experiment), t.Index, rand.String(4))
	named(ns)
	if err := b.Cluster.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		return nil, fmt.Errorf("creating namespace: %w", err)
	}
	stopped := map[string]bool{}
	defer b.cleanup(ns, stopped)
	cordoned, err := b.fitShape(ctx, sc.Cluster, sc.Job)
	if err != nil {
		return nil, err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if err := b.uncordon(cctx, cordoned); err != nil {
			b.logf("cleanup: %v", err)
		}
	}()
	if b.NodeDelay > 0 {
		if err := b.addNodeDelay(ctx, b.NodeDelay); err != nil {
			return nil, err
		}
		defer func() {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			defer cancel()
			if err := b.clearNodeDelay(cctx); err != nil {
				b.logf("cleanup: %v", err)
			}
		}()
	}
	// Deferred last, so run first: before the cleanups above.
	defer measured()
	b.logf("trial %s in namespace %s", t, ns)
	if b.Mode == Baseline {
		return b.runBaseline(ctx, t, ns, stopped)
	}
	return b.runPlatform(ctx, t, ns, stopped)
}

func (b *Backend) runPlatform(ctx context.Context, t spec.Trial, ns string, stopped map[string]bool) ([]results.Row, error) {
	sc := t.Scenario
	job := sc.Job.DeepCopy()
	job.Namespace = ns
	job.ResourceVersion = ""
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	rec, err := startRecorder(wctx, b.wc, b.clk, ns, job.Name)
	if err != nil {
		return nil, err
	}
	smp := newSampler(b, ns, sinkOperators(job), regionSources(job))
	go smp.run(wctx, rec)
	if err := b.prepareStore(ctx, job); err != nil {
		return nil, err
	}
	if err := b.Cluster.Client.Create(ctx, job); err != nil {
		return nil, fmt.Errorf("creating Job: %w", err)
	}
	// Wait for Submitted (or failure, or the trial's timeout).
	needAnchor := len(sc.Faults) > 0 || sc.Observe == 0
	relaunchCompleted := job.Spec.PE.EffectiveRestartPolicy().RestartCompleted
	for {
		sub, failed := rec.state()
		if !sub.IsZero() || failed {
			break
		}
		if p := completedPod(rec.livePods(), job.Name); p != nil && needAnchor && !relaunchCompleted {
			// Give up at once rather than at the timeout: a completed PE
			// is not relaunched under this policy, so the Job cannot
			// become Submitted.
			return nil, fmt.Errorf("pod %s ended Succeeded before the Job was Submitted and restartCompleted=false: "+
				"the Job cannot become Submitted (%s)", p.Name, lastTermination(p))
		}
		select {
		case <-rec.changed:
		case <-ctx.Done():
			if len(sc.Faults) > 0 {
				return nil, fmt.Errorf("Job not Submitted within %s: no anchor for the fault schedule", sc.Timeout)
			}
		}
		if ctx.Err() != nil {
			break
		}
	}
	anchor, _ := rec.state()
	if anchor.IsZero() && len(sc.Faults) > 0 {
		return nil, fmt.Errorf("Job %s failed before Submitted: no anchor for the fault schedule", job.Name)
	}
	b.logf("Job %s submitted=%v", job.Name, !anchor.IsZero())
	actions := []metrics.Action{{Time: b.clk.Now(), Kind: metrics.ActionObserve, PE: -1}}
	last := time.Duration(0)
	deletes := false
	for _, f := range sc.Faults {
		last = max(last, f.At)
		deletes = deletes || f.Action == spec.DeleteJob
	}
	faults := slices.Clone(sc.Faults)
	slices.SortStableFunc(faults, func(a, c spec.ResolvedFault) int { return int(a.At - c.At) })
	for _, f := range faults {
		if err := sleepUntil(ctx, b.clk, anchor.Add(f.At)); err != nil {
			return nil, fmt.Errorf("waiting for fault %s at +%s: %w", f.Action, f.At, err)
		}
		if f.PE >= 0 {
			rec.faultOn(app.PEName(job.Name, int32(f.PE)))
		}
		at, err := b.inject(ctx, rec, job, f, stopped)
		if err != nil {
			return nil, fmt.Errorf("fault %s at +%s: %w", f.Action, f.At, err)
		}
		b.logf("fault %s pe=%d node=%s", f.Action, f.PE, f.Node)
		actions = append(actions, metrics.Action{Time: at, Kind: metrics.ActionKind(f.Action), PE: f.PE, Node: f.Node})
	}
	end := anchor.Add(last + sc.Observe)
	early := len(faults) > 0 && !deletes && !needsWindow(sc.Metrics)
	// Trials measuring no window end once every faulted PE is connected
	// again and a sink counted a tuple after that.
	for b.clk.Now().Before(end) && ctx.Err() == nil {
		if early {
			if rc, ok := rec.reconnectedAll(); ok && smp.grewAfter(rc) {
				break
			}
		}
		select {
		case <-ctx.Done():
		case <-b.clk.After(250 * time.Millisecond):
		}
	}
	if deletes {
		for !rec.allGone() && ctx.Err() == nil {
			select {
			case <-ctx.Done():
			case <-rec.changed:
			case <-b.clk.After(250 * time.Millisecond):
			}
		}
	}
	stopWatch()
	tr := &metrics.Trace{Namespace: ns, Job: job.Name, Events: rec.snapshot(), Actions: actions,
		Samples: smp.samples(), End: b.clk.Now()}
	return tr.Compute(sc.Metrics)
}

// completedPod is a pod of the Job that ended with success, or nil.
func completedPod(pods []*corev1.Pod, job string) *corev1.Pod {
	for _, p := range pods {
		if p.Labels[v1alpha1.LabelJob] == job && p.Status.Phase == corev1.PodSucceeded {
			return p
		}
	}
	return nil
}

// lastTermination describes how a pod's container ended.
func lastTermination(p *corev1.Pod) string {
	for _, c := range p.Status.ContainerStatuses {
		if t := c.State.Terminated; t != nil {
			return fmt.Sprintf("container %s exit %d %s at %s", c.Name, t.ExitCode, t.Reason, t.FinishedAt.UTC().Format(time.TimeOnly))
		}
	}
	return "no termination recorded"
}

func needsWindow(names []string) bool {
	for _, n := range names {
		switch n {
		case metrics.Throughput, metrics.TupleLatencyP50, metrics.TupleLatencyP99:
			return true
		}
	}
	return false
}

func sleepUntil(ctx context.Context, clk clock.Clock, t time.Time) error {
	d := t.Sub(clk.Now())
	if d <= 0 {
		return ctx.Err()
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-clk.After(d):
		return nil
	}
}

// cleanup starts the nodes the trial stopped, deletes the namespace and
// waits for it to be gone, so that trials do not overlap.
func (b *Backend) cleanup(ns string, stopped map[string]bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for node := range stopped {
		if out, err := exec.CommandContext(ctx, "docker", "start", node).CombinedOutput(); err != nil {
			b.logf("cleanup: docker start %s: %v: %s", node, err, out)
		}
	}
	if len(stopped) > 0 {
		if err := b.Cluster.WaitNodesReady(ctx, 3*time.Minute); err != nil {
			b.logf("cleanup: %v", err)
		}
	}
	err := b.Cluster.Client.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	if err != nil && !apierrors.IsNotFound(err) {
		b.logf("cleanup: deleting namespace %s: %v", ns, err)
		return
	}
	_ = wait.PollUntilContextCancel(ctx, time.Second, true, func(ctx context.Context) (bool, error) {
		err := b.Cluster.Client.Get(ctx, client.ObjectKey{Name: ns}, &corev1.Namespace{})
		return apierrors.IsNotFound(err), nil
	})
	if b.Mode == Platform {
		b.cleanupStore(ctx, ns)
	}
}

// sinkOperators are the sink operators of a Job by PE name.
func sinkOperators(job *v1alpha1.Job) map[string][]string {
	plan, errs := app.Build(job.Namespace, job.Name, &job.Spec)
	if len(errs) > 0 {
		return nil
	}
	kinds := map[string]v1alpha1.OperatorKind{}
	for _, op := range job.Spec.Application.Operators {
		kinds[op.Name] = op.Kind
	}
	out := map[string][]string{}
	for _, pe := range plan.PEs {
		for _, op := range pe.Operators {
			if kinds[op] == v1alpha1.KindSink {
				out[pe.Name] = append(out[pe.Name], op)
			}
		}
	}
	return out
}

// regionSources are the source operators in consistent regions of a Job
// by PE name.
func regionSources(job *v1alpha1.Job) map[string][]string {
	plan, errs := app.Build(job.Namespace, job.Name, &job.Spec)
	if len(errs) > 0 {
		return nil
	}
	inRegion := map[string]bool{}
	for _, r := range job.Spec.Application.ConsistentRegions {
		for _, op := range r.Operators {
			inRegion[op] = true
		}
	}
	kinds := map[string]v1alpha1.OperatorKind{}
	for _, op := range job.Spec.Application.Operators {
		kinds[op.Name] = op.Kind
	}
	out := map[string][]string{}
	for _, pe := range plan.PEs {
		for _, op := range pe.Operators {
			if kinds[op] == v1alpha1.KindSource && inRegion[op] {
				out[pe.Name] = append(out[pe.Name], op)
			}
		}
	}
	return out
}

// sharedScript returns the path of an offline kind script, or "".
func (b *Backend) sharedScript(name string) string {
	if b.SharedKind == "" {
		return ""
	}
	p := b.SharedKind + "/" + name
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}
