package driver

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1alpha1 "sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/wiring"
	"sluice.dev/sluice/sim/apiserver"
	"sluice.dev/sluice/sim/clock"
	"sluice.dev/sluice/sim/engine"
)

// trace runs jobSummary over 20 Jobs with the default (jittered) parameters,
// 3 workers, rate limiting and a crash/restart in the middle, and returns
// the reconcile trace.
func trace(seed uint64) string {
	e := engine.New(seed)
	srv := apiserver.New(e, clock.New(e, time.Unix(0, 0)), testScheme(), apiserver.DefaultParams())
	kc := srv.Client("kubectl")
	m := New(srv, Options{Name: "op"})
	var b strings.Builder
	m.OnReconcile = func(r Record) {
		fmt.Fprintf(&b, "%s %s %v-%v n=%d err=%v\n", r.Controller, r.Request.Name, r.Start, r.End, r.Requests, r.Err != nil)
	}
	m.Build(func(d wiring.Deps) []wiring.Controller {
		return []wiring.Controller{{Name: "js", For: &v1alpha1.Job{}, Workers: 3,
			Watches:    []wiring.Watch{{Object: &corev1.ConfigMap{}, Map: wiring.ByLabel(v1alpha1.LabelJob)}},
			Reconciler: &jobSummary{c: d.Client}}}
	})
	m.Start()
	for i := 0; i < 20; i++ {
		i := i
		e.After(time.Duration(e.Rand().IntN(500))*time.Millisecond, func() {
			j := &v1alpha1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: fmt.Sprint("j", i)}}
			j.Spec.Application.Operators = []v1alpha1.Operator{{Name: "a", Kind: "source"}}
			kc.Create(ctx, j)
		})
	}
	e.At(300*time.Millisecond, m.Stop)
	e.At(400*time.Millisecond, m.Start)
	e.RunUntil(10 * time.Second)
	return b.String()
}

func TestDriverDeterministic(t *testing.T) {
	a, b := trace(11), trace(11)
	if a != b {
		t.Fatal("same seed, different traces")
	}
	if strings.Count(a, "\n") < 40 {
		t.Fatalf("trace too short to mean anything:\n%s", a)
	}
	if a == trace(12) {
		t.Fatal("different seeds, same trace")
	}
}

var update = flag.Bool("update", false, "rewrite golden files in testdata")

// TestGoldenTrace pins the reconcile trace of a fixed seed: any change to
// the timing model shows up as a diff here (rerun with -update after an
// intended change and review the diff).
func TestGoldenTrace(t *testing.T) {
	got := trace(7)
	path := filepath.Join("testdata", "trace-seed7.golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		gl, wl := strings.Split(got, "\n"), strings.Split(string(want), "\n")
		for i := 0; i < len(gl) && i < len(wl); i++ {
			if gl[i] != wl[i] {
				t.Fatalf("trace differs from %s at line %d:\n got %s\nwant %s", path, i+1, gl[i], wl[i])
			}
		}
		t.Fatalf("trace differs from %s in length: %d vs %d lines", path, len(gl), len(wl))
	}
}
