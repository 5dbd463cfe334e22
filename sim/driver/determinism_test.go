package driver

import (
	"fmt"
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
