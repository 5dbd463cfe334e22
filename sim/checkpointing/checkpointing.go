// Package checkpointing plays the PE processes of consistent regions for
// the simulator, in virtual time: it watches ConsistentRegions and PE pods
// on the simulated API server and, for every running PE pod of a region,
// does what the PE runtime does (docs/consistent-regions.md):
//
//   - Resetting at epoch E: restore the region's restore point from the
//     checkpoint store and reopen the outputs, then report epoch E by
//     annotating the pod;
//   - Draining sequence N at the PE's epoch: wait for marker N from every
//     upstream PE, work off the tuples accepted before it, snapshot,
//     write the checkpoint, then report checkpointed N with its size.
//
// A pod's process starts with no progress, so a replaced PE is never in
// sync until it applied a reset. The state machine itself is not here: the
// platform's region conductor runs on the same API server.
package checkpointing

import (
	"context"
	"encoding/json"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/peconfig"
	"sluice.dev/sluice/sim/apiserver"
	"sluice.dev/sluice/sim/engine"
)

// Env is what the model needs from the other models. Nil functions count
// as zero (a single host with no network delay, an idle data plane).
type Env struct {
	// HopLatency is the one-way latency of a stream between two pods.
	HopLatency func(from, to types.NamespacedName) time.Duration
	// ConnectTime is the time to open a connection from a pod to another.
	ConnectTime func(from, to types.NamespacedName) time.Duration
	// Backlog is the time a PE needs to process what it has accepted.
	Backlog func(namespace, pe string) time.Duration
	// PatchLatency is the round trip of the PE's annotation patch.
	PatchLatency time.Duration
}

// Kind of a recorded action.
type Kind string

const (
	Drain Kind = "drain"
	Reset Kind = "reset"
)

// Record is one drain or reset a PE process completed.
type Record struct {
	// At is when the PE's progress was patched onto its pod.
	At   time.Duration
	Kind Kind
	Pod  types.NamespacedName
	PE   string
	// Seq (drain) or Epoch (reset) it reported; Restore is the reset's
	// restore point.
	Seq, Epoch, Restore int64
	// Bytes written (drain) or read (reset).
	Bytes int64
	// Delay from seeing the region's state to the patch.
	Delay time.Duration
}

type proc struct {
	pod      types.NamespacedName
	uid      types.UID
	pe       string
	progress v1alpha1.RegionProgress
	// cores the process can use (its CPU limit, at most one).
	cores float64
	timer *engine.Timer
	// what the timer will report: a drain of seq or a reset to epoch.
	kind       Kind
	seq, epoch int64
}

// Model is the checkpointing model.
type Model struct {
	e   *engine.Engine
	c   client.Client
	p   Params
	env Env

	regions map[types.NamespacedName]*v1alpha1.ConsistentRegion
	configs map[types.NamespacedName]*peconfig.PE // by namespace and PE name
	procs   map[types.NamespacedName]*proc        // by pod
	stalled map[types.NamespacedName]bool         // by namespace and PE name
	records []Record
	// Region sources by namespace/PE/operator, in creation order.
	emissions    map[string]*emission
	emissionKeys []string

	// StateBytes, if set, overrides the state size of a PE (bytes of its
	// checkpoint); a negative result keeps the model's.
	StateBytes func(namespace, pe string) int64
}

// New starts the model on an API server.
func New(api *apiserver.Server, p Params, env Env) *Model {
	m := &Model{e: api.Engine(), c: api.Client("system:serviceaccount:pe"), p: p, env: env,
		regions: map[types.NamespacedName]*v1alpha1.ConsistentRegion{},
		configs: map[types.NamespacedName]*peconfig.PE{},
		procs:   map[types.NamespacedName]*proc{},
		stalled: map[types.NamespacedName]bool{}, emissions: map[string]*emission{}}
	api.Watch(&corev1.ConfigMap{}, func(ev apiserver.WatchEvent) {
		cm := ev.Object.(*corev1.ConfigMap)
		if cm.Labels[v1alpha1.LabelRole] != v1alpha1.RolePEConfig {
			return
		}
		k := types.NamespacedName{Namespace: cm.Namespace, Name: cm.Labels[v1alpha1.LabelPE]}
		if ev.Type == watch.Deleted {
			delete(m.configs, k)
			return
		}
		if cfg, err := peconfig.ParsePE([]byte(cm.Data[v1alpha1.PEConfigKey])); err == nil && cfg.Region != nil {
			m.configs[k] = cfg
			m.stepRegion(types.NamespacedName{Namespace: cfg.Namespace, Name: cfg.Region.Resource})
		}
	})
	api.Watch(&v1alpha1.ConsistentRegion{}, func(ev apiserver.WatchEvent) {
		cr := ev.Object.(*v1alpha1.ConsistentRegion)
		k := client.ObjectKeyFromObject(cr)
		if ev.Type == watch.Deleted {
			delete(m.regions, k)
			return
		}
		m.regions[k] = cr
		m.stepRegion(k)
	})
	// Read-only (nothing of the pod is kept): no copy per pod write.
	api.WatchShared(&corev1.Pod{}, func(ev apiserver.WatchEvent) { m.pod(ev) })
	return m
}

// Params returns the model's parameters.
func (m *Model) Params() Params { return m.p }

// Records lists every drain and reset completed so far, in time order.
func (m *Model) Records() []Record { return m.records }

// Ready is false while a pod's process applies a reset: it has closed its
// connections and reopens them once it restored its state (the kubelet's
// readiness probe ANDs this with the data plane's connectivity).
func (m *Model) Ready(pod *corev1.Pod) bool {
	x := m.procs[client.ObjectKeyFromObject(pod)]
	return x == nil || x.timer == nil || x.kind != Reset
}

// Stall makes the process of a PE (its current and later pods) stop
// answering its region, or answer again: a hung PE for fault injection.
func (m *Model) Stall(namespace, pe string, stalled bool) {
	k := types.NamespacedName{Namespace: namespace, Name: pe}
	m.stalled[k] = stalled
	for _, pk := range m.sortedPods() {
		x := m.procs[pk]
		if x.pod.Namespace != namespace || x.pe != pe {
			continue
		}
		if stalled {
			m.cancel(x)
			m.step(x) // pauses its sources
		} else {
			m.step(x)
		}
	}
}

func (m *Model) pod(ev apiserver.WatchEvent) {
	pod := ev.Object.(*corev1.Pod)
	peName := pod.Labels[v1alpha1.LabelPE]
	if peName == "" {
		return
	}
	k := client.ObjectKeyFromObject(pod)
	x := m.procs[k]
	running := ev.Type != watch.Deleted && pod.DeletionTimestamp == nil && pod.Status.Phase == corev1.PodRunning
	if x != nil && (!running || x.uid != pod.UID) {
		// The process ended; a later one starts with no progress.
		m.cancel(x)
		if cfg := m.configs[types.NamespacedName{Namespace: k.Namespace, Name: x.pe}]; cfg != nil {
			for _, s := range m.sources(cfg) {
				if s.pod == k {
					m.setSpeed(s, x, false, cfg)
				}
			}
		}
		delete(m.procs, k)
		x = nil
	}
	if !running || x != nil {
		return
	}
	x = &proc{pod: k, uid: pod.UID, pe: peName, cores: coresOf(pod)}
	m.procs[k] = x
	m.step(x)
}

// stepRegion lets every process of the region react, in pod name order
// (random draws must come in a fixed order).
func (m *Model) stepRegion(region types.NamespacedName) {
	for _, pk := range m.sortedPods() {
		x := m.procs[pk]
		if cfg := m.configs[types.NamespacedName{Namespace: pk.Namespace, Name: x.pe}]; cfg != nil &&
			cfg.Region.Resource == region.Name && pk.Namespace == region.Namespace {
			m.step(x)
		}
	}
}

func (m *Model) sortedPods() []types.NamespacedName {
	keys := make([]types.NamespacedName, 0, len(m.procs))
	for k := range m.procs {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].Namespace != keys[j].Namespace {
			return keys[i].Namespace < keys[j].Namespace
		}
		return keys[i].Name < keys[j].Name
	})
	return keys
}

func (m *Model) cancel(x *proc) {
	if x.timer != nil {
		x.timer.Stop()
		x.timer = nil
	}
}

// step is the PE process's reaction to its region's current status.
func (m *Model) step(x *proc) {
	pek := types.NamespacedName{Namespace: x.pod.Namespace, Name: x.pe}
	cfg := m.configs[pek]
	if cfg == nil {
		return
	}
	cr := m.regions[types.NamespacedName{Namespace: cfg.Namespace, Name: cfg.Region.Resource}]
	if cr == nil {
		return
	}
	st := cr.Status
	m.flow(x, cfg, st)
	if m.stalled[pek] {
		return
	}
	switch {
	case st.State == v1alpha1.RegionResetting && st.Epoch > x.progress.Epoch:
		if x.timer != nil && x.kind == Reset && x.epoch == st.Epoch {
			return
		}
		// A newer epoch supersedes whatever the process was doing.
		m.cancel(x)
		bytes := int64(0)
		if st.RestoreSeq > 0 {
			bytes = m.stateBytes(cfg)
		}
		d := m.ResetDelay(cfg, x.pod, bytes)
		m.arm(x, Reset, st.Epoch, st.RestoreSeq, bytes, d)
	case st.State == v1alpha1.RegionDraining && st.Epoch == x.progress.Epoch && x.progress.Checkpointed < st.CurrentSeq:
		if x.timer != nil && x.kind == Drain && x.seq == st.CurrentSeq {
			return
		}
		m.cancel(x)
		bytes := m.stateBytes(cfg)
		d := m.DrainDelay(cfg, bytes)
		m.arm(x, Drain, st.CurrentSeq, 0, bytes, d)
	case x.timer != nil && x.kind == Drain && (st.State != v1alpha1.RegionDraining || st.CurrentSeq != x.seq):
		// The drain was abandoned (a reset began): the PE drops it.
		m.cancel(x)
	}
}

func (m *Model) arm(x *proc, kind Kind, n, restore, bytes int64, d time.Duration) {
	x.kind = kind
	if kind == Drain {
		x.seq = n
	} else {
		x.epoch = n
	}
	x.timer = m.e.After(d, func() {
		x.timer = nil
		pr := x.progress
		pr.Region = m.configs[types.NamespacedName{Namespace: x.pod.Namespace, Name: x.pe}].Region.Name
		rec := Record{At: m.e.Now(), Kind: kind, Pod: x.pod, PE: x.pe, Bytes: bytes, Delay: d}
		if kind == Drain {
			pr.Checkpointed, pr.Bytes = n, bytes
			rec.Seq, rec.Epoch = n, pr.Epoch
		} else {
			pr.Epoch = n
			rec.Epoch, rec.Restore = n, restore
		}
		if !m.patch(x.pod, pr) {
			return
		}
		x.progress = pr
		if kind == Reset {
			m.restore(m.configs[types.NamespacedName{Namespace: x.pod.Namespace, Name: x.pe}], restore)
		}
		m.records = append(m.records, rec)
		// The region may already want more of this process.
		m.step(x)
	})
}

// patch writes the process's progress onto its pod, as regionctl.Kube does.
func (m *Model) patch(pod types.NamespacedName, pr v1alpha1.RegionProgress) bool {
	raw, _ := json.Marshal(pr)
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{v1alpha1.AnnotationRegionProgress: string(raw)}}})
	obj := &corev1.Pod{}
	obj.Namespace, obj.Name = pod.Namespace, pod.Name
	return m.c.Patch(context.Background(), obj, client.RawPatch(types.MergePatchType, patch)) == nil
}

// jitter scales a store operation's time by (1 +/- Jitter), uniform, from
// the engine's seeded generator.
func (m *Model) jitter(d time.Duration) time.Duration {
	if m.p.Jitter <= 0 || d <= 0 {
		return d
	}
	return time.Duration(float64(d) * (1 + m.p.Jitter*(2*m.e.Rand().Float64()-1)))
}
