package params

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type model struct {
	Latency time.Duration `yaml:"latency"`
	QPS     float64       `yaml:"qps"`
	Burst   int           `yaml:"burst"`
}

func TestLoadOverlaysAndRejectsUnknown(t *testing.T) {
	def := []byte("latency: 5ms # comment\nqps: 20\nburst: 30\n")
	dir := t.TempDir()
	over := filepath.Join(dir, "o.yaml")
	os.WriteFile(over, []byte("qps: 50\n"), 0o644)
	var m model
	if err := Load(def, &m, over); err != nil {
		t.Fatal(err)
	}
	if m != (model{Latency: 5 * time.Millisecond, QPS: 50, Burst: 30}) {
		t.Fatalf("got %+v", m)
	}
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("qpss: 50\n"), 0o644)
	if err := Load(def, &m, bad); err == nil || !strings.Contains(err.Error(), "qpss") {
		t.Fatalf("unknown key not rejected: %v", err)
	}
}
