package checkpointing

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/peconfig"
	"sluice.dev/sluice/sim/engine"
)

// Replay is the kind of record of a source's catch-up after a reset: it
// has emitted again every tuple it had emitted before the reset.
const Replay Kind = "replay"

// emission follows one source operator of a region (docs/consistent-
// regions.md, operators.Source): it emits while its region is Healthy and
// its PE has applied the region's epoch, and is paused by drains and
// resets; a drain records its position (the checkpoint's), a reset moves
// it back to the restored checkpoint's. After a pause the runtime paces
// from the moment it resumes (no burst), so replaying what followed the
// checkpoint takes as long as emitting it did: its rate, or less if the
// region's PEs cannot keep up (the slowest one's CPU over regionTupleCost).
type emission struct {
	ns, pe, op string
	// rate is the source's params.rate (0: unpaced); limit its params.count.
	rate, limit float64
	// pod is the process the counter belongs to: a new process counts from 0.
	pod types.NamespacedName
	// Position (next sequence number) and tuples emitted by the process
	// (a monotonic counter, replays included) at since.
	pos, count float64
	since      time.Duration
	// speed is the current emission rate (0: paused).
	speed float64
	// hw is the furthest position reached; positions by checkpoint seq.
	hw   float64
	ckpt map[int64]float64
	// A catch-up runs from resumed (at resumedAt) until pos reaches hw.
	catching  bool
	resumedAt time.Duration
	timer     *engine.Timer
	samples   []Sample
}

// Sample is a source operator's emitted-tuple counter at a moment, as a
// scrape of the PE's sluice_pe_operator_tuples_out_total would read it.
// The model records one at every change of speed, so that the counter is
// exact between samples by linear interpolation.
type Sample struct {
	At       time.Duration
	Pod      types.NamespacedName
	PE       string
	Operator string
	Emitted  float64
}

// advance moves position and counter to now at the current speed.
func (s *emission) advance(now time.Duration) {
	if s.speed > 0 && now > s.since {
		n := s.speed * (now - s.since).Seconds()
		if s.limit > 0 {
			n = min(n, max(s.limit-s.pos, 0))
		}
		s.pos += n
		s.count += n
	}
	s.since = now
	s.hw = max(s.hw, s.pos)
}

// sources are the emissions of a PE's source operators, created on first use.
func (m *Model) sources(cfg *peconfig.PE) []*emission {
	var out []*emission
	for _, op := range cfg.Operators {
		if op.Kind != v1alpha1.KindSource {
			continue
		}
		k := cfg.Namespace + "/" + cfg.Name + "/" + op.Name
		s := m.emissions[k]
		if s == nil {
			s = &emission{ns: cfg.Namespace, pe: cfg.Name, op: op.Name, ckpt: map[int64]float64{}}
			if op.Params != nil && op.Params.Rate != nil {
				s.rate = float64(*op.Params.Rate)
			}
			if op.Params != nil && op.Params.Count != nil {
				s.limit = float64(*op.Params.Count)
			}
			m.emissions[k] = s
			m.emissionKeys = append(m.emissionKeys, k)
		}
		out = append(out, s)
	}
	return out
}

// throughput is the tuples per second the region's slowest running PE can
// take: its CPU (limit, else request, at most the one core the engine's
// lock allows) over regionTupleCost. +Inf when unknown.
func (m *Model) throughput(region string, ns string) float64 {
	tp := -1.0
	cost := m.p.RegionTupleCost.D().Seconds()
	if cost <= 0 {
		return -1
	}
	for _, pk := range m.sortedPods() {
		x := m.procs[pk]
		cfg := m.configs[types.NamespacedName{Namespace: pk.Namespace, Name: x.pe}]
		if pk.Namespace != ns || cfg == nil || cfg.Region.Resource != region {
			continue
		}
		if t := x.cores / cost; tp < 0 || t < tp {
			tp = t
		}
	}
	return tp
}

// coresOf is a PE container's CPU as the engine can use it.
func coresOf(pod *corev1.Pod) float64 {
	for _, c := range pod.Spec.Containers {
		q, ok := c.Resources.Limits[corev1.ResourceCPU]
		if !ok {
			q, ok = c.Resources.Requests[corev1.ResourceCPU]
		}
		if ok && !q.IsZero() {
			return min(float64(q.MilliValue())/1000, 1)
		}
	}
	return 1
}

// flow updates the sources of a process for its region's status: running
// while Healthy at the process's epoch, paused otherwise; the position of
// a drain's checkpoint is where the sources stopped for it.
func (m *Model) flow(x *proc, cfg *peconfig.PE, st v1alpha1.ConsistentRegionStatus) {
	running := !m.stalled[types.NamespacedName{Namespace: x.pod.Namespace, Name: x.pe}] &&
		st.State == v1alpha1.RegionHealthy && st.Epoch > 0 && x.progress.Epoch == st.Epoch
	for _, s := range m.sources(cfg) {
		m.setSpeed(s, x, running, cfg)
		if st.State == v1alpha1.RegionDraining && st.Epoch == x.progress.Epoch {
			if _, ok := s.ckpt[st.CurrentSeq]; !ok {
				s.ckpt[st.CurrentSeq] = s.pos
			}
		}
	}
}

// setSpeed starts or pauses a source of process x.
func (m *Model) setSpeed(s *emission, x *proc, running bool, cfg *peconfig.PE) {
	now := m.e.Now()
	if s.pod != x.pod {
		// Another process: its counter starts at 0.
		s.advance(now)
		s.pod, s.count, s.speed = x.pod, 0, 0
		s.sample(now)
	}
	s.advance(now)
	speed := 0.0
	if running && s.speed > 0 {
		return // running on: the region's PEs are the same
	}
	if running {
		speed = s.rate
		if tp := m.throughput(cfg.Region.Resource, cfg.Namespace); tp >= 0 && (speed <= 0 || tp < speed) {
			speed = tp
		}
	}
	if speed == s.speed {
		return
	}
	s.speed = speed
	s.sample(now)
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
	if s.catching && speed > 0 {
		if s.resumedAt < 0 {
			s.resumedAt = now
		}
		m.armCatchUp(s)
	}
}

// armCatchUp schedules the end of a catch-up at the current speed.
func (m *Model) armCatchUp(s *emission) {
	d := time.Duration((s.hw - s.pos) / s.speed * float64(time.Second))
	s.timer = m.e.After(d, func() {
		s.timer = nil
		s.advance(m.e.Now())
		s.catching = false
		m.records = append(m.records, Record{At: m.e.Now(), Kind: Replay, Pod: s.pod, PE: s.pe,
			Delay: m.e.Now() - s.resumedAt})
	})
}

// restore moves the sources of a PE whose process applied a reset back to the
// restored checkpoint's position (0: the start); what they had emitted
// beyond it must be emitted again.
func (m *Model) restore(cfg *peconfig.PE, restore int64) {
	for _, s := range m.sources(cfg) {
		s.advance(m.e.Now())
		p := s.ckpt[restore] // 0 for restore point 0
		if p < s.hw {
			if !s.catching {
				s.resumedAt = -1
			}
			s.catching = true
		}
		s.pos = p
		if s.timer != nil {
			s.timer.Stop()
			s.timer = nil
		}
	}
}

func (s *emission) sample(now time.Duration) {
	if s.pod.Name == "" {
		return
	}
	s.samples = append(s.samples, Sample{At: now, Pod: s.pod, PE: s.pe, Operator: s.op, Emitted: s.count})
}

// SourceSamples lists every region source's emitted-tuple counter at each
// change of speed, and now, in time order per source.
func (m *Model) SourceSamples() []Sample {
	var out []Sample
	now := m.e.Now()
	for _, k := range m.emissionKeys {
		s := m.emissions[k]
		out = append(out, s.samples...)
		if s.pod.Name != "" && s.since <= now {
			c := *s
			c.advance(now)
			out = append(out, Sample{At: now, Pod: s.pod, PE: s.pe, Operator: s.op, Emitted: c.count})
		}
	}
	return out
}
