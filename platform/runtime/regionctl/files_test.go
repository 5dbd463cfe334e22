package regionctl

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"sluice.dev/sluice/platform/api/v1alpha1"
)

func recv(t *testing.T, ch <-chan Command) Command {
	t.Helper()
	select {
	case c, ok := <-ch:
		if !ok {
			t.Fatal("commands channel closed")
		}
		return c
	case <-time.After(5 * time.Second):
		t.Fatal("no command within 5s")
	}
	return Command{}
}

func noCommand(t *testing.T, ch <-chan Command, d time.Duration) {
	t.Helper()
	select {
	case c := <-ch:
		t.Fatalf("unexpected command %+v", c)
	case <-time.After(d):
	}
}

func TestFilesCommandsFollowTheRegionFile(t *testing.T) {
	dir := t.TempDir()
	f := NewFiles(dir, "main", "pe-1", 5*time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()

	// No file yet: nothing to deliver.
	noCommand(t, f.Commands(), 50*time.Millisecond)

	path := RegionFile(dir, "main")
	st := v1alpha1.ConsistentRegionStatus{State: v1alpha1.RegionResetting, Epoch: 1}
	if err := WriteJSONAtomic(path, st); err != nil {
		t.Fatal(err)
	}
	if c := recv(t, f.Commands()); c != (Command{State: v1alpha1.RegionResetting, Epoch: 1}) {
		t.Fatalf("first command %+v", c)
	}
	// A status change that leaves the command alone (the PE list) is not
	// delivered again.
	st.PEs = []v1alpha1.RegionPEStatus{{Name: "pe-1", Epoch: 1}}
	if err := WriteJSONAtomic(path, st); err != nil {
		t.Fatal(err)
	}
	noCommand(t, f.Commands(), 50*time.Millisecond)

	st.State, st.CurrentSeq = v1alpha1.RegionDraining, 3
	if err := WriteJSONAtomic(path, st); err != nil {
		t.Fatal(err)
	}
	if c := recv(t, f.Commands()); c.State != v1alpha1.RegionDraining || c.CurrentSeq != 3 || c.Epoch != 1 {
		t.Fatalf("drain command %+v", c)
	}
	// A garbled file is ignored; the next good write is delivered.
	if err := os.WriteFile(path, []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	noCommand(t, f.Commands(), 30*time.Millisecond)
	st.State, st.LastCompletedSeq = v1alpha1.RegionHealthy, 3
	if err := WriteJSONAtomic(path, st); err != nil {
		t.Fatal(err)
	}
	if c := recv(t, f.Commands()); c.State != v1alpha1.RegionHealthy || c.LastCompletedSeq != 3 {
		t.Fatalf("healthy command %+v", c)
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, ok := <-f.Commands(); ok {
		t.Fatal("commands channel not closed after Run")
	}
}

// A reader that does not keep up gets the latest command, not a backlog.
func TestFilesSlowReaderGetsLatest(t *testing.T) {
	dir := t.TempDir()
	f := NewFiles(dir, "r", "pe", 2*time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go f.Run(ctx)
	path := RegionFile(dir, "r")
	for seq := int64(1); seq <= 5; seq++ {
		if err := WriteJSONAtomic(path, v1alpha1.ConsistentRegionStatus{State: v1alpha1.RegionDraining, Epoch: 1, CurrentSeq: seq}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if c := recv(t, f.Commands()); c.CurrentSeq != 5 {
		t.Fatalf("slow reader got %+v, want seq 5", c)
	}
}

func TestFilesReport(t *testing.T) {
	dir := t.TempDir()
	f := NewFiles(dir, "main", "pe-2", 0)
	path := ProgressFile(dir, "pe-2")
	if _, err := ReadProgressFile(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("progress before any report: %v", err)
	}
	p := v1alpha1.RegionProgress{Region: "main", Epoch: 2, Checkpointed: 7, Bytes: 99}
	if err := f.Report(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	got, err := ReadProgressFile(path)
	if err != nil || *got != p {
		t.Fatalf("progress %+v, %v; want %+v", got, err, p)
	}
	// Unchanged progress is not rewritten: remove the file and report the
	// same again.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := f.Report(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("unchanged report rewrote the file: %v", err)
	}
	p.Checkpointed = 8
	if err := f.Report(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	if got, err := ReadProgressFile(path); err != nil || got.Checkpointed != 8 {
		t.Fatalf("progress %+v, %v", got, err)
	}
	// No temporary files are left behind.
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if e.Name() != filepath.Base(path) {
			t.Fatalf("stray file %s", e.Name())
		}
	}
	// A report into a directory that does not exist fails.
	bad := NewFiles(filepath.Join(dir, "missing"), "main", "pe-2", 0)
	if err := bad.Report(context.Background(), p); err == nil {
		t.Fatal("report into a missing directory succeeded")
	}
}
