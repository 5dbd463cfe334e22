package main

import (
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/app"
	"sluice.dev/sluice/platform/runtime/engine"
)

func TestImportWatchAndSummary(t *testing.T) {
	spec := &v1alpha1.JobSpec{Application: v1alpha1.Application{
		Operators: []v1alpha1.Operator{
			{Name: "imp", Kind: v1alpha1.KindImport, Params: &v1alpha1.OperatorParams{StreamName: "s"}},
			{Name: "k", Kind: v1alpha1.KindSink},
		},
		Streams: []v1alpha1.Stream{{From: v1alpha1.Endpoint{Operator: "imp"}, To: v1alpha1.Endpoint{Operator: "k"}}},
	}}
	plan, errs := app.Build("ns", "job", spec)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	log := slog.New(slog.DiscardHandler)
	dir := t.TempDir()
	for _, pe := range plan.PEs {
		w, err := importWatch(&pe.Config, dir, "ns", log)
		if err != nil {
			t.Fatal(err)
		}
		if (w != nil) != (len(pe.Config.Imports) > 0) {
			t.Errorf("PE %s with %d imports got watcher %v", pe.Name, len(pe.Config.Imports), w != nil)
		}
		if len(pe.Config.Imports) == 0 {
			continue
		}
		e, err := engine.New(engine.Options{PE: &pe.Config, Ports: &plan.PortTable, ImportWatch: w, Log: log})
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "imports.json")
		if err := writeImportSummary(path, pe.Name, e); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var f importSummaryFile
		if err := json.Unmarshal(b, &f); err != nil {
			t.Fatal(err)
		}
		if f.PE != pe.Name || len(f.Imports) != 1 || f.Imports[0].Import != app.ImportResourceName("job", "imp") {
			t.Errorf("summary %s", b)
		}
	}
}
