package checkpoint_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"sluice.dev/sluice/platform/checkpoint"
	"sluice.dev/sluice/platform/checkpoint/storetest"
)

func openFS(t *testing.T, dir, prefix string) checkpoint.Store {
	t.Helper()
	s, err := checkpoint.Open(checkpoint.Config{Type: "filesystem", Path: dir, Prefix: prefix})
	if err != nil {
		t.Fatalf("Open filesystem store: %v", err)
	}
	return s
}

func fsFile(t *testing.T, root string, k checkpoint.Key) string {
	t.Helper()
	name, err := checkpoint.ObjectName(k)
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, filepath.FromSlash(name))
}

func TestFilesystemConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Instance {
		root := t.TempDir()
		return storetest.Instance{
			Store: openFS(t, root, ""),
			ReadRaw: func(t *testing.T, k checkpoint.Key) []byte {
				b, err := os.ReadFile(fsFile(t, root, k))
				if err != nil {
					t.Fatal(err)
				}
				return b
			},
			WriteRaw: func(t *testing.T, k checkpoint.Key, raw []byte) {
				if err := os.WriteFile(fsFile(t, root, k), raw, 0o644); err != nil {
					t.Fatal(err)
				}
			},
		}
	})
}

func TestFilesystemLayout(t *testing.T) {
	root := t.TempDir()
	s := openFS(t, root, "/team/ckpt/")
	k := checkpoint.Key{Namespace: "ns", Job: "wordcount", Region: "main", PE: "wordcount-pe-3", Seq: 42}
	if err := s.Put(context.Background(), k, []byte("state")); err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(root, "team", "ckpt", "ns", "wordcount", "main", "wordcount-pe-3", "00000000000000000042.ckpt")
	if _, err := os.Stat(want); err != nil {
		t.Fatalf("expected object at %s: %v", want, err)
	}
	// Nothing else was left behind (no temporary files).
	entries, err := os.ReadDir(filepath.Dir(want))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Fatalf("directory holds %v, want only the object", names)
	}
}

// A file truncated on disk (a torn write by something other than Put, or a
// damaged disk) is reported as corrupt.
func TestFilesystemTruncatedFile(t *testing.T) {
	root := t.TempDir()
	s := openFS(t, root, "")
	k := checkpoint.Key{Namespace: "ns", Job: "j", Region: "r", PE: "p", Seq: 1}
	if err := s.Put(context.Background(), k, []byte(strings.Repeat("state ", 100))); err != nil {
		t.Fatal(err)
	}
	file := fsFile(t, root, k)
	if err := os.Truncate(file, 300); err != nil {
		t.Fatal(err)
	}
	_, err := s.Get(context.Background(), k)
	if !errors.Is(err, checkpoint.ErrCorrupt) {
		t.Fatalf("Get of a truncated file: err = %v, want ErrCorrupt", err)
	}
	if !strings.Contains(err.Error(), file) || !strings.Contains(err.Error(), "truncated") {
		t.Errorf("error %q should name the file and say truncated", err)
	}
}

// Seqs ignores what Put leaves behind when it is killed before its rename
// (hidden temporary files) and anything else that is not an object.
func TestFilesystemSeqsIgnoresStrangers(t *testing.T) {
	root := t.TempDir()
	s := openFS(t, root, "")
	k := checkpoint.Key{Namespace: "ns", Job: "j", Region: "r", PE: "p", Seq: 5}
	if err := s.Put(context.Background(), k, []byte("x")); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(fsFile(t, root, k))
	for _, name := range []string{".00000000000000000006.ckpt.tmp-123", "notes.txt", "7.ckpt", "0000000000000000000x.ckpt"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("junk"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "00000000000000000008.ckpt"), 0o755); err != nil {
		t.Fatal(err)
	}
	seqs, err := s.Seqs(context.Background(), "ns", "j", "r", "p")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(seqs, []uint64{5}) {
		t.Fatalf("Seqs = %v, want [5]", seqs)
	}
}

// A Put that fails leaves no temporary file.
func TestFilesystemFailedPutCleansUp(t *testing.T) {
	root := t.TempDir()
	s := openFS(t, root, "")
	k := checkpoint.Key{Namespace: "ns", Job: "j", Region: "r", PE: "p", Seq: 1}
	if err := s.Put(context.Background(), k, []byte("x")); err != nil {
		t.Fatal(err)
	}
	// A directory where the object should be makes the rename fail.
	k2 := k
	k2.Seq = 2
	if err := os.Mkdir(fsFile(t, root, k2), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(fsFile(t, root, k2), "x"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(context.Background(), k2, []byte("y")); err == nil {
		t.Fatal("Put over a non-empty directory succeeded")
	}
	entries, err := os.ReadDir(filepath.Dir(fsFile(t, root, k)))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("temporary file %s left behind", e.Name())
		}
	}
}

func TestFilesystemPathIsAFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "plain")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := checkpoint.Open(checkpoint.Config{Type: "filesystem", Path: file}); err == nil {
		t.Fatal("Open with a path that is a regular file succeeded")
	}
}
