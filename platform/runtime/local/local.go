// Package local runs a whole application as one `pe run` process per PE on
// loopback, from the same configuration files the platform mounts into PE
// pods. PE names resolve to 127.0.0.1 ports through a resolve file.
package local

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"sigs.k8s.io/yaml"

	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/app"
	"sluice.dev/sluice/platform/peconfig"
	"sluice.dev/sluice/platform/runtime/operators"
	"sluice.dev/sluice/platform/runtime/regionctl"
)

// ResolveFile maps PE names to loopback ports; `pe run --resolve
// local:<file>` reads it.
type ResolveFile struct {
	PEs map[string]Endpoint `json:"pes"`
}

// Endpoint is where a local PE listens: input port i on 127.0.0.1:Base+i,
// HTTP on Health.
type Endpoint struct {
	Base   int    `json:"base"`
	Health string `json:"health"`
}

// LoadResolveFile reads a resolve file.
func LoadResolveFile(path string) (*ResolveFile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r ResolveFile
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &r, nil
}

// Resolve gives the address of a PE's input port.
func (r *ResolveFile) Resolve(pe string, port int32) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(r.PEs[pe].Base+int(port)))
}

// LoadJob reads a Job from YAML.
func LoadJob(path string) (*v1alpha1.Job, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var job v1alpha1.Job
	if err := yaml.UnmarshalStrict(b, &job); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if job.Name == "" {
		return nil, fmt.Errorf("%s: metadata.name is required", path)
	}
	return &job, nil
}

// Config of a local run.
type Config struct {
	// Binary is the pe executable.
	Binary string
	// Dir receives ports.json, resolve.json and one folder per PE (pe.json,
	// pe.log, summary.json).
	Dir string
	// BasePort is the first loopback port used (default 20000).
	BasePort int
	Job      *v1alpha1.Job
	// Args are extra flags for every `pe run`.
	Args []string

	// Supervise restarts PE processes that die, as Kubernetes replaces a
	// PE's pod. A Job with consistent regions is always supervised, and the
	// supervisor also runs the regions' state machines.
	Supervise bool
	// Log receives the supervisor's lines (restarts, region transitions).
	Log io.Writer
	// JobStore keeps the Job's own checkpoint store; by default the PEs of
	// consistent regions use a filesystem store in StorePath.
	JobStore bool
	// StorePath of the default store (default Dir/checkpoints).
	StorePath string
	// SupervisePoll is the supervisor's loop period (default 25ms).
	SupervisePoll time.Duration
	// RestartDelay is how long a dead PE stays dead (default 100ms).
	RestartDelay time.Duration
	// ExchangeDir is where local runs of Jobs with Exports and Imports
	// meet (exchange.go); required when the Job has imports.
	ExchangeDir string
	// ExchangePoll is how often Imports are matched (default 200ms).
	ExchangePoll time.Duration
}

// PE is one local PE process.
type PE struct {
	Name     string
	Endpoint Endpoint
	Dir      string
	Sink     bool
	// Region is the consistent region of the PE's operators ("" for none).
	Region string
	// imports: the PE has import operators.
	imports bool

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{}
	started time.Time
	exited  time.Time
}

// Cluster is a running local application.
type Cluster struct {
	cfg  Config
	Plan *app.Plan
	PEs  []*PE
	// Regions are the Job's consistent regions, as app.Build derives them
	// for the operator.
	Regions []app.RegionPlan
	byName  map[string]*PE
	http    *http.Client

	sup      *supervisor
	stopCtx  context.CancelFunc
	stopping atomic.Bool
	// The local broker (exchange.go), when the Job has imports.
	stopBroker context.CancelFunc
	brokerDone chan struct{}
}

// New builds the plan and writes every configuration file.
func New(cfg Config) (*Cluster, error) {
	if cfg.BasePort == 0 {
		cfg.BasePort = 20000
	}
	if cfg.StorePath == "" {
		cfg.StorePath = filepath.Join(cfg.Dir, "checkpoints")
	}
	if cfg.SupervisePoll <= 0 {
		cfg.SupervisePoll = DefaultSupervisePoll
	}
	if cfg.RestartDelay <= 0 {
		cfg.RestartDelay = DefaultRestartDelay
	}
	if cfg.ExchangePoll <= 0 {
		cfg.ExchangePoll = DefaultExchangePoll
	}
	ns := cfg.Job.Namespace
	if ns == "" {
		ns = "default"
	}
	plan, errs := app.Build(ns, cfg.Job.Name, &cfg.Job.Spec)
	if len(errs) > 0 {
		return nil, fmt.Errorf("job %s: %v", cfg.Job.Name, errs.ToAggregate())
	}
	if len(plan.Imports) > 0 && cfg.ExchangeDir == "" {
		return nil, fmt.Errorf("job %s has imports: local mode needs an exchange directory to match them with exports", cfg.Job.Name)
	}
	if err := os.MkdirAll(filepath.Join(cfg.Dir, "imports"), 0o755); err != nil {
		return nil, err
	}
	// A PE's ports are its inputs, then its exports.
	stride := 1
	for _, pe := range plan.PEs {
		stride = max(stride, len(pe.Config.Inputs))
	}
	for _, ex := range plan.Exports {
		stride = max(stride, int(ex.Spec.Port)+1)
	}
	c := &Cluster{cfg: cfg, Plan: plan, byName: map[string]*PE{}, http: &http.Client{Timeout: 2 * time.Second}}
	c.Regions = plan.Regions
	for _, r := range c.Regions {
		// A region file of an earlier run in the same directory would
		// command the new PEs before the supervisor's first write.
		os.Remove(regionctl.RegionFile(cfg.Dir, r.Spec.Region))
	}
	rf := ResolveFile{PEs: map[string]Endpoint{}}
	n := len(plan.PEs)
	for i := range plan.PEs {
		pe := &plan.PEs[i]
		if pe.Config.Region != nil {
			if !cfg.JobStore {
				pe.Config.Store = &peconfig.Store{Type: string(v1alpha1.StoreFilesystem), Path: cfg.StorePath}
			}
			os.Remove(regionctl.ProgressFile(cfg.Dir, pe.Name))
		}
		p := &PE{Name: pe.Name, Dir: filepath.Join(cfg.Dir, pe.Name), Endpoint: Endpoint{
			Base:   cfg.BasePort + i*stride,
			Health: net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.BasePort+n*stride+i)),
		}}
		for _, op := range pe.Config.Operators {
			if op.Kind == v1alpha1.KindSink {
				p.Sink = true
			}
		}
		if pe.Config.Region != nil {
			p.Region = pe.Config.Region.Name
		}
		p.imports = len(pe.Config.Imports) > 0
		if err := os.MkdirAll(p.Dir, 0o755); err != nil {
			return nil, err
		}
		if err := writeJSON(filepath.Join(p.Dir, v1alpha1.PEConfigKey), pe.Config); err != nil {
			return nil, err
		}
		rf.PEs[pe.Name] = p.Endpoint
		c.PEs = append(c.PEs, p)
		c.byName[p.Name] = p
	}
	if err := writeJSON(filepath.Join(cfg.Dir, v1alpha1.PortTableKey), plan.PortTable); err != nil {
		return nil, err
	}
	if err := writeJSON(filepath.Join(cfg.Dir, "resolve.json"), rf); err != nil {
		return nil, err
	}
	return c, nil
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// PE returns the named PE.
func (c *Cluster) PE(name string) *PE { return c.byName[name] }

// Start starts every PE, sinks first so that upstreams find them.
func (c *Cluster) Start() error {
	order := append([]*PE(nil), c.PEs...)
	sort.SliceStable(order, func(i, j int) bool { return order[i].Sink && !order[j].Sink })
	for _, p := range order {
		if err := c.StartPE(p.Name); err != nil {
			c.Stop(time.Second)
			return err
		}
	}
	if err := c.publishExports(); err != nil {
		c.Stop(time.Second)
		return err
	}
	if len(c.Plan.Imports) > 0 {
		ctx, cancel := context.WithCancel(context.Background())
		c.brokerDone, c.stopBroker = make(chan struct{}), cancel
		go c.runBroker(ctx, c.brokerDone)
	}
	if c.cfg.Supervise || len(c.Regions) > 0 {
		ctx, cancel := context.WithCancel(context.Background())
		c.sup, c.stopCtx = newSupervisor(c, c.cfg.Log), cancel
		go c.sup.run(ctx)
	}
	return nil
}

// Args are the `pe run` arguments of a PE.
func (c *Cluster) Args(name string) []string {
	p := c.byName[name]
	args := []string{"run",
		"--config", filepath.Join(p.Dir, v1alpha1.PEConfigKey),
		"--ports", filepath.Join(c.cfg.Dir, v1alpha1.PortTableKey),
		"--listen-host", "127.0.0.1",
		"--listen-base", strconv.Itoa(p.Endpoint.Base),
		"--health-addr", p.Endpoint.Health,
		"--resolve", "local:" + filepath.Join(c.cfg.Dir, "resolve.json"),
		"--summary", filepath.Join(p.Dir, "summary.json"),
	}
	if p.Region != "" {
		args = append(args, "--region-dir", c.cfg.Dir)
	}
	if p.imports {
		args = append(args, "--import-dir", c.importDir())
	}
	return append(args, c.cfg.Args...)
}

// StartPE starts (or restarts) one PE process; its log is appended to
// <dir>/<pe>/pe.log.
func (c *Cluster) StartPE(name string) error {
	p := c.byName[name]
	if p == nil {
		return fmt.Errorf("no PE %q", name)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		select {
		case <-p.done:
		default:
			return fmt.Errorf("PE %s is running", name)
		}
	}
	log, err := os.OpenFile(filepath.Join(p.Dir, "pe.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(c.cfg.Binary, c.Args(name)...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Env = append(os.Environ(), "POD_NAME="+name)
	if err := cmd.Start(); err != nil {
		log.Close()
		return fmt.Errorf("start %s: %w", name, err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		log.Close()
		p.mu.Lock()
		p.exited = time.Now()
		p.mu.Unlock()
		close(done)
	}()
	p.cmd, p.done, p.started = cmd, done, time.Now()
	return nil
}

// Pid is the PE's process ID, or 0 when it is not running.
func (p *PE) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	select {
	case <-p.done:
		return 0
	default:
	}
	return p.cmd.Process.Pid
}

// crashedEarly reports whether the PE's last process exited by itself (not
// by a signal) within a second of its start: a crash loop to back off from.
func (p *PE) crashedEarly() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.ProcessState == nil {
		return false
	}
	select {
	case <-p.done:
	default:
		return false
	}
	ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus)
	return ok && !ws.Signaled() && p.exited.Sub(p.started) < time.Second
}

func (p *PE) signal(sig syscall.Signal) chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return nil
	}
	select {
	case <-p.done:
		return nil
	default:
	}
	p.cmd.Process.Signal(sig)
	return p.done
}

// Kill SIGKILLs a PE and waits for it to be gone.
func (c *Cluster) Kill(name string) error {
	p := c.byName[name]
	if p == nil {
		return fmt.Errorf("no PE %q", name)
	}
	if done := p.signal(syscall.SIGKILL); done != nil {
		<-done
	}
	return nil
}

// Signal sends sig to a running PE.
func (c *Cluster) Signal(name string, sig syscall.Signal) { c.byName[name].signal(sig) }

// Stop SIGTERMs the PEs one by one in plan order (upstream first, so that
// each can drain into a downstream that is still there), waits for each
// within what is left of grace, then SIGKILLs what is left.
func (c *Cluster) Stop(grace time.Duration) error {
	deadline := time.Now().Add(grace)
	c.stopping.Store(true)
	if c.sup != nil {
		c.stopCtx()
		<-c.sup.done
	}
	if c.stopBroker != nil {
		c.stopBroker()
		<-c.brokerDone
	}
	// Importers of other runs see the exports go before the PEs stop.
	c.withdrawExports()
	var stuck []string
	for _, p := range c.PEs {
		d := p.signal(syscall.SIGTERM)
		if d == nil {
			continue
		}
		t := time.NewTimer(time.Until(deadline))
		select {
		case <-d:
		case <-t.C:
			stuck = append(stuck, p.Name)
		}
		t.Stop()
	}
	for _, p := range c.PEs {
		if d := p.signal(syscall.SIGKILL); d != nil {
			<-d
		}
	}
	if len(stuck) > 0 {
		return fmt.Errorf("PE(s) %v did not stop within %s and were killed", stuck, grace)
	}
	return nil
}

func (c *Cluster) get(name, path string) (int, []byte, error) {
	p := c.byName[name]
	if p == nil {
		return 0, nil, fmt.Errorf("no PE %q", name)
	}
	resp, err := c.http.Get("http://" + p.Endpoint.Health + path)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// Ready asks a PE's /readyz.
func (c *Cluster) Ready(name string) (bool, string) {
	code, b, err := c.get(name, "/readyz")
	if err != nil {
		return false, err.Error()
	}
	return code == http.StatusOK, strings.TrimSpace(string(b))
}

// Summaries asks a PE's /summary.
func (c *Cluster) Summaries(name string) ([]operators.Summary, error) {
	code, b, err := c.get(name, "/summary")
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("summary: HTTP %d", code)
	}
	var s []operators.Summary
	return s, json.Unmarshal(b, &s)
}

// SummaryFile is what `pe run --summary` writes.
type SummaryFile struct {
	PE    string              `json:"pe"`
	Sinks []operators.Summary `json:"sinks"`
}

// ReadSummaryFile reads the summary a PE wrote on completion or exit.
func (c *Cluster) ReadSummaryFile(name string) (*SummaryFile, error) {
	b, err := os.ReadFile(filepath.Join(c.byName[name].Dir, "summary.json"))
	if err != nil {
		return nil, err
	}
	var s SummaryFile
	return &s, json.Unmarshal(b, &s)
}

// Metric scrapes a PE's /metrics and sums the samples of the metric name
// whose labels contain every given "key=\"value\"" fragment.
func (c *Cluster) Metric(pe, name string, labels ...string) (float64, error) {
	code, b, err := c.get(pe, "/metrics")
	if err != nil {
		return 0, err
	}
	if code != http.StatusOK {
		return 0, fmt.Errorf("metrics: HTTP %d", code)
	}
	var sum float64
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) || (len(line) > len(name) && line[len(name)] != '{' && line[len(name)] != ' ') {
			continue
		}
		ok := true
		for _, l := range labels {
			if !strings.Contains(line, l) {
				ok = false
			}
		}
		if !ok {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			sum += v
		}
	}
	return sum, nil
}

// WaitReady waits until every running PE is ready.
func (c *Cluster) WaitReady(ctx context.Context) error {
	for {
		all := true
		var why string
		for _, p := range c.PEs {
			if ok, w := c.Ready(p.Name); !ok {
				all, why = false, p.Name+": "+w
				break
			}
		}
		if all {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not ready: %s: %w", why, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Complete reports whether every sink PE has seen all its streams end.
func (c *Cluster) Complete() bool {
	sinks := 0
	for _, p := range c.PEs {
		if !p.Sink {
			continue
		}
		sinks++
		s, err := c.Summaries(p.Name)
		if err != nil || len(s) == 0 {
			return false
		}
		for _, x := range s {
			if !x.Complete {
				return false
			}
		}
	}
	// A Job without sinks (an exporter) runs until stopped.
	return sinks > 0
}

// Status is a one-line progress report.
func (c *Cluster) Status() string {
	ready, tuples, gaps, dups, late := 0, uint64(0), uint64(0), uint64(0), uint64(0)
	for _, p := range c.PEs {
		if ok, _ := c.Ready(p.Name); ok {
			ready++
		}
		if p.Sink {
			if s, err := c.Summaries(p.Name); err == nil {
				for _, x := range s {
					tuples += x.Tuples
					gaps += x.Gaps
					dups += x.Duplicates
					late += x.Reordered
				}
			}
		}
	}
	line := fmt.Sprintf("ready %d/%d PEs, sinks: %d tuples, %d gaps, %d duplicates, %d reordered", ready, len(c.PEs), tuples, gaps, dups, late)
	for _, r := range c.Regions {
		if st, ok := c.RegionStatus(r.Spec.Region); ok {
			line += fmt.Sprintf("; region %s %s epoch %d checkpoint %d resets %d", r.Spec.Region, orInit(st.State), st.Epoch, st.LastCompletedSeq, st.Resets)
		}
	}
	return line
}

// ErrStopped is returned by Run when a signal stopped the run.
var ErrStopped = errors.New("stopped")

// Run is `pe local`: start the application, print progress every second,
// and stop it when ctx ends, duration passes (0 = no limit) or every sink
// has completed; then print the sinks' summaries.
func Run(ctx context.Context, cfg Config, duration time.Duration, out io.Writer) error {
	if cfg.Log == nil {
		cfg.Log = out
	}
	c, err := New(cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "local: job %s, %d PEs, files in %s\n", cfg.Job.Name, len(c.PEs), cfg.Dir)
	for _, p := range c.PEs {
		fmt.Fprintf(out, "  %s: inputs from 127.0.0.1:%d, http %s\n", p.Name, p.Endpoint.Base, p.Endpoint.Health)
	}
	if err := c.Start(); err != nil {
		return err
	}
	start := time.Now()
	var end <-chan time.Time
	if duration > 0 {
		end = time.After(duration)
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	reason := ""
loop:
	for {
		select {
		case <-ctx.Done():
			reason = "interrupted"
			break loop
		case <-end:
			reason = "duration reached"
			break loop
		case <-tick.C:
			fmt.Fprintf(out, "[%5.1fs] %s\n", time.Since(start).Seconds(), c.Status())
			if c.Complete() {
				reason = "all sinks complete"
				break loop
			}
		}
	}
	fmt.Fprintf(out, "local: stopping (%s)\n", reason)
	stopErr := c.Stop(10 * time.Second)
	for _, p := range c.PEs {
		if !p.Sink {
			continue
		}
		s, err := c.ReadSummaryFile(p.Name)
		if err != nil {
			fmt.Fprintf(out, "  %s: no summary: %v\n", p.Name, err)
			continue
		}
		for _, x := range s.Sinks {
			fmt.Fprintf(out, "  sink %s (%s): complete=%v tuples=%d gaps=%d duplicates=%d reordered=%d valueSum=%d latency p50=%.0fus p99=%.0fus\n",
				x.Operator, p.Name, x.Complete, x.Tuples, x.Gaps, x.Duplicates, x.Reordered, x.ValueSum, x.Latency.P50, x.Latency.P99)
		}
	}
	return stopErr
}

// FreeBase finds n consecutive loopback ports that can be bound now, below
// the ephemeral range so that outgoing connections do not take them: a
// BasePort for runs that must not collide with others on the machine (as
// tests running at once do). rng picks where to look (nil: any).
func FreeBase(n int, rng *rand.Rand) (int, error) {
	pick := rand.IntN
	if rng != nil {
		pick = rng.IntN
	}
	for try := 0; try < 50; try++ {
		base := 21000 + pick(9000)
		var ls []net.Listener
		ok := true
		for i := 0; i < n; i++ {
			l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(base+i))
			if err != nil {
				ok = false
				break
			}
			ls = append(ls, l)
		}
		for _, l := range ls {
			l.Close()
		}
		if ok {
			return base, nil
		}
	}
	return 0, fmt.Errorf("no %d free loopback ports in a row", n)
}
