package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/app"
	"sluice.dev/sluice/platform/runtime/exchange"
)

// Local mode's broker. Local runs of several Jobs meet in an exchange
// directory (one folder per namespace): each run writes a record per
// Export of its Job, with the loopback address of the exporting port, and
// removes it when it stops; each run with Imports matches them against the
// records there, as the cluster's broker matches Export objects, and writes
// the Import files its PEs watch (--import-dir). A record of a run that
// died without removing it names a process that no longer exists, and is
// ignored.

// ExportRecord is an Export of a local run.
type ExportRecord struct {
	Export v1alpha1.Export `json:"export"`
	Host   string          `json:"host"`
	Port   int32           `json:"port"`
	// PID of the `pe local` process that owns the record.
	PID int `json:"pid"`
}

// DefaultExchangePoll is how often a local run matches its Imports.
const DefaultExchangePoll = 200 * time.Millisecond

func exportRecordFile(dir, resource string) string {
	return filepath.Join(dir, "export-"+resource+".json")
}

// namespaceExchange is the run's folder of the exchange directory.
func (c *Cluster) namespaceExchange() string {
	return filepath.Join(c.cfg.ExchangeDir, c.Plan.PortTable.Namespace)
}

// importDir is where the run writes its Import files.
func (c *Cluster) importDir() string { return filepath.Join(c.cfg.Dir, "imports") }

// publishExports writes a record for each of the Job's Exports.
func (c *Cluster) publishExports() error {
	if len(c.Plan.Exports) == 0 {
		return nil
	}
	dir := c.namespaceExchange()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, ex := range c.Plan.Exports {
		p := c.byName[ex.Spec.PE]
		if p == nil {
			return fmt.Errorf("export %s: no PE %s", ex.Resource, ex.Spec.PE)
		}
		rec := ExportRecord{Host: "127.0.0.1", Port: int32(p.Endpoint.Base) + ex.Spec.Port, PID: os.Getpid(),
			Export: v1alpha1.Export{ObjectMeta: metav1.ObjectMeta{Name: ex.Resource, Namespace: c.Plan.PortTable.Namespace}, Spec: ex.Spec}}
		if err := writeJSONAtomic(exportRecordFile(dir, ex.Resource), rec); err != nil {
			return err
		}
	}
	return nil
}

// withdrawExports removes the run's records (those it still owns).
func (c *Cluster) withdrawExports() {
	for _, ex := range c.Plan.Exports {
		path := exportRecordFile(c.namespaceExchange(), ex.Resource)
		if rec, err := readExportRecord(path); err == nil && rec.PID == os.Getpid() {
			os.Remove(path)
		}
	}
}

func readExportRecord(path string) (*ExportRecord, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var rec ExportRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &rec, nil
}

// liveExports reads the records of runs that are still alive.
func liveExports(dir string) ([]ExportRecord, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []ExportRecord
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "export-") || !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		rec, err := readExportRecord(filepath.Join(dir, e.Name()))
		if err != nil || !alive(rec.PID) {
			continue // being replaced, or left by a run that died
		}
		out = append(out, *rec)
	}
	return out, nil
}

// alive reports whether a process exists (signal 0 checks without sending).
func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// MatchLocal is what the cluster's broker would give an import, from the
// records of live local runs.
func MatchLocal(im *v1alpha1.ImportSpec, records []ExportRecord) []v1alpha1.ImportedStream {
	sub := app.NewSubscriber(im)
	var out []v1alpha1.ImportedStream
	for i := range records {
		r := &records[i]
		if sub.Receives(&r.Export.Spec) {
			out = append(out, v1alpha1.ImportedStream{Export: r.Export.Name, JobName: r.Export.Spec.JobName, Host: r.Host, Port: r.Port})
		}
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Export < out[b].Export })
	return out
}

// matchImports writes every Import file whose matched streams changed;
// last holds what was written before.
func (c *Cluster) matchImports(last map[string][]v1alpha1.ImportedStream) error {
	records, err := liveExports(c.namespaceExchange())
	if err != nil {
		return err
	}
	for _, ip := range c.Plan.Imports {
		streams := MatchLocal(&ip.Spec, records)
		if prev, ok := last[ip.Resource]; ok && slices.Equal(prev, streams) {
			continue
		}
		im := v1alpha1.Import{ObjectMeta: metav1.ObjectMeta{Name: ip.Resource, Namespace: c.Plan.PortTable.Namespace}, Spec: ip.Spec}
		im.Status.Streams = streams
		if err := writeJSONAtomic(exchange.ImportFile(c.importDir(), ip.Resource), im); err != nil {
			return err
		}
		last[ip.Resource] = streams
	}
	return nil
}

// runBroker matches the run's Imports until ctx ends.
func (c *Cluster) runBroker(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	last := map[string][]v1alpha1.ImportedStream{}
	t := time.NewTicker(c.cfg.ExchangePoll)
	defer t.Stop()
	for {
		if err := c.matchImports(last); err != nil && c.cfg.Log != nil {
			fmt.Fprintf(c.cfg.Log, "local broker: %v\n", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// writeJSONAtomic writes through a temporary file and a rename, so that a
// reader polling the file never sees half of it.
func writeJSONAtomic(path string, v any) error {
	tmp := path + ".tmp"
	if err := writeJSON(tmp, v); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
