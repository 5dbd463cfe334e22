package local

import (
	"fmt"
	"os"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"sluice.dev/sluice/platform/api/v1alpha1"
)

func exportingJob() *v1alpha1.Job {
	j := &v1alpha1.Job{ObjectMeta: metav1.ObjectMeta{Name: "prices", Namespace: "lab"}}
	j.Spec.Application = v1alpha1.Application{
		Operators: []v1alpha1.Operator{
			{Name: "src", Kind: v1alpha1.KindSource, Params: &v1alpha1.OperatorParams{Rate: i64(2000), Count: i64(1 << 40), Keys: i64(8)}},
			{Name: "out", Kind: v1alpha1.KindExport, Params: &v1alpha1.OperatorParams{StreamName: "prices", Properties: map[string]string{"feed": "prices", "tier": "gold"}}},
		},
		Streams: []v1alpha1.Stream{{From: v1alpha1.Endpoint{Operator: "src"}, To: v1alpha1.Endpoint{Operator: "out"}}},
	}
	return j
}

func importingJob() *v1alpha1.Job {
	j := &v1alpha1.Job{ObjectMeta: metav1.ObjectMeta{Name: "watch", Namespace: "lab"}}
	j.Spec.Application = v1alpha1.Application{
		Operators: []v1alpha1.Operator{
			{Name: "in", Kind: v1alpha1.KindImport, Params: &v1alpha1.OperatorParams{Subscription: "feed=prices,tier in (gold,silver)"}},
			{Name: "sink", Kind: v1alpha1.KindSink},
		},
		Streams: []v1alpha1.Stream{{From: v1alpha1.Endpoint{Operator: "in"}, To: v1alpha1.Endpoint{Operator: "sink"}}},
	}
	return j
}

func startRun(t *testing.T, bin, exchange string, job *v1alpha1.Job) *Cluster {
	t.Helper()
	c, err := New(Config{Binary: bin, Dir: t.TempDir(), BasePort: freeBase(t, 8), Job: job, ExchangeDir: exchange,
		ExchangePoll: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Stop(5 * time.Second) })
	return c
}

// sinkTuples is what the importing Job's sink has counted.
func sinkTuples(c *Cluster) (uint64, error) {
	for _, p := range c.PEs {
		if p.Sink {
			s, err := c.Summaries(p.Name)
			if err != nil || len(s) == 0 {
				return 0, fmt.Errorf("summary of %s: %v", p.Name, err)
			}
			return s[0].Tuples, nil
		}
	}
	return 0, fmt.Errorf("no sink")
}

func waitTuplesAbove(t *testing.T, c *Cluster, above uint64, what string) uint64 {
	t.Helper()
	// Generous: PE processes start slowly on a loaded machine.
	deadline := time.Now().Add(90 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		n, err := sinkTuples(c)
		if err == nil && n > above+100 {
			return n
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: the importing sink did not pass %d tuples (%v)", what, above, last)
	return 0
}

// Two local runs meet through the exchange directory: the importer's
// subscription matches the exporter's properties, tuples flow over TCP
// between the two runs' PEs, and when the exporting run stops and another
// starts, the running importer follows without a restart and counts the
// exporter's restart.
func TestLocalBrokerConnectsJobs(t *testing.T) {
	bin := buildPE(t)
	exchange := t.TempDir()
	importer := startRun(t, bin, exchange, importingJob())
	exporter := startRun(t, bin, exchange, exportingJob())

	first := waitTuplesAbove(t, importer, 0, "first exporter")
	if err := exporter.Stop(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(exportRecordFile(exporter.namespaceExchange(), "prices-out")); !os.IsNotExist(err) {
		t.Fatalf("the stopped run's export record is still there (%v)", err)
	}
	time.Sleep(500 * time.Millisecond)
	stalled, err := sinkTuples(importer)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	if n, _ := sinkTuples(importer); n != stalled {
		t.Fatalf("tuples still arrive (%d -> %d) with no exporter", stalled, n)
	}

	startRun(t, bin, exchange, exportingJob())
	after := waitTuplesAbove(t, importer, stalled, "re-created exporter")
	imp := importer.PEs[0].Name
	connects, err := importer.Metric(imp, "sluice_pe_import_connects_total", `export="prices-out"`)
	if err != nil {
		t.Fatal(err)
	}
	restarts, err := importer.Metric(imp, "sluice_pe_import_origin_restarts_total")
	if err != nil {
		t.Fatal(err)
	}
	missing, _ := importer.Metric(imp, "sluice_pe_import_missing_total")
	if connects < 2 || restarts < 1 {
		t.Fatalf("importer: %v connects, %v origin restarts; want a reconnection to a restarted exporter", connects, restarts)
	}
	t.Logf("sink: %d tuples from the first exporter, %d in all; the importer connected %v times, saw %v exporter restart(s), %v tuples missing",
		first, after, connects, restarts, missing)
}

// A record left by a run that died names a dead process: it is not matched.
func TestLocalBrokerIgnoresDeadRuns(t *testing.T) {
	dir := t.TempDir()
	c := &Cluster{cfg: Config{ExchangeDir: dir}}
	c.Plan = nil
	rec := ExportRecord{Host: "127.0.0.1", Port: 1, PID: 1 << 30}
	rec.Export.Name = "gone"
	rec.Export.Spec.StreamName = "prices"
	if err := writeJSONAtomic(exportRecordFile(dir, "gone"), rec); err != nil {
		t.Fatal(err)
	}
	live := rec
	live.Export.Name, live.PID = "here", os.Getpid()
	if err := writeJSONAtomic(exportRecordFile(dir, "here"), live); err != nil {
		t.Fatal(err)
	}
	got, err := liveExports(dir)
	if err != nil {
		t.Fatal(err)
	}
	streams := MatchLocal(&v1alpha1.ImportSpec{StreamName: "prices"}, got)
	if len(streams) != 1 || streams[0].Export != "here" {
		t.Fatalf("matched %+v, want only the live run's export", streams)
	}
}

func TestLocalImportsNeedAnExchange(t *testing.T) {
	_, err := New(Config{Binary: "pe", Dir: t.TempDir(), Job: importingJob()})
	if err == nil {
		t.Fatal("a Job with imports ran without an exchange directory")
	}
}
