package operators

import (
	"encoding/json"
	"fmt"
	"math"
	"math/bits"
	"sync"
	"time"

	"sluice.dev/sluice/platform/runtime/wire"
)

// Sink counts tuples, checks sequence numbers per origin and records
// end-to-end latency (arrival time minus the origin's Time).
type Sink struct {
	name  string
	pe    string
	names map[uint32]string
	// Observer, when set, is told every gap or duplicate.
	Observer SinkObserver
	now      func() int64

	mu       sync.Mutex
	tracker  *Tracker
	tuples   uint64
	bytes    uint64
	first    int64
	last     int64
	complete bool
	digest   uint64
	content  uint64
	lat      LatencyHist
}

// TupleDigest is a tuple's term in a sink's digest: origin, seq, key,
// event and value, each multiplied by its own odd 64-bit constant, XORed
// together (independent multiplies, so they run in parallel) and put
// through the splitmix64 finaliser so that every input bit reaches every
// output bit. Epoch, times and payload are left out, so a replay of the
// same data gives the same terms.
func TupleDigest(t *wire.Tuple) uint64 {
	return mix64(uint64(t.Origin)*0x9e3779b97f4a7c15 ^ t.Seq*0xc2b2ae3d27d4eb4f ^ t.Key*0x165667b19e3779f9 ^
		uint64(t.Event)*0xd6e8feb86659fd93 ^ uint64(t.Value)*0xff51afd7ed558ccd)
}

// ContentDigest is a tuple's term in a sink's content digest: key, event
// and value only. A width change of a parallel region moves a key's
// results to another channel, which numbers them with its own origin and
// sequence: the Digest differs while the results are the same, and this
// one does not.
func ContentDigest(t *wire.Tuple) uint64 {
	return mix64(t.Key*0x165667b19e3779f9 ^ uint64(t.Event)*0xd6e8feb86659fd93 ^ uint64(t.Value)*0xff51afd7ed558ccd ^ 0x2545f4914f6cdd1d)
}

// SinkObserver receives a sink's events for metrics.
type SinkObserver interface {
	// Gaps: n sequence numbers were passed over, not owed as skips.
	Gaps(n uint64)
	// Duplicate: a sequence number arrived a second time.
	Duplicate()
	// Reordered: a tuple arrived after a later one of its origin.
	Reordered()
}

func NewSink(name string, env Env) *Sink {
	now := env.Now
	if now == nil {
		now = func() int64 { return time.Now().UnixNano() }
	}
	return &Sink{name: name, pe: env.PE, names: env.Names, tracker: NewTracker(false), now: now}
}

func (s *Sink) Process(_ int, t *wire.Tuple) {
	s.mu.Lock()
	obs := s.record(t, s.now())
	s.mu.Unlock()
	if o := s.Observer; o != nil {
		report(o, obs.Missing, b2i(obs.Duplicate), b2i(obs.Reordered))
	}
}

// ProcessBatch records a batch under one hold of the lock.
func (s *Sink) ProcessBatch(_ int, ts []wire.Tuple) {
	now := s.now()
	var missing uint64
	var dups, late int
	s.mu.Lock()
	for i := range ts {
		obs := s.record(&ts[i], now)
		missing += obs.Missing
		dups += b2i(obs.Duplicate)
		late += b2i(obs.Reordered)
	}
	s.mu.Unlock()
	if o := s.Observer; o != nil {
		report(o, missing, dups, late)
	}
}

func report(o SinkObserver, missing uint64, dups, late int) {
	if missing > 0 {
		o.Gaps(missing)
	}
	for ; dups > 0; dups-- {
		o.Duplicate()
	}
	for ; late > 0; late-- {
		o.Reordered()
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (s *Sink) record(t *wire.Tuple, now int64) Observation {
	lat := now - t.Time
	obs := s.tracker.ObserveAll(t)
	s.tuples++
	s.digest += TupleDigest(t)
	s.content += ContentDigest(t)
	s.bytes += uint64(t.EncodedLen())
	if s.first == 0 {
		s.first = now
	}
	s.last = now
	s.lat.Record(lat)
	return obs
}

// Finish marks the sink complete: every stream into it has ended.
func (s *Sink) Finish() {
	s.mu.Lock()
	s.complete = true
	s.mu.Unlock()
}

// Summary is what a sink saw, written as JSON for tests and experiments.
type Summary struct {
	Operator string `json:"operator"`
	PE       string `json:"pe"`
	// Complete is true once every stream into the sink has ended.
	Complete bool   `json:"complete"`
	Tuples   uint64 `json:"tuples"`
	Bytes    uint64 `json:"bytes"`
	// Gaps = Missing + UpstreamLost: tuples the sink knows were lost.
	Gaps         uint64 `json:"gaps"`
	Missing      uint64 `json:"missing"`
	UpstreamLost uint64 `json:"upstreamLost"`
	// Duplicates counts sequence numbers delivered twice; Reordered counts
	// tuples that came after a later one of their origin (delivered once,
	// out of order, as behind a split and a union).
	Duplicates uint64 `json:"duplicates"`
	Reordered  uint64 `json:"reordered"`
	Skipped    uint64 `json:"skipped"`
	Restarts   uint64 `json:"restarts"`
	ValueSum   int64  `json:"valueSum"`
	// Digest is the sum (mod 2^64) of TupleDigest over every tuple
	// received, duplicates included: independent of arrival order, equal
	// for two runs that delivered the same tuples.
	Digest uint64 `json:"digest"`
	// ContentDigest is the same kind of sum over ContentDigest (key, event
	// and value, not origin nor seq): equal for two runs that delivered
	// the same results from differently numbered channels.
	ContentDigest uint64 `json:"contentDigest"`
	// FirstNanos and LastNanos are the arrival times of the first and last
	// tuple (Unix nanoseconds).
	FirstNanos int64          `json:"firstNanos"`
	LastNanos  int64          `json:"lastNanos"`
	Latency    LatencySummary `json:"latency"`
	Origins    []OriginStats  `json:"origins"`
}

// LatencySummary gives latency quantiles in microseconds.
type LatencySummary struct {
	Count uint64  `json:"count"`
	P50   float64 `json:"p50Micros"`
	P90   float64 `json:"p90Micros"`
	P99   float64 `json:"p99Micros"`
	P999  float64 `json:"p999Micros"`
	Max   float64 `json:"maxMicros"`
}

// Summary returns what the sink has seen so far.
func (s *Sink) Summary() Summary {
	s.mu.Lock()
	defer s.mu.Unlock()
	sum := Summary{Operator: s.name, PE: s.pe, Complete: s.complete, Tuples: s.tuples, Bytes: s.bytes, Digest: s.digest,
		ContentDigest: s.content, FirstNanos: s.first, LastNanos: s.last, Origins: s.tracker.Origins()}
	for i := range sum.Origins {
		o := &sum.Origins[i]
		o.Name = s.names[o.ID]
		o.Holes = nil // a checkpoint's concern, not a result
		sum.Missing += o.Missing
		sum.UpstreamLost += o.UpstreamLost
		sum.Duplicates += o.Duplicates
		sum.Reordered += o.Reordered
		sum.Skipped += o.Skipped
		sum.Restarts += o.Restarts
		sum.ValueSum += o.ValueSum
	}
	sum.Gaps = sum.Missing + sum.UpstreamLost
	sum.Latency = s.lat.Summary()
	return sum
}

type sinkSnapshot struct {
	Tracker  []OriginStats `json:"tracker"`
	Tuples   uint64        `json:"tuples"`
	Bytes    uint64        `json:"bytes"`
	First    int64         `json:"first"`
	Last     int64         `json:"last"`
	Complete bool          `json:"complete"`
	Digest   uint64        `json:"digest"`
	Content  uint64        `json:"content,omitempty"`
}

// Snapshot saves the sink's whole result except the latency histogram
// (latency is a measurement of this run, not a result to roll back).
func (s *Sink) Snapshot() ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return json.Marshal(sinkSnapshot{Tracker: s.tracker.Origins(), Tuples: s.tuples, Bytes: s.bytes,
		First: s.first, Last: s.last, Complete: s.complete, Digest: s.digest, Content: s.content})
}

// Restore rolls the result back to a snapshot's.
func (s *Sink) Restore(b []byte) error {
	var snap sinkSnapshot
	if err := json.Unmarshal(b, &snap); err != nil {
		return fmt.Errorf("sink restore: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tracker.Restore(snap.Tracker)
	s.tuples, s.bytes, s.first, s.last = snap.Tuples, snap.Bytes, snap.First, snap.Last
	s.complete, s.digest, s.content = snap.Complete, snap.Digest, snap.Content
	return nil
}

// ResetLatency forgets recorded latencies (benchmarks drop their warm-up).
func (s *Sink) ResetLatency() {
	s.mu.Lock()
	s.lat = LatencyHist{}
	s.mu.Unlock()
}

// LatencyHist is a log-linear histogram of nanosecond values: 32 buckets
// per power of two, so a quantile is within about 3% of the true value.
// Recording is one increment; it never allocates.
type LatencyHist struct {
	counts [60 * 32]uint64
	n      uint64
	sum    int64
	max    int64
}

func histIndex(v uint64) int {
	if v < 32 {
		return int(v)
	}
	k := bits.Len64(v) - 1 // v in [2^k, 2^(k+1)), k >= 5
	return (k-4)*32 + int((v>>(k-5))&31)
}

// histLow is the smallest value of bucket i.
func histLow(i int) uint64 {
	if i < 32 {
		return uint64(i)
	}
	k := i/32 + 4
	return uint64(32+i%32) << (k - 5)
}

// Record adds one value; negative values (clock skew) count as zero.
func (h *LatencyHist) Record(v int64) {
	if v < 0 {
		v = 0
	}
	h.counts[histIndex(uint64(v))]++
	h.n++
	h.sum += v
	if v > h.max {
		h.max = v
	}
}

// Quantile returns the value at quantile q in nanoseconds (the middle of
// its bucket).
func (h *LatencyHist) Quantile(q float64) float64 {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = max(rank, 1)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			lo, hi := histLow(i), histLow(i+1)
			return math.Min(float64(lo+hi)/2, float64(h.max))
		}
	}
	return float64(h.max)
}

func (h *LatencyHist) Summary() LatencySummary {
	return LatencySummary{Count: h.n, P50: h.Quantile(0.5) / 1e3, P90: h.Quantile(0.9) / 1e3,
		P99: h.Quantile(0.99) / 1e3, P999: h.Quantile(0.999) / 1e3, Max: float64(h.max) / 1e3}
}

// Cumulative returns, for each upper bound in nanoseconds (ascending), how
// many values are known to be at or below it (buckets that straddle a
// bound count above it), with the total count and sum.
func (h *LatencyHist) Cumulative(bounds []int64) (counts []uint64, n uint64, sum int64) {
	counts = make([]uint64, len(bounds))
	var seen uint64
	b := 0
	for i, c := range h.counts {
		hi := histLow(i+1) - 1
		for b < len(bounds) && int64(hi) > bounds[b] {
			counts[b] = seen
			b++
		}
		if b == len(bounds) {
			break
		}
		seen += c
	}
	for ; b < len(bounds); b++ {
		counts[b] = seen
	}
	return counts, h.n, h.sum
}

// LatencyCumulative is Cumulative of the sink's latency, taken under its lock.
func (s *Sink) LatencyCumulative(bounds []int64) ([]uint64, uint64, int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lat.Cumulative(bounds)
}
