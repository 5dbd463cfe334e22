// Package metrics defines the PE's Prometheus metrics on a registry of its
// own (never the global one), so that tests and several engines in one
// process do not collide.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics are the PE runtime's metrics.
type Metrics struct {
	Registry *prometheus.Registry

	// Per PE input port (label port) and per outgoing stream (label stream).
	TuplesIn  *prometheus.CounterVec
	BytesIn   *prometheus.CounterVec
	TuplesOut *prometheus.CounterVec
	BytesOut  *prometheus.CounterVec
	// TuplesDropped counts tuples lost in a failed write (at-most-once).
	TuplesDropped *prometheus.CounterVec

	OperatorIn  *prometheus.CounterVec
	OperatorOut *prometheus.CounterVec

	// QueueDepth is the number of batches waiting for an output connection.
	QueueDepth *prometheus.GaugeVec
	// ConnectionUp is 1 while a connection is established (direction in|out).
	ConnectionUp *prometheus.GaugeVec
	Reconnects   *prometheus.CounterVec
	ConnectFails *prometheus.CounterVec
	// WireErrors counts connections closed for malformed input, by reason.
	WireErrors *prometheus.CounterVec

	SinkGaps       *prometheus.CounterVec
	SinkDuplicates *prometheus.CounterVec
	SinkReordered  *prometheus.CounterVec
	AggregateLate  *prometheus.GaugeVec
	Ready          prometheus.Gauge
}

// New makes the metrics and registers them, with the Go and process
// collectors, on a fresh registry.
func New() *Metrics {
	const ns = "sluice_pe"
	cv := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: name, Help: help}, labels)
	}
	gv := func(name, help string, labels ...string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: name, Help: help}, labels)
	}
	m := &Metrics{
		Registry:       prometheus.NewRegistry(),
		TuplesIn:       cv("tuples_in_total", "Tuples received on a PE input port.", "port"),
		BytesIn:        cv("bytes_in_total", "Frame bytes received on a PE input port.", "port"),
		TuplesOut:      cv("tuples_out_total", "Tuples written to a cross-PE stream.", "stream"),
		BytesOut:       cv("bytes_out_total", "Frame bytes written to a cross-PE stream.", "stream"),
		TuplesDropped:  cv("tuples_dropped_total", "Tuples lost in a failed write to a cross-PE stream.", "stream"),
		OperatorIn:     cv("operator_tuples_in_total", "Tuples processed by an operator.", "operator"),
		OperatorOut:    cv("operator_tuples_out_total", "Tuples emitted by an operator.", "operator"),
		QueueDepth:     gv("queue_depth_batches", "Batches queued for a cross-PE stream.", "stream"),
		ConnectionUp:   gv("connection_up", "1 while the connection of a cross-PE stream is established.", "direction", "stream"),
		Reconnects:     cv("reconnects_total", "Connections of a cross-PE stream re-established after a loss.", "direction", "stream"),
		ConnectFails:   cv("connect_failures_total", "Failed attempts to connect a cross-PE stream.", "stream"),
		WireErrors:     cv("wire_errors_total", "Connections closed because of malformed or hostile input.", "reason"),
		SinkGaps:       cv("sink_gaps_total", "Sequence numbers a sink passed over that no operator upstream dropped on purpose (one that arrives later also counts in sink_reordered_total).", "operator"),
		SinkDuplicates: cv("sink_duplicates_total", "Tuples whose origin sequence number a sink had already seen.", "operator"),
		SinkReordered:  cv("sink_reordered_total", "Tuples that reached a sink after a later tuple of their origin (out of order, not duplicated).", "operator"),
		AggregateLate:  gv("aggregate_late_tuples", "Tuples that arrived after their window closed.", "operator"),
		Ready:          prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "ready", Help: "1 when every connection of the PE is established."}),
	}
	m.Registry.MustRegister(m.TuplesIn, m.BytesIn, m.TuplesOut, m.BytesOut, m.TuplesDropped, m.OperatorIn, m.OperatorOut,
		m.QueueDepth, m.ConnectionUp, m.Reconnects, m.ConnectFails, m.WireErrors, m.SinkGaps,
		m.SinkDuplicates, m.SinkReordered, m.AggregateLate, m.Ready,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// SinkObserver adapts the sink metrics of one operator to
// operators.SinkObserver.
type SinkObserver struct {
	Gap  prometheus.Counter
	Dups prometheus.Counter
	Late prometheus.Counter
}

func (m *Metrics) SinkObserver(op string) *SinkObserver {
	return &SinkObserver{Gap: m.SinkGaps.WithLabelValues(op),
		Dups: m.SinkDuplicates.WithLabelValues(op), Late: m.SinkReordered.WithLabelValues(op)}
}

func (o *SinkObserver) Gaps(n uint64) { o.Gap.Add(float64(n)) }
func (o *SinkObserver) Duplicate()    { o.Dups.Inc() }
func (o *SinkObserver) Reordered()    { o.Late.Inc() }

// LatencyBounds are the upper bounds of the sink latency histogram: 5us
// doubling to about 10s.
var LatencyBounds = prometheus.ExponentialBuckets(5e-6, 2, 22)

// LatencySource gives cumulative counts at bounds (nanoseconds), the count
// and the sum in nanoseconds.
type LatencySource func(bounds []int64) ([]uint64, uint64, int64)

var latencyDesc = prometheus.NewDesc("sluice_pe_sink_latency_seconds",
	"End-to-end latency from the origin's emission to the sink.", []string{"operator"}, nil)

// latencyCollector exports a sink's own histogram, so the hot path records
// a latency once, without a Prometheus observation per tuple.
type latencyCollector struct {
	op  string
	src LatencySource
	ns  []int64
}

func (c *latencyCollector) Describe(ch chan<- *prometheus.Desc) { ch <- latencyDesc }

func (c *latencyCollector) Collect(ch chan<- prometheus.Metric) {
	counts, n, sum := c.src(c.ns)
	b := make(map[float64]uint64, len(counts))
	for i, v := range counts {
		b[LatencyBounds[i]] = v
	}
	ch <- prometheus.MustNewConstHistogram(latencyDesc, n, float64(sum)/1e9, b, c.op)
}

// RegisterSinkLatency exports the latency histogram of sink op.
func (m *Metrics) RegisterSinkLatency(op string, src LatencySource) {
	ns := make([]int64, len(LatencyBounds))
	for i, s := range LatencyBounds {
		ns[i] = int64(s * 1e9)
	}
	m.Registry.MustRegister(&latencyCollector{op: op, src: src, ns: ns})
}
