package checkpointing

import (
	"time"

	"k8s.io/apimachinery/pkg/types"

	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/peconfig"
)

// defaultKeys is a source's key count when params.keys is not set
// (operators.NewSource).
const defaultKeys = 1000

// job is the operator graph of one Job as its PEs' configurations give it.
type job struct {
	ops     map[string]*v1alpha1.Operator
	opPE    map[string]*peconfig.PE
	streams map[int32]peconfig.Stream
}

func (m *Model) jobOf(cfg *peconfig.PE) *job {
	j := &job{ops: map[string]*v1alpha1.Operator{}, opPE: map[string]*peconfig.PE{}, streams: map[int32]peconfig.Stream{}}
	for _, c := range m.configs {
		if c.Namespace != cfg.Namespace || c.Job != cfg.Job {
			continue
		}
		for i := range c.Operators {
			j.ops[c.Operators[i].Name] = &c.Operators[i]
			j.opPE[c.Operators[i].Name] = c
		}
		for _, s := range c.Streams {
			j.streams[s.ID] = s
		}
	}
	return j
}

// keys is the number of distinct keys reaching an operator: the largest
// key count of the sources upstream of it (they share the key space).
func (j *job) keys(op string, seen map[string]bool) int64 {
	if seen[op] {
		return 0
	}
	seen[op] = true
	if o := j.ops[op]; o != nil && o.Kind == v1alpha1.KindSource {
		if o.Params != nil && o.Params.Keys != nil {
			return *o.Params.Keys
		}
		return defaultKeys
	}
	var k int64
	for _, s := range j.streams {
		if s.To.Operator == op {
			k = max(k, j.keys(s.From.Operator, seen))
		}
	}
	return k
}

// stateBytes is the size of a PE's checkpoint: every operator's fixed part
// plus, for an aggregate, one entry per key in its open window. The
// aggregate is assumed warm (every key seen in the window), which is its
// steady state once the source has emitted a few times its key count.
func (m *Model) stateBytes(cfg *peconfig.PE) int64 {
	if m.StateBytes != nil {
		if b := m.StateBytes(cfg.Namespace, cfg.Name); b >= 0 {
			return b
		}
	}
	j := m.jobOf(cfg)
	var b int64
	for _, op := range cfg.Operators {
		b += m.p.OperatorBytes
		if op.Kind == v1alpha1.KindAggregate {
			b += j.keys(op.Name, map[string]bool{}) * m.p.BytesPerKey
		}
	}
	return b
}

// StateBytesOf is the checkpoint size the model gives a PE now (0 if the
// PE's configuration is unknown).
func (m *Model) StateBytesOf(namespace, pe string) int64 {
	cfg := m.configs[types.NamespacedName{Namespace: namespace, Name: pe}]
	if cfg == nil {
		return 0
	}
	return m.stateBytes(cfg)
}

// podOf is the running pod of a PE, or the zero name.
func (m *Model) podOf(namespace, pe string) types.NamespacedName {
	var out types.NamespacedName
	for k, x := range m.procs {
		if k.Namespace == namespace && x.pe == pe && (out.Name == "" || k.Name > out.Name) {
			out = k
		}
	}
	return out
}

func (m *Model) hop(from, to *peconfig.PE) time.Duration {
	if m.env.HopLatency == nil {
		return 0
	}
	a, b := m.podOf(from.Namespace, from.Name), m.podOf(to.Namespace, to.Name)
	if a.Name == "" || b.Name == "" {
		return 0
	}
	return m.env.HopLatency(a, b)
}

func (m *Model) backlog(cfg *peconfig.PE) time.Duration {
	if m.env.Backlog == nil {
		return 0
	}
	return m.env.Backlog(cfg.Namespace, cfg.Name)
}

// upstream lists the other PEs of the region that feed cfg directly.
func (j *job) upstream(cfg *peconfig.PE) []*peconfig.PE {
	var out []*peconfig.PE
	seen := map[string]bool{}
	for _, s := range cfg.Streams {
		from := j.opPE[s.From.Operator]
		if from == nil || from.Name == cfg.Name || seen[from.Name] || from.Region == nil || from.Region.Resource != cfg.Region.Resource {
			continue
		}
		if j.opPE[s.To.Operator] == nil || j.opPE[s.To.Operator].Name != cfg.Name {
			continue
		}
		seen[from.Name] = true
		out = append(out, from)
	}
	return out
}

// markerAt is when marker N reaches every input of a PE, from the moment
// the region's PEs see it Draining: the region's sources emit the marker
// at once; a PE forwards it after it has worked off the tuples ahead of it
// and taken its snapshot, and the marker then crosses one network hop.
func (m *Model) markerAt(j *job, cfg *peconfig.PE, memo map[string]time.Duration, depth int) time.Duration {
	if t, ok := memo[cfg.Name]; ok {
		return t
	}
	var at time.Duration
	if depth < 10000 { // a region is acyclic; the bound guards bad input
		for _, up := range j.upstream(cfg) {
			fwd := m.markerAt(j, up, memo, depth+1) + m.backlog(up) + bytesAt(m.stateBytes(up), m.p.EncodeBandwidth)
			at = max(at, fwd+m.hop(up, cfg))
		}
	}
	memo[cfg.Name] = at
	return at
}

// DrainDelay is the time from a PE seeing its region Draining to its
// report of checkpointed N reaching the API server:
//
//	markerAt + backlog + bytes/encodeBandwidth
//	  + store put latency + bytes/store write bandwidth (with jitter)
//	  + patch latency
//
// It draws one random number when Jitter > 0.
func (m *Model) DrainDelay(cfg *peconfig.PE, bytes int64) time.Duration {
	j := m.jobOf(cfg)
	st := m.p.StoreOf(storeType(cfg))
	d := m.markerAt(j, cfg, map[string]time.Duration{}, 0) + m.backlog(cfg) + bytesAt(bytes, m.p.EncodeBandwidth)
	d += m.jitter(st.PutLatency + bytesAt(bytes, st.WriteBandwidth))
	return d + m.env.PatchLatency
}

// ResetDelay is the time from a PE seeing its region Resetting to its
// report of the new epoch reaching the API server:
//
//	[bytes > 0: store get latency + bytes/store read bandwidth (with jitter)
//	            + bytes/decodeBandwidth]
//	  + reconnect (the slowest new connection to a downstream PE)
//	  + patch latency
//
// bytes is 0 when the reset restores the initial state (restore point 0).
func (m *Model) ResetDelay(cfg *peconfig.PE, pod types.NamespacedName, bytes int64) time.Duration {
	var d time.Duration
	if bytes > 0 {
		st := m.p.StoreOf(storeType(cfg))
		d = m.jitter(st.GetLatency+bytesAt(bytes, st.ReadBandwidth)) + bytesAt(bytes, m.p.DecodeBandwidth)
	}
	var reconnect time.Duration
	if m.env.ConnectTime != nil {
		j := m.jobOf(cfg)
		for _, s := range cfg.Streams {
			to := j.opPE[s.To.Operator]
			if to == nil || to.Name == cfg.Name || j.opPE[s.From.Operator] == nil || j.opPE[s.From.Operator].Name != cfg.Name {
				continue
			}
			if b := m.podOf(to.Namespace, to.Name); b.Name != "" {
				reconnect = max(reconnect, m.env.ConnectTime(pod, b))
			}
		}
	}
	return d + reconnect + m.env.PatchLatency
}

func storeType(cfg *peconfig.PE) string {
	if cfg.Store == nil {
		return string(v1alpha1.StoreFilesystem)
	}
	return cfg.Store.Type
}
