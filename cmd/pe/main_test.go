package main

import (
	"os"
	"path/filepath"
	"testing"
)

func TestResolver(t *testing.T) {
	r, err := resolver("service", "streams")
	if err != nil {
		t.Fatal(err)
	}
	if got := r("job-pe-2", 3); got != "job-pe-2.streams.svc:10003" {
		t.Fatalf("service resolve = %q", got)
	}
	r, err = resolver("local:job-pe-0=20000,job-pe-1=20010", "")
	if err != nil {
		t.Fatal(err)
	}
	if got := r("job-pe-1", 2); got != "127.0.0.1:20012" {
		t.Fatalf("inline local resolve = %q", got)
	}
	f := filepath.Join(t.TempDir(), "resolve.json")
	os.WriteFile(f, []byte(`{"pes":{"a":{"base":30000,"health":"127.0.0.1:1"}}}`), 0o644)
	r, err = resolver("local:"+f, "")
	if err != nil {
		t.Fatal(err)
	}
	if got := r("a", 1); got != "127.0.0.1:30001" {
		t.Fatalf("file local resolve = %q", got)
	}
	for _, bad := range []string{"dns", "local:a=x", "local:/nonexistent.json"} {
		if _, err := resolver(bad, ""); err == nil {
			t.Errorf("resolver(%q) accepted", bad)
		}
	}
}
