package hostcpu

import (
	"math"
	"os"
	"runtime"
	"testing"
	"time"
)

// Between splits a node's CPU into its parts and what they leave, names
// pods through the resolver, and puts the host's rest outside the cluster.
func TestBetween(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a := &Snapshot{At: t0, Load: [3]float64{0.5, 0.4, 0.3}, Host: 100, Self: 1,
		Nodes: map[string]float64{"n1": 10, "n2": 20},
		Parts: map[string]float64{"n1/kubelet": 2, "n1/pod/u1": 3, "n2/pod/u2": 1, "n2/pod/gone": 5}}
	b := &Snapshot{At: t0.Add(10 * time.Second), Load: [3]float64{1.5, 0.6, 0.3}, Host: 120, Self: 2,
		Nodes: map[string]float64{"n1": 16, "n2": 28},
		Parts: map[string]float64{"n1/kubelet": 4, "n1/pod/u1": 5, "n2/pod/u2": 3, "n2/pod/new": 1}}
	u := Between(a, b, func(uid string) string { return map[string]string{"u1": "etcd"}[uid] })
	near := func(got, want float64) bool { return math.Abs(got-want) < 1e-9 }
	if !near(u.Host, 2) || !near(u.Cluster, 1.4) || !near(u.Self, 0.1) || !near(u.Outside, 0.5) {
		t.Fatalf("cores host %v cluster %v self %v outside %v", u.Host, u.Cluster, u.Self, u.Outside)
	}
	want := map[string]float64{"n1/kubelet": 2, "n1/etcd": 2, "n1/other": 2, "n2/pod/u2": 2, "n2/pod/new": 1, "n2/other": 5}
	for k, v := range want {
		if !near(u.CPUSeconds[k], v) {
			t.Errorf("%s: %v, want %v (all %v)", k, u.CPUSeconds[k], v, u.CPUSeconds)
		}
	}
	if len(u.CPUSeconds) != len(want) || u.LoadBefore[0] != 0.5 || u.LoadAfter[0] != 1.5 {
		t.Errorf("usage %+v", u)
	}
	comp := u.Components(func(part string) string {
		if part == "kubelet" || part == "etcd" {
			return part
		}
		return "rest"
	})
	if !near(comp["kubelet"], 2) || !near(comp["etcd"], 2) || !near(comp["rest"], 10) {
		t.Errorf("components %v", comp)
	}
}

// Real counters: a busy loop shows in this process's CPU and the host's.
func TestTakeSeesThisProcess(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("Linux only")
	}
	dir, err := cgroupDir(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cgroupCPU(dir); err != nil {
		t.Logf("no CPU accounting readable in %s: %v", dir, err)
	}
	a, err := Take(nil)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(300 * time.Millisecond)
	x := 1.0
	for time.Now().Before(deadline) {
		x = math.Sqrt(x + 1)
	}
	b, err := Take(nil)
	if err != nil {
		t.Fatal(err)
	}
	u := Between(a, b, nil)
	if b.Self-a.Self < 0.1 || b.Host-a.Host < b.Self-a.Self-0.05 || u.Cluster != 0 || x == 0 {
		t.Errorf("self %.2f s, host %.2f s over a 0.3 s busy loop", b.Self-a.Self, b.Host-a.Host)
	}
	if b.Load[0] < 0 || u.Wall <= 0 {
		t.Errorf("load %v wall %v", b.Load, u.Wall)
	}
}
