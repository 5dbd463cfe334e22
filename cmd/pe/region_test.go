package main

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"

	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/checkpoint"
	"sluice.dev/sluice/platform/peconfig"
	"sluice.dev/sluice/platform/runtime/regionctl"
)

func TestRegionControlChoice(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	pe := &peconfig.PE{Name: "job-pe-0"}
	if c, err := regionControl(pe, t.TempDir(), "ns", 0, log); c != nil || err != nil {
		t.Fatalf("PE outside a region: %v, %v", c, err)
	}
	pe.Region = &peconfig.Region{Name: "main", Resource: "job-main", Trigger: v1alpha1.TriggerPeriodic}
	dir := t.TempDir()
	c, err := regionControl(pe, dir, "ns", 0, log)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c.(*regionctl.Files); !ok {
		t.Fatalf("with --region-dir: %T", c)
	}
	if err := c.Report(context.Background(), v1alpha1.RegionProgress{Region: "main", Epoch: 3}); err != nil {
		t.Fatal(err)
	}
	if p, err := regionctl.ReadProgressFile(regionctl.ProgressFile(dir, "job-pe-0")); err != nil || p.Epoch != 3 {
		t.Fatalf("progress %+v, %v", p, err)
	}
	// Without a directory it is the in-cluster control, which needs the
	// pod's identity and the in-cluster API configuration.
	t.Setenv("POD_NAME", "")
	if _, err := regionControl(pe, "", "ns", 0, log); err == nil {
		t.Fatal("in-cluster control without POD_NAME accepted")
	}
	t.Setenv("POD_NAME", "job-pe-0-1")
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	if _, err := regionControl(pe, "", "ns", 0, log); err == nil {
		t.Fatal("in-cluster control outside a cluster accepted")
	}
}

func TestOpenStore(t *testing.T) {
	if s, err := openStore(nil); s != nil || err != nil {
		t.Fatalf("no store: %v, %v", s, err)
	}
	dir := filepath.Join(t.TempDir(), "ckpt")
	s, err := openStore(&peconfig.Store{Type: "filesystem", Path: dir})
	if err != nil {
		t.Fatal(err)
	}
	k := checkpoint.Key{Namespace: "ns", Job: "job", Region: "main", PE: "job-pe-0", Seq: 4}
	if err := s.Put(context.Background(), k, []byte("state")); err != nil {
		t.Fatal(err)
	}
	if b, err := s.Get(context.Background(), k); err != nil || string(b) != "state" {
		t.Fatalf("get %q, %v", b, err)
	}
	if _, err := openStore(&peconfig.Store{Type: "tape"}); err == nil {
		t.Fatal("unknown store type accepted")
	}
}
