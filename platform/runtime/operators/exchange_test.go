package operators_test

import (
	"context"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/app"
	"sluice.dev/sluice/platform/runtime/engine"
	"sluice.dev/sluice/platform/runtime/exchange"
	"sluice.dev/sluice/platform/runtime/local"
	"sluice.dev/sluice/platform/runtime/operators"
	"sluice.dev/sluice/platform/runtime/regionctl"
	"sluice.dev/sluice/platform/runtime/wire"
)

// End-to-end tests of export and import: exporting and importing engines
// in this process, over loopback TCP, the importer following a local-mode
// Import file.

// Errors only (shown when a test fails).
var quietLog = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))

func p64(v int64) *int64 { return &v }

// freeBase finds a port with the next three free too (a PE listens on
// base+i).
func freeBase(t *testing.T) int {
	t.Helper()
	base, err := local.FreeBase(4, nil)
	if err != nil {
		t.Fatal(err)
	}
	return base
}

// runPlan starts every PE of a plan in this process; stop shuts them
// all down (also done at cleanup).
func runPlan(t *testing.T, plan *app.Plan, epoch uint32, watch exchange.WatchFunc) (map[string]*engine.Engine, map[string]int, func()) {
	t.Helper()
	bases := map[string]int{}
	for _, pe := range plan.PEs {
		bases[pe.Name] = freeBase(t)
	}
	resolve := func(pe string, port int32) string {
		return net.JoinHostPort("127.0.0.1", strconv.Itoa(bases[pe]+int(port)))
	}
	engines := map[string]*engine.Engine{}
	for i := range plan.PEs {
		pe := &plan.PEs[i]
		e, err := engine.New(engine.Options{PE: &pe.Config, Ports: &plan.PortTable, ListenHost: "127.0.0.1",
			ListenBase: bases[pe.Name], Resolve: resolve, Epoch: epoch, Log: quietLog, ImportWatch: watch})
		if err != nil {
			t.Fatal(err)
		}
		if err := e.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		engines[pe.Name] = e
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			for _, e := range engines {
				e.Shutdown(2 * time.Second)
			}
		})
	}
	t.Cleanup(stop)
	return engines, bases, stop
}

// exporter is one running exporting Job: source -> export.
type exporter struct {
	job, src string
	stop     func()
	exp      *operators.Export
	stream   v1alpha1.ImportedStream
}

func startExporter(t *testing.T, job, src string, epoch uint32, rate int64) *exporter {
	t.Helper()
	spec := &v1alpha1.JobSpec{Application: v1alpha1.Application{
		Operators: []v1alpha1.Operator{
			{Name: src, Kind: v1alpha1.KindSource, Params: &v1alpha1.OperatorParams{Rate: p64(rate), Keys: p64(64)}},
			{Name: "ex", Kind: v1alpha1.KindExport, Params: &v1alpha1.OperatorParams{StreamName: "trades"}},
		},
		Streams: []v1alpha1.Stream{{From: v1alpha1.Endpoint{Operator: src}, To: v1alpha1.Endpoint{Operator: "ex"}}},
	}}
	plan, errs := app.Build("test", job, spec)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	engines, bases, stop := runPlan(t, plan, epoch, nil)
	for _, pe := range plan.PEs {
		if len(pe.Config.Exports) == 1 {
			port := bases[pe.Name] + int(pe.Config.Exports[0].Port)
			return &exporter{job: job, src: src, stop: stop, exp: engines[pe.Name].Exports()[0], stream: v1alpha1.ImportedStream{
				Export: app.ExportResourceName(job, "ex"), JobName: job, Host: "127.0.0.1", Port: int32(port)}}
		}
	}
	t.Fatalf("no PE with the export: %+v", plan.PEs)
	return nil
}

type importer struct {
	imp  *operators.Import
	sink *operators.Sink
	file string
}

// startImporter runs import -> sink, the import following dir's file.
func startImporter(t *testing.T, dir string, filter *v1alpha1.ImportFilter) *importer {
	t.Helper()
	spec := &v1alpha1.JobSpec{Application: v1alpha1.Application{
		Operators: []v1alpha1.Operator{
			{Name: "imp", Kind: v1alpha1.KindImport, Params: &v1alpha1.OperatorParams{StreamName: "trades", Filter: filter}},
			{Name: "k", Kind: v1alpha1.KindSink},
		},
		Streams: []v1alpha1.Stream{{From: v1alpha1.Endpoint{Operator: "imp"}, To: v1alpha1.Endpoint{Operator: "k"}}},
	}}
	plan, errs := app.Build("test", "consumer", spec)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	engines, _, _ := runPlan(t, plan, 1, exchange.Files{Dir: dir, Every: 10 * time.Millisecond}.For)
	im := &importer{}
	for _, pe := range plan.PEs {
		e := engines[pe.Name]
		if len(pe.Config.Imports) == 1 {
			im.imp, im.file = e.Imports()[0], exchange.ImportFile(dir, pe.Config.Imports[0].Resource)
		}
		if len(e.Sinks()) == 1 {
			im.sink = e.Sinks()[0]
		}
	}
	if im.imp == nil || im.sink == nil {
		t.Fatalf("no import or no sink: %+v", plan.PEs)
	}
	return im
}

// list writes the Import status the broker would write.
func (im *importer) list(t *testing.T, exps ...*exporter) {
	t.Helper()
	var obj v1alpha1.Import
	for _, x := range exps {
		obj.Status.Streams = append(obj.Status.Streams, x.stream)
	}
	if err := regionctl.WriteJSONAtomic(im.file, &obj); err != nil {
		t.Fatal(err)
	}
}

func waitUntil(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// settle waits until the import has received nothing new for a while.
func (im *importer) settle(t *testing.T) operators.ImportSummary {
	t.Helper()
	last := im.imp.Summary()
	for stable := 0; stable < 10; {
		time.Sleep(30 * time.Millisecond)
		s := im.imp.Summary()
		if s.Received == last.Received && im.sink.Summary().Tuples == s.Emitted {
			stable++
		} else {
			stable = 0
		}
		last = s
	}
	return last
}

// expected gives the tuples a source named src emits at sequence numbers
// [from, to), as the sink digests them.
func expectedDigest(src string, rate int64, from, to uint64, keep func(key uint64) bool) (n uint64, digest uint64) {
	s := operators.NewSource(src, &v1alpha1.OperatorParams{Rate: p64(rate), Keys: p64(64)}, operators.Env{})
	var tu wire.Tuple
	for seq := from; seq < to; seq++ {
		s.Tuple(seq, 0, &tu)
		if keep(tu.Key) {
			n++
			digest += operators.TupleDigest(&tu)
		}
	}
	return n, digest
}

func TestImportReceivesFilteredExport(t *testing.T) {
	a := startExporter(t, "producer", "src-a", 1, 20000)
	im := startImporter(t, t.TempDir(), &v1alpha1.ImportFilter{KeyModulo: 4, KeyRemainders: []int64{1, 3}})
	im.list(t, a)
	waitUntil(t, "tuples through the import", func() bool { return im.sink.Summary().Tuples >= 2000 })
	if n := a.exp.Subscribers(); n != 1 {
		t.Errorf("export has %d subscribers, want 1", n)
	}
	a.stop()
	s := im.settle(t)
	k := im.sink.Summary()
	if len(s.Streams) != 1 || len(s.Streams[0].Origins) != 1 {
		t.Fatalf("summary %+v", s)
	}
	o := s.Streams[0].Origins[0]
	if s.Missing != 0 || s.Duplicates != 0 || s.Restarts != 0 {
		t.Errorf("a clean stream counted missing %d, duplicates %d, restarts %d", s.Missing, s.Duplicates, s.Restarts)
	}
	// The import joined at some sequence and then received every tuple:
	// [Next-Tuples, Next) of the source.
	from := o.Next - o.Tuples
	keep := func(key uint64) bool { return key%4 == 1 || key%4 == 3 }
	n, digest := expectedDigest("src-a", 20000, from, o.Next, keep)
	if s.Received != o.Tuples || s.Emitted != n || s.Filtered != o.Tuples-n {
		t.Errorf("received %d emitted %d filtered %d; the source's [%d,%d) has %d tuples of kept keys",
			s.Received, s.Emitted, s.Filtered, from, o.Next, n)
	}
	if k.Tuples != n || k.Digest != digest {
		t.Errorf("sink saw %d tuples digest %x, want exactly the kept keys of [%d,%d): %d tuples digest %x",
			k.Tuples, k.Digest, from, o.Next, n, digest)
	}
	// The join and the filtered keys are skips, not gaps, for the sink.
	// (Filtered tuples after the last kept one are owed to a next tuple
	// that never came.)
	if len(k.Origins) != 1 || k.Gaps != 0 || k.Skipped != k.Origins[0].Next-n {
		t.Errorf("sink gaps %d skipped %d, want 0 and all but the %d kept: %+v", k.Gaps, k.Skipped, n, k.Origins)
	}
}

func TestImportFollowsRestartedExporter(t *testing.T) {
	dir := t.TempDir()
	a1 := startExporter(t, "producer", "src-a", 1, 5000)
	im := startImporter(t, dir, nil)
	im.list(t, a1)
	waitUntil(t, "tuples of the first exporter", func() bool { return im.sink.Summary().Tuples >= 500 })
	// The exporting Job is deleted: the broker unlists it.
	a1.stop()
	im.list(t)
	before := im.settle(t)
	if before.Missing != 0 || before.Restarts != 0 {
		t.Fatalf("before the restart: %+v", before)
	}
	waitUntil(t, "the import to disconnect", func() bool { return len(im.imp.Links()) == 0 })
	// Re-created: a new process (epoch 2) elsewhere, emitting before the
	// broker lists it again.
	a2 := startExporter(t, "producer", "src-a", 2, 5000)
	time.Sleep(300 * time.Millisecond)
	im.list(t, a2)
	waitUntil(t, "tuples of the second exporter", func() bool {
		s := im.imp.Summary()
		return s.Restarts == 1 && s.Received >= before.Received+500
	})
	a2.stop()
	after := im.settle(t)
	o := after.Streams[0].Origins[0]
	if o.Epoch != 2 || after.Restarts != 1 {
		t.Fatalf("after the restart: %+v", after)
	}
	// Epoch 2 ran [0, Next); the import received after.Received-before.Received of it.
	got := after.Received - before.Received
	if after.Missing == 0 || after.Missing != o.Next-got {
		t.Errorf("missing %d, want the %d tuples of epoch 2 the import never received (next %d, received %d)",
			after.Missing, o.Next-got, o.Next, got)
	}
	k := im.sink.Summary()
	if k.Gaps != after.Missing || k.Restarts != 1 {
		t.Errorf("sink gaps %d restarts %d, want the import's %d and 1", k.Gaps, k.Restarts, after.Missing)
	}
	if after.Streams[0].Connects < 1 || !after.Streams[0].Listed {
		t.Errorf("stream state %+v", after.Streams[0])
	}
}

func TestImportFromTwoExporters(t *testing.T) {
	a := startExporter(t, "producer-a", "src-a", 1, 5000)
	b := startExporter(t, "producer-b", "src-b", 1, 5000)
	im := startImporter(t, t.TempDir(), nil)
	im.list(t, a, b)
	waitUntil(t, "tuples of both exporters", func() bool {
		s := im.imp.Summary()
		return len(s.Streams) == 2 && s.Streams[0].Tuples >= 300 && s.Streams[1].Tuples >= 300
	})
	a.stop()
	b.stop()
	s := im.settle(t)
	for i, want := range []string{"producer-a-ex", "producer-b-ex"} {
		st := s.Streams[i]
		if st.Export != want || len(st.Origins) != 1 || st.Origins[0].ID != operators.OriginID("src-"+want[9:10]) {
			t.Errorf("stream %d: %+v", i, st)
		}
	}
	k := im.sink.Summary()
	if len(k.Origins) != 2 || k.Tuples != s.Received || k.Gaps != 0 || s.Missing != 0 {
		t.Errorf("sink %d tuples from %d origins (gaps %d), import received %d (missing %d)",
			k.Tuples, len(k.Origins), k.Gaps, s.Received, s.Missing)
	}
}
