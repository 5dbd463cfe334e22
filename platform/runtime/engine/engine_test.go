package engine

import (
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/app"
	"sluice.dev/sluice/platform/runtime/metrics"
	"sluice.dev/sluice/platform/runtime/operators"
	"sluice.dev/sluice/platform/runtime/transport"
	"sluice.dev/sluice/platform/runtime/wire"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func i64(v int64) *int64 { return &v }
func i32(v int32) *int32 { return &v }

func chain(ops ...v1alpha1.Operator) *v1alpha1.JobSpec {
	spec := &v1alpha1.JobSpec{Application: v1alpha1.Application{Operators: ops}}
	for i := 1; i < len(ops); i++ {
		spec.Application.Streams = append(spec.Application.Streams, v1alpha1.Stream{
			From: v1alpha1.Endpoint{Operator: ops[i-1].Name}, To: v1alpha1.Endpoint{Operator: ops[i].Name}})
	}
	return spec
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

type cluster struct {
	plan    *app.Plan
	engines map[string]*Engine
	metrics map[string]*metrics.Metrics
	done    chan string
}

// startAll runs every PE of a plan in this process over loopback TCP.
func startAll(t *testing.T, spec *v1alpha1.JobSpec) *cluster {
	t.Helper()
	plan, errs := app.Build("test", "job", spec)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	bases := map[string]int{}
	for _, pe := range plan.PEs {
		bases[pe.Name] = freePort(t)
	}
	resolve := func(pe string, port int32) string {
		return net.JoinHostPort("127.0.0.1", strconv.Itoa(bases[pe]+int(port)))
	}
	c := &cluster{plan: plan, engines: map[string]*Engine{}, metrics: map[string]*metrics.Metrics{}, done: make(chan string, 16)}
	for i := range plan.PEs {
		pe := &plan.PEs[i]
		m := metrics.New()
		e, err := New(Options{PE: &pe.Config, Ports: &plan.PortTable, ListenHost: "127.0.0.1", ListenBase: bases[pe.Name],
			Resolve: resolve, Metrics: m, Epoch: 1, Log: quiet, OnComplete: func() { c.done <- pe.Name }})
		if err != nil {
			t.Fatal(err)
		}
		if err := e.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		c.engines[pe.Name], c.metrics[pe.Name] = e, m
	}
	t.Cleanup(func() {
		for _, e := range c.engines {
			e.Shutdown(2 * time.Second)
		}
	})
	return c
}

func (c *cluster) waitDone(t *testing.T, pe string) {
	t.Helper()
	select {
	case got := <-c.done:
		if got != pe {
			t.Fatalf("%s completed, expected %s", got, pe)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("%s did not complete; summaries %+v", pe, c.engines[pe].Summaries())
	}
}

func TestSourceFilterSinkAcrossPEs(t *testing.T) {
	const n = 30000
	c := startAll(t, chain(
		v1alpha1.Operator{Name: "src", Kind: "source", Params: &v1alpha1.OperatorParams{Count: i64(n), TupleSize: i32(20)}},
		v1alpha1.Operator{Name: "keep", Kind: "filter", Params: &v1alpha1.OperatorParams{KeepPercent: i32(40)}},
		v1alpha1.Operator{Name: "sink", Kind: "sink"}))
	c.waitDone(t, "job-pe-2")
	sum := c.engines["job-pe-2"].Summaries()[0]
	want := 0
	last := uint64(0)
	for s := uint64(0); s < n; s++ {
		if operators.Keeps(40, operators.OriginID("src"), s) {
			want++
			last = s
		}
	}
	if !sum.Complete || sum.Tuples != uint64(want) || sum.Gaps != 0 || sum.Duplicates != 0 {
		t.Fatalf("sink saw %+v, want %d tuples, no gaps or duplicates", sum, want)
	}
	if sum.Skipped+sum.Tuples != last+1 || sum.Origins[0].Name != "src" {
		t.Fatalf("skipped %d + tuples %d != %d", sum.Skipped, sum.Tuples, last+1)
	}
	if got := value(t, c.metrics["job-pe-0"].TuplesOut.WithLabelValues("0")); got != n {
		t.Fatalf("source PE wrote %v tuples", got)
	}
	if got := value(t, c.metrics["job-pe-1"].TuplesIn.WithLabelValues("0")); got != n {
		t.Fatalf("filter PE received %v tuples", got)
	}
	if got := value(t, c.metrics["job-pe-1"].OperatorOut.WithLabelValues("keep")); got != float64(want) {
		t.Fatalf("filter emitted %v", got)
	}
	for name, e := range c.engines {
		if ok, why := e.Ready(); !ok {
			t.Fatalf("%s not ready after the run: %s", name, why)
		}
	}
}

func TestFusedAggregateCounts(t *testing.T) {
	const n = 5000
	srcParams := &v1alpha1.OperatorParams{Count: i64(n), Rate: i64(20000), Keys: i64(5)}
	spec := chain(
		v1alpha1.Operator{Name: "src", Kind: "source", Params: srcParams},
		v1alpha1.Operator{Name: "m", Kind: "map"},
		v1alpha1.Operator{Name: "agg", Kind: "aggregate", Params: &v1alpha1.OperatorParams{WindowMillis: i64(20)}},
		v1alpha1.Operator{Name: "sink", Kind: "sink"})
	spec.Fusion = v1alpha1.Fusion{Mode: v1alpha1.FusionTarget, TargetPEs: i32(2)}
	c := startAll(t, spec)
	c.waitDone(t, "job-pe-1")
	sum := c.engines["job-pe-1"].Summaries()[0]
	if sum.ValueSum != n || sum.Gaps != 0 || sum.Duplicates != 0 || sum.Origins[0].Name != "agg" {
		t.Fatalf("aggregate counts sum to %d (want %d): %+v", sum.ValueSum, n, sum)
	}
	// Windows are on event time, a function of the sequence number: the
	// outputs are one per (window, key) present in the source's data,
	// unless a stall of a whole window made tuples late.
	src := operators.NewSource("src", srcParams, operators.Env{})
	cells := map[[2]int64]bool{}
	var tp wire.Tuple
	for s := uint64(0); s < n; s++ {
		src.Tuple(s, 0, &tp)
		cells[[2]int64{tp.Event / 20e6, int64(tp.Key)}] = true
	}
	late := c.engines["job-pe-1"].aggs["agg"].Late()
	if late == 0 && sum.Tuples != uint64(len(cells)) {
		t.Fatalf("%d aggregate outputs, want %d (one per window and key)", sum.Tuples, len(cells))
	}
	if sum.Tuples < uint64(len(cells)) {
		t.Fatalf("%d aggregate outputs, fewer than the %d (window, key) cells", sum.Tuples, len(cells))
	}
}

func TestHostileInputClosesOnlyThatConnection(t *testing.T) {
	c := startAll(t, chain(
		v1alpha1.Operator{Name: "src", Kind: "source", Params: &v1alpha1.OperatorParams{Count: i64(1000), Rate: i64(2000)}},
		v1alpha1.Operator{Name: "sink", Kind: "sink"}))
	sinkPE := c.engines["job-pe-1"]
	m := c.metrics["job-pe-1"]
	addr := sinkPE.InputAddrs()[0].String()
	send := func(b []byte) {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.Write(b)
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		var buf [64]byte
		for {
			if _, err := conn.Read(buf[:]); err != nil {
				return // closed by the PE
			}
		}
	}
	send([]byte("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"))
	send(wire.AppendHandshake(nil, wire.Handshake{Version: wire.Version, Stream: 99, PE: "intruder"}))
	hostile := wire.AppendHandshake(nil, wire.Handshake{Version: wire.Version, Stream: 0, PE: "intruder"})
	hostile = binary.LittleEndian.AppendUint32(hostile, 0xfffffff0)
	hostile = append(hostile, wire.FrameBatch)
	send(hostile)
	frame := binary.LittleEndian.AppendUint32(nil, 9)
	frame = append(frame, wire.FrameBatch)
	frame = binary.LittleEndian.AppendUint32(frame, 1000000) // count that cannot fit
	frame = append(frame, 1, 2, 3, 4)
	send(append(wire.AppendHandshake(nil, wire.Handshake{Version: wire.Version, Stream: 0, PE: "intruder"}), frame...))
	if got := value(t, m.WireErrors.WithLabelValues("bad_handshake")); got != 2 {
		t.Fatalf("bad_handshake errors = %v, want 2", got)
	}
	if got := value(t, m.WireErrors.WithLabelValues("frame_too_large")); got != 1 {
		t.Fatalf("frame_too_large errors = %v", got)
	}
	if got := value(t, m.WireErrors.WithLabelValues("bad_batch")); got != 1 {
		t.Fatalf("bad_batch errors = %v", got)
	}
	// The real upstream may have been displaced by the intruder's valid
	// handshake; it reconnects and the stream still completes.
	c.waitDone(t, "job-pe-1")
	sum := sinkPE.Summaries()[0]
	if sum.Tuples == 0 || sum.Duplicates != 0 {
		t.Fatalf("sink after hostile input: %+v", sum)
	}
}

func TestReadinessFollowsConnections(t *testing.T) {
	plan, _ := app.Build("test", "job", chain(
		v1alpha1.Operator{Name: "src", Kind: "source", Params: &v1alpha1.OperatorParams{Rate: i64(100)}},
		v1alpha1.Operator{Name: "sink", Kind: "sink"}))
	base := freePort(t)
	resolve := func(pe string, port int32) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(base+int(port))) }
	src, err := New(Options{PE: &plan.PEs[0].Config, Ports: &plan.PortTable, Resolve: resolve, ListenHost: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	src.Start(context.Background())
	defer src.Shutdown(time.Second)
	if ok, why := src.Ready(); ok || why != "not connected: output stream 0" {
		t.Fatalf("source PE ready with no peer: %v %q", ok, why)
	}
	sink, err := New(Options{PE: &plan.PEs[1].Config, Ports: &plan.PortTable, ListenHost: "127.0.0.1", ListenBase: base})
	if err != nil {
		t.Fatal(err)
	}
	sink.Start(context.Background())
	waitFor(t, func() bool { a, _ := src.Ready(); b, _ := sink.Ready(); return a && b })
	sink.Shutdown(time.Second)
	waitFor(t, func() bool { a, _ := src.Ready(); return !a })
}

func waitFor(t *testing.T, f func() bool) {
	t.Helper()
	for start := time.Now(); time.Since(start) < 10*time.Second; time.Sleep(10 * time.Millisecond) {
		if f() {
			return
		}
	}
	t.Fatal("condition not reached in 10s")
}

// value reads a counter or gauge.
func value(t *testing.T, c prometheus.Metric) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}

// Stopping the source PE gracefully flushes what it has emitted: the sink
// sees every tuple up to the last one, with no gap, and the stream does
// not end (the source was stopped, not finished).
func TestGracefulShutdownFlushes(t *testing.T) {
	c := startAll(t, chain(
		v1alpha1.Operator{Name: "src", Kind: "source", Params: &v1alpha1.OperatorParams{Rate: i64(50000), TupleSize: i32(100)}},
		v1alpha1.Operator{Name: "sink", Kind: "sink"}))
	src, sink := c.engines["job-pe-0"], c.engines["job-pe-1"]
	waitFor(t, func() bool { return sink.Summaries()[0].Tuples > 5000 })
	src.Shutdown(2 * time.Second)
	sent := value(t, c.metrics["job-pe-0"].TuplesOut.WithLabelValues("0"))
	waitFor(t, func() bool { return float64(sink.Summaries()[0].Tuples) == sent })
	s := sink.Summaries()[0]
	if s.Gaps != 0 || s.Duplicates != 0 || s.Complete || s.Origins[0].Next != s.Tuples {
		t.Fatalf("after graceful stop of the source: %+v (source sent %v)", s, sent)
	}
	waitFor(t, func() bool { ok, _ := sink.Ready(); return !ok })
}

// The metrics the platform and experiments read are exposed under their
// documented names.
func TestMetricsExposed(t *testing.T) {
	c := startAll(t, chain(
		v1alpha1.Operator{Name: "src", Kind: "source", Params: &v1alpha1.OperatorParams{Count: i64(100)}},
		v1alpha1.Operator{Name: "sink", Kind: "sink"}))
	c.waitDone(t, "job-pe-1")
	mfs, err := c.metrics["job-pe-1"].Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		got[mf.GetName()] = mf
	}
	for _, name := range []string{"sluice_pe_tuples_in_total", "sluice_pe_bytes_in_total", "sluice_pe_operator_tuples_in_total",
		"sluice_pe_connection_up", "sluice_pe_sink_latency_seconds", "sluice_pe_ready", "process_resident_memory_bytes"} {
		if got[name] == nil {
			t.Errorf("metric %s missing", name)
		}
	}
	h := got["sluice_pe_sink_latency_seconds"].GetMetric()[0].GetHistogram()
	if h.GetSampleCount() != 100 || h.GetBucket()[len(h.GetBucket())-1].GetCumulativeCount() != 100 {
		t.Fatalf("latency histogram: %v", h)
	}
	mfs, _ = c.metrics["job-pe-0"].Registry.Gather()
	found := false
	for _, mf := range mfs {
		if mf.GetName() == "sluice_pe_queue_depth_batches" {
			found = true
		}
	}
	if !found {
		t.Error("queue depth metric missing on the source PE")
	}
}

// BenchmarkLink measures one PE-to-PE link over loopback TCP in this
// process: a source PE and a sink PE, 64-byte encoded tuples.
func BenchmarkLink(b *testing.B) {
	plan, errs := app.Build("bench", "job", chain(
		v1alpha1.Operator{Name: "src", Kind: "source", Params: &v1alpha1.OperatorParams{Count: i64(int64(b.N)), TupleSize: i32(64 - wire.TupleHeaderLen)}},
		v1alpha1.Operator{Name: "sink", Kind: "sink"}))
	if len(errs) > 0 {
		b.Fatal(errs)
	}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	base := l.Addr().(*net.TCPAddr).Port
	l.Close()
	resolve := func(string, int32) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(base)) }
	done := make(chan struct{})
	sink, _ := New(Options{PE: &plan.PEs[1].Config, Ports: &plan.PortTable, ListenHost: "127.0.0.1", ListenBase: base,
		OnComplete: func() { close(done) }, Log: quiet})
	src, _ := New(Options{PE: &plan.PEs[0].Config, Ports: &plan.PortTable, Resolve: resolve, Log: quiet})
	b.SetBytes(64)
	b.ReportAllocs()
	b.ResetTimer()
	sink.Start(context.Background())
	src.Start(context.Background())
	<-done
	b.StopTimer()
	if s := sink.Summaries()[0]; s.Tuples != uint64(b.N) || s.Gaps != 0 {
		b.Fatalf("sink %+v", s)
	}
	src.Shutdown(time.Second)
	sink.Shutdown(time.Second)
}

// Fan-in and fan-out across PEs: two sources into a union (two PE input
// ports), a round-robin split into two sinks. Each sink sees both origins
// without gaps, since the split accounts for the tuples it sent elsewhere.
func TestUnionSplitAcrossPEs(t *testing.T) {
	const n = 4000
	ep := func(op string, port int32) v1alpha1.Endpoint { return v1alpha1.Endpoint{Operator: op, Port: port} }
	spec := &v1alpha1.JobSpec{Application: v1alpha1.Application{
		Operators: []v1alpha1.Operator{
			{Name: "a", Kind: "source", Params: &v1alpha1.OperatorParams{Count: i64(n)}},
			{Name: "b", Kind: "source", Params: &v1alpha1.OperatorParams{Count: i64(n)}},
			{Name: "u", Kind: "union"},
			{Name: "s", Kind: "split", Params: &v1alpha1.OperatorParams{SplitBy: "roundRobin"}},
			{Name: "k0", Kind: "sink"},
			{Name: "k1", Kind: "sink"},
		},
		Streams: []v1alpha1.Stream{
			{From: ep("a", 0), To: ep("u", 0)}, {From: ep("b", 0), To: ep("u", 1)},
			{From: ep("u", 0), To: ep("s", 0)},
			{From: ep("s", 0), To: ep("k0", 0)}, {From: ep("s", 1), To: ep("k1", 0)},
		},
	}}
	c := startAll(t, spec)
	var sinks []string
	for _, pe := range c.plan.PEs {
		if pe.Config.Operators[0].Kind == "sink" {
			sinks = append(sinks, pe.Name)
		}
		if pe.Config.Operators[0].Name == "u" && len(pe.Config.Inputs) != 2 {
			t.Fatalf("union PE has %d input ports", len(pe.Config.Inputs))
		}
	}
	var total uint64
	var values int64
	for range sinks {
		select {
		case <-c.done:
		case <-time.After(20 * time.Second):
			t.Fatal("sinks did not complete")
		}
	}
	for _, pe := range sinks {
		s := c.engines[pe].Summaries()[0]
		if !s.Complete || s.Gaps != 0 || s.Duplicates != 0 || len(s.Origins) != 2 {
			t.Fatalf("%s: %+v", pe, s)
		}
		total += s.Tuples
		values += s.ValueSum
	}
	// Source values are 1 + seq%10: n/10 rounds of 1..10 per source.
	if total != 2*n || values != 2*(n/10)*55 {
		t.Fatalf("sinks saw %d tuples with value sum %d", total, values)
	}
}

func TestSnapshotRestoreStatefulOperators(t *testing.T) {
	plan, _ := app.Build("test", "job", chain(
		v1alpha1.Operator{Name: "src", Kind: "source", Params: &v1alpha1.OperatorParams{Count: i64(10)}},
		v1alpha1.Operator{Name: "agg", Kind: "aggregate"},
		v1alpha1.Operator{Name: "sink", Kind: "sink"}))
	spec := plan.PEs[1].Config
	e, err := New(Options{PE: &spec, Ports: &plan.PortTable, Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	// Feed the aggregate directly, as its input port would.
	e.Deliver(transport.Link{Port: 0}, []wire.Tuple{{Origin: 1, Seq: 0, Key: 1, Value: 1}, {Origin: 1, Seq: 1, Key: 2, Value: 1}})
	snap, err := e.Snapshot()
	if err != nil || len(snap["agg"]) == 0 || len(snap) != 1 {
		t.Fatalf("snapshot %v, %v", snap, err)
	}
	e2, _ := New(Options{PE: &spec, Ports: &plan.PortTable, Log: quiet})
	if err := e2.Restore(snap); err != nil {
		t.Fatal(err)
	}
	again, _ := e2.Snapshot()
	if string(again["agg"]) != string(snap["agg"]) {
		t.Fatalf("restored state differs:\n%s\n%s", again["agg"], snap["agg"])
	}
	if err := e2.Restore(map[string][]byte{"agg": []byte("{")}); err == nil {
		t.Fatal("corrupt state accepted")
	}
}
