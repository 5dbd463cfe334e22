package local

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"time"

	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/app"
	"sluice.dev/sluice/platform/region"
	"sluice.dev/sluice/platform/runtime/regionctl"
)

// Defaults of the supervisor's loop.
const (
	DefaultSupervisePoll = 25 * time.Millisecond
	DefaultRestartDelay  = 100 * time.Millisecond
)

// supervisor plays, for a local run, what Kubernetes and the operator do
// in a cluster: it replaces PE processes that die, and runs each
// consistent region's state machine over the PEs' progress files and
// readiness, publishing the region's status in its region file.
type supervisor struct {
	c      *Cluster
	log    io.Writer
	start  time.Time
	http   *http.Client
	cancel context.CancelFunc
	done   chan struct{}

	mu       sync.Mutex
	regions  []*regionRun
	deadAt   map[string]time.Time
	restarts map[string]int
	// backoff is the restart delay of a PE in a crash loop.
	backoff map[string]time.Duration
}

// regionRun is one region's status and history in the supervisor.
type regionRun struct {
	plan   app.RegionPlan
	name   string
	path   string
	status v1alpha1.ConsistentRegionStatus
	// resets are the durations of completed resets, in order; the first
	// is the initial alignment of every PE on epoch 1.
	resets []time.Duration
	drains []time.Duration
}

func newSupervisor(c *Cluster, log io.Writer) *supervisor {
	if log == nil {
		log = io.Discard
	}
	s := &supervisor{c: c, log: log, start: time.Now(), http: &http.Client{Timeout: 250 * time.Millisecond},
		done: make(chan struct{}), deadAt: map[string]time.Time{}, restarts: map[string]int{}, backoff: map[string]time.Duration{}}
	for _, rp := range c.Regions {
		s.regions = append(s.regions, &regionRun{plan: rp, name: rp.Spec.Region, path: regionctl.RegionFile(c.cfg.Dir, rp.Spec.Region)})
	}
	return s
}

func (s *supervisor) logf(format string, args ...any) {
	fmt.Fprintf(s.log, "[%6.2fs] "+format+"\n", append([]any{time.Since(s.start).Seconds()}, args...)...)
}

func (s *supervisor) run(ctx context.Context) {
	defer close(s.done)
	for {
		wait := s.c.cfg.SupervisePoll
		s.restartDead(time.Now())
		for _, r := range s.regions {
			if d := s.step(r, time.Now()); d > 0 && d < wait {
				wait = d
			}
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// restartDead replaces a PE process that has been dead for the restart
// delay, as a ReplicaSet-like owner would replace its pod. A process that
// keeps failing on its own right after it starts is restarted with a
// doubling delay (up to 5s), like a crash loop. The new process starts
// without the old one's progress file, so that the region never takes the
// old process's epoch for the new one's.
func (s *supervisor) restartDead(now time.Time) {
	for _, p := range s.c.PEs {
		if s.c.stopping.Load() {
			return
		}
		if p.Pid() != 0 {
			s.mu.Lock()
			delete(s.deadAt, p.Name)
			s.mu.Unlock()
			continue
		}
		s.mu.Lock()
		at, seen := s.deadAt[p.Name]
		if !seen {
			s.deadAt[p.Name] = now
			if p.crashedEarly() {
				s.backoff[p.Name] = min(max(2*s.backoff[p.Name], s.c.cfg.RestartDelay), 5*time.Second)
			} else {
				delete(s.backoff, p.Name)
			}
			s.mu.Unlock()
			continue
		}
		delay := max(s.backoff[p.Name], s.c.cfg.RestartDelay)
		s.mu.Unlock()
		if now.Sub(at) < delay {
			continue
		}
		if p.Region != "" {
			os.Remove(regionctl.ProgressFile(s.c.cfg.Dir, p.Name))
		}
		if err := s.c.StartPE(p.Name); err != nil {
			s.logf("restarting PE %s: %v", p.Name, err)
			continue
		}
		s.mu.Lock()
		delete(s.deadAt, p.Name)
		s.restarts[p.Name]++
		n := s.restarts[p.Name]
		s.mu.Unlock()
		s.logf("PE %s restarted (restart %d)", p.Name, n)
	}
}

func (s *supervisor) ready(p *PE) bool {
	if p.Pid() == 0 {
		return false
	}
	resp, err := s.http.Get("http://" + p.Endpoint.Health + "/readyz")
	if err != nil {
		return false
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// step runs the region's state machine once and returns its requeue.
func (s *supervisor) step(r *regionRun, now time.Time) time.Duration {
	obs := region.Observation{Spec: r.plan.Spec, Now: now}
	s.mu.Lock()
	obs.Status = r.status
	s.mu.Unlock()
	for _, name := range r.plan.Spec.PEs {
		p := s.c.byName[name]
		pe := region.PE{Name: name, Connected: s.ready(p)}
		if prog, err := regionctl.ReadProgressFile(regionctl.ProgressFile(s.c.cfg.Dir, name)); err == nil {
			pe.Progress = prog
		}
		obs.PEs = append(obs.PEs, pe)
	}
	d := region.Next(obs)
	if !d.Changed {
		return d.RequeueAfter
	}
	if err := regionctl.WriteJSONAtomic(r.path, d.Status); err != nil {
		s.logf("region %s: writing %s: %v", r.name, r.path, err)
		return s.c.cfg.SupervisePoll
	}
	old, st := obs.Status, d.Status
	s.mu.Lock()
	r.status = st
	if old.State == v1alpha1.RegionResetting && st.State == v1alpha1.RegionHealthy && st.LastResetDuration != nil {
		r.resets = append(r.resets, st.LastResetDuration.Duration)
	}
	if old.State == v1alpha1.RegionDraining && st.State == v1alpha1.RegionHealthy && st.LastDrainDuration != nil {
		r.drains = append(r.drains, st.LastDrainDuration.Duration)
	}
	s.mu.Unlock()
	if d.Event != nil {
		s.logf("region %s: %s: %s", r.name, d.Event.Reason, d.Event.Message)
	}
	if orInit(old.State) != st.State {
		s.logf("region %s: %s -> %s (epoch %d, checkpoint %d%s)", r.name, orInit(old.State), st.State,
			st.Epoch, st.LastCompletedSeq, transitionDetail(old, st))
	}
	return d.RequeueAfter
}

func orInit(s v1alpha1.RegionState) v1alpha1.RegionState {
	if s == "" {
		return v1alpha1.RegionInitializing
	}
	return s
}

func transitionDetail(old, st v1alpha1.ConsistentRegionStatus) string {
	switch {
	case st.State == v1alpha1.RegionDraining:
		return fmt.Sprintf(", taking %d", st.CurrentSeq)
	case st.State == v1alpha1.RegionResetting:
		return fmt.Sprintf(", restoring %d", st.RestoreSeq)
	case old.State == v1alpha1.RegionDraining && st.LastDrainDuration != nil:
		return fmt.Sprintf(", drain took %s", st.LastDrainDuration.Duration.Round(time.Millisecond))
	case old.State == v1alpha1.RegionResetting && st.LastResetDuration != nil:
		return fmt.Sprintf(", reset took %s", st.LastResetDuration.Duration.Round(time.Millisecond))
	}
	return ""
}

func (s *supervisor) region(name string) *regionRun {
	for _, r := range s.regions {
		if r.name == name {
			return r
		}
	}
	return nil
}

// RegionStatus is the current status of a consistent region of the run.
func (c *Cluster) RegionStatus(name string) (v1alpha1.ConsistentRegionStatus, bool) {
	s := c.sup
	if s == nil {
		return v1alpha1.ConsistentRegionStatus{}, false
	}
	r := s.region(name)
	if r == nil {
		return v1alpha1.ConsistentRegionStatus{}, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return *r.status.DeepCopy(), true
}

// RegionHistory gives the durations of a region's completed resets (the
// first is the initial alignment on epoch 1) and checkpoints so far.
func (c *Cluster) RegionHistory(name string) (resets, drains []time.Duration) {
	s := c.sup
	if s == nil {
		return nil, nil
	}
	r := s.region(name)
	if r == nil {
		return nil, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), r.resets...), append([]time.Duration(nil), r.drains...)
}

// Restarts is how many times the supervisor restarted a PE.
func (c *Cluster) Restarts(pe string) int {
	if c.sup == nil {
		return 0
	}
	c.sup.mu.Lock()
	defer c.sup.mu.Unlock()
	return c.sup.restarts[pe]
}
