package kubelet

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"sluice.dev/sluice/sim/apiserver"
	"sluice.dev/sluice/sim/clock"
	"sluice.dev/sluice/sim/cluster/paramfile"
	"sluice.dev/sluice/sim/engine"
)

type rig struct {
	e   *engine.Engine
	api *apiserver.Server
	c   client.Client
	k   *Kubelet
	// history of (time, phase, ready) per pod name
	seen map[string][]obs
}

type obs struct {
	at       time.Duration
	typ      watch.EventType
	phase    corev1.PodPhase
	ready    bool
	restarts int32
	waiting  string
	hostIP   string
}

func exactParams() Params {
	p := DefaultParams()
	p.StartJitter = 0
	return p
}

func newRig(t *testing.T, p Params, cpu float64) *rig {
	e := engine.New(1)
	clk := clock.New(e, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	api := apiserver.New(e, clk, clientgoscheme.Scheme, apiserver.DefaultParams())
	r := &rig{e: e, api: api, c: api.Client("test"), seen: map[string][]obs{}}
	r.k = New(api, p, Config{Node: "n1", CPU: cpu, Images: []string{"pe:1"}})
	api.Watch(&corev1.Pod{}, func(ev apiserver.WatchEvent) {
		pod := ev.Object.(*corev1.Pod)
		o := obs{at: e.Now(), typ: ev.Type, phase: pod.Status.Phase, hostIP: pod.Status.HostIP}
		for _, c := range pod.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				o.ready = true
			}
		}
		for _, cs := range pod.Status.ContainerStatuses {
			o.restarts += cs.RestartCount
			if cs.State.Waiting != nil {
				o.waiting = cs.State.Waiting.Reason
			}
		}
		r.seen[pod.Name] = append(r.seen[pod.Name], o)
	})
	return r
}

func pod(name, image string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns"},
		Spec:       corev1.PodSpec{NodeName: "n1", Containers: []corev1.Container{{Name: "pe", Image: image}}},
	}
}

func (r *rig) create(t *testing.T, p *corev1.Pod) {
	t.Helper()
	if err := r.c.Create(context.Background(), p); err != nil {
		t.Fatal(err)
	}
}

// first returns when a pod was first seen satisfying f.
func (r *rig) first(name string, f func(obs) bool) (time.Duration, bool) {
	for _, o := range r.seen[name] {
		if f(o) {
			return o.at, true
		}
	}
	return 0, false
}

func key(name string) types.NamespacedName { return types.NamespacedName{Namespace: "ns", Name: name} }

func TestStartupPhasesAndImagePull(t *testing.T) {
	p := exactParams()
	r := newRig(t, p, 4)
	r.create(t, pod("local", "pe:1"))
	r.create(t, pod("pulled", "big:1"))
	r.k.ImageSize = func(im string) int64 {
		if im == "big:1" {
			return 100_000_000
		}
		return 0
	}
	r.e.RunUntil(time.Minute)
	w := apiserver.DefaultParams().WatchDelay
	// Seen by the kubelet one watch delay after creation, which reports it
	// Pending on its node at once.
	if at, ok := r.first("local", func(o obs) bool { return o.phase == corev1.PodPending && o.hostIP != "" }); !ok || at != 2*w {
		t.Fatalf("Pending at %v (%v)", at, ok)
	}
	running := w + p.VolumeSetup.D() + p.SandboxCreate.D() + p.ContainerStart.D() + w
	if at, _ := r.first("local", func(o obs) bool { return o.phase == corev1.PodRunning }); at != running {
		t.Fatalf("local Running at %v, want %v", at, running)
	}
	// No readiness probe: ready as soon as started.
	if at, _ := r.first("local", func(o obs) bool { return o.ready }); at != running {
		t.Fatalf("local Ready at %v, want %v", at, running)
	}
	pull := p.ImagePullOverhead.D() + 2*time.Second // 100 MB at 50 MB/s
	if at, _ := r.first("pulled", func(o obs) bool { return o.phase == corev1.PodRunning }); at != running+pull {
		t.Fatalf("pulled Running at %v, want %v", at, running+pull)
	}
	if !r.k.HasImage("big:1") {
		t.Fatal("image not kept after pull")
	}
	var got corev1.Pod
	_ = r.c.Get(context.Background(), key("local"), &got)
	if got.Status.PodIP == "" || got.Status.PodIP == "<nil>" || got.Status.ContainerStatuses[0].State.Running == nil {
		t.Fatalf("status %+v", got.Status)
	}
}

func TestReadinessProbeTiming(t *testing.T) {
	p := exactParams()
	r := newRig(t, p, 4)
	connectedAt := 20 * time.Second
	r.k.Ready = func(pod *corev1.Pod, _ string) bool {
		return pod.Name != "late" || r.e.Now() >= connectedAt
	}
	for _, name := range []string{"probe", "twice", "late"} {
		pd := pod(name, "pe:1")
		pd.Spec.Containers[0].ReadinessProbe = &corev1.Probe{InitialDelaySeconds: 5, PeriodSeconds: 2}
		if name == "twice" {
			pd.Spec.Containers[0].ReadinessProbe.SuccessThreshold = 2
		}
		r.create(t, pd)
	}
	r.e.RunUntil(time.Minute)
	w := apiserver.DefaultParams().WatchDelay
	admit := w // the prober worker starts when the kubelet admits the pod
	start := admit + p.VolumeSetup.D() + p.SandboxCreate.D() + p.ContainerStart.D()
	period := 2 * time.Second
	// tick is the first probe at or after t.
	tick := func(t time.Duration) time.Duration {
		k := (t - admit + period - 1) / period
		return admit + k*period
	}
	// Probes tick at admit+2k s; results count once the container is 5 s old.
	first := tick(start + 5*time.Second)
	cases := map[string]time.Duration{
		"probe": first + w,
		"twice": first + period + w, // two successes in a row
		"late":  tick(20*time.Second) + w,
	}
	for name, want := range cases {
		if at, _ := r.first(name, func(o obs) bool { return o.ready }); at != want {
			t.Errorf("%s Ready at %v, want %v", name, at, want)
		}
	}
	if cases["probe"]-start <= 5*time.Second || cases["probe"]-start > 5*time.Second+period+w {
		t.Fatalf("ready %v after start: not within one period after the initial delay", cases["probe"]-start)
	}
	// Three failed probes make a ready container unready.
	brokenAt := r.e.Now() + 10*time.Second + 300*time.Millisecond
	r.k.Ready = func(pod *corev1.Pod, _ string) bool { return r.e.Now() < brokenAt }
	r.e.RunUntil(brokenAt + time.Minute)
	seen := r.seen["probe"]
	var unready time.Duration
	for i := 1; i < len(seen); i++ {
		if seen[i-1].ready && !seen[i].ready {
			unready = seen[i].at
		}
	}
	if want := tick(brokenAt) + 2*period + w; unready != want {
		t.Fatalf("unready at %v, want %v", unready, want)
	}
}

// A held readiness answer (a PE's /readyz?hold=) makes a container ready
// when it connects during the hold, not at the next probe; readiness that
// comes after the hold waits for a later probe as before.
func TestReadinessProbeHold(t *testing.T) {
	p := exactParams()
	r := newRig(t, p, 4)
	// The prober ticks every second from the pod's admission; a tick well
	// after the container started:
	admit := apiserver.DefaultParams().WatchDelay
	tick := admit + 10*time.Second
	connect := map[string]time.Duration{"held": tick + 300*time.Millisecond,
		"unheld": tick + 300*time.Millisecond, "beyond": tick + 900*time.Millisecond}
	r.k.Ready = func(pod *corev1.Pod, _ string) bool { return r.e.Now() >= connect[pod.Name] }
	r.k.ReadyPoll = 20 * time.Millisecond
	r.k.ReadyHold = func(pod *corev1.Pod, _ string) time.Duration {
		if pod.Name == "unheld" {
			return 0
		}
		return 500 * time.Millisecond
	}
	for name := range connect {
		pd := pod(name, "pe:1")
		pd.Spec.Containers[0].ReadinessProbe = &corev1.Probe{PeriodSeconds: 1}
		r.create(t, pd)
	}
	r.e.RunUntil(time.Minute)
	w := apiserver.DefaultParams().WatchDelay
	ready := map[string]time.Duration{}
	for name := range connect {
		at, ok := r.first(name, func(o obs) bool { return o.ready })
		if !ok {
			t.Fatalf("%s never ready", name)
		}
		ready[name] = at - w // when the kubelet wrote it
	}
	// Held: within one poll of connecting.
	if d := ready["held"] - connect["held"]; d < 0 || d > 20*time.Millisecond {
		t.Errorf("held probe: ready %v after connecting, want within one 20ms poll", d)
	}
	// Not held: at the next 1 s tick, 0.7 s after connecting here.
	if d := ready["unheld"] - connect["unheld"]; d != 700*time.Millisecond {
		t.Errorf("unheld probe: ready %v after connecting, want at the next tick", d)
	}
	// Connecting 0.9 s into a period, after the 0.5 s hold: the next tick's
	// probe finds it ready at once.
	if d := ready["beyond"] - connect["beyond"]; d != 100*time.Millisecond {
		t.Errorf("probe after the hold: ready %v after connecting, want at the next tick", d)
	}
}

func TestCrashLoopBackOff(t *testing.T) {
	p := exactParams()
	r := newRig(t, p, 4)
	// The container crashes one second after every start.
	var starts []time.Duration
	r.k.OnRunning = func(pd *corev1.Pod) {
		starts = append(starts, r.e.Now())
		r.e.After(time.Second, func() { r.k.Kill(key(pd.Name), "pe", 1) })
	}
	r.create(t, pod("crash", "pe:1"))
	r.e.RunUntil(20 * time.Minute)
	start := p.ContainerStart.D()
	var gaps []time.Duration
	for i := 1; i < len(starts); i++ {
		// gap between a crash and the next start, minus the runtime's start time
		gaps = append(gaps, starts[i]-(starts[i-1]+time.Second)-start)
	}
	// The first restart follows as soon as the kubelet notices the exit
	// (its next PLEG relist); later ones wait the back-off from the exit.
	want := []time.Duration{0, 10, 20, 40, 80, 160, 300, 300}
	if len(gaps) < len(want) {
		t.Fatalf("gaps %v", gaps)
	}
	if gaps[0] < 0 || gaps[0] >= p.PLEGRelistPeriod.D() {
		t.Fatalf("first restart %v after the crash, want within one PLEG period", gaps[0])
	}
	for i, w := range want[1:] {
		if gaps[i+1] != w*time.Second {
			t.Fatalf("restart delays %v, want %v s", gaps, want)
		}
	}
	if _, ok := r.first("crash", func(o obs) bool { return o.waiting == "CrashLoopBackOff" }); !ok {
		t.Fatal("never reported CrashLoopBackOff")
	}
	if r.k.Restarts(key("crash")) != int32(len(starts)-1) {
		t.Fatalf("restarts %d, starts %d", r.k.Restarts(key("crash")), len(starts))
	}
	// A container that then runs for 10 min is restarted at once after its
	// next crash and the back-off starts again at 10 s.
	r.k.OnRunning = nil
	r.e.RunUntil(r.e.Now() + 5*time.Minute) // let the pending restart happen
	before := len(starts)
	r.k.OnRunning = func(pd *corev1.Pod) { starts = append(starts, r.e.Now()) }
	r.e.RunUntil(r.e.Now() + 11*time.Minute)
	crash := r.e.Now()
	r.k.Kill(key("crash"), "pe", 1)
	r.e.RunUntil(crash + time.Minute)
	if len(starts) != before+1 || starts[before]-crash < start || starts[before]-crash >= start+p.PLEGRelistPeriod.D() {
		t.Fatalf("after a long run: restart at %v, crash at %v", starts[before:], crash)
	}
}

func TestRestartPolicyNever(t *testing.T) {
	r := newRig(t, exactParams(), 4)
	for _, n := range []string{"fails", "succeeds"} {
		pd := pod(n, "pe:1")
		pd.Spec.RestartPolicy = corev1.RestartPolicyNever
		r.create(t, pd)
	}
	r.e.RunUntil(5 * time.Second)
	r.k.Kill(key("fails"), "pe", 2)
	r.k.Kill(key("succeeds"), "pe", 0)
	r.e.RunUntil(10 * time.Second)
	for n, want := range map[string]corev1.PodPhase{"fails": corev1.PodFailed, "succeeds": corev1.PodSucceeded} {
		var got corev1.Pod
		_ = r.c.Get(context.Background(), key(n), &got)
		if got.Status.Phase != want || got.Status.ContainerStatuses[0].RestartCount != 0 {
			t.Errorf("%s: phase %s restarts %d", n, got.Status.Phase, got.Status.ContainerStatuses[0].RestartCount)
		}
	}
}

func TestGracefulTermination(t *testing.T) {
	p := exactParams()
	r := newRig(t, p, 4)
	slow := pod("slow", "pe:1")
	g := int64(2)
	slow.Spec.TerminationGracePeriodSeconds = &g
	r.create(t, pod("quick", "pe:1"))
	r.create(t, slow)
	r.e.RunUntil(5 * time.Second)
	del := r.e.Now()
	for _, n := range []string{"quick", "slow"} {
		var cur corev1.Pod
		_ = r.c.Get(context.Background(), key(n), &cur)
		if err := r.c.Delete(context.Background(), &cur); err != nil {
			t.Fatal(err)
		}
	}
	r.e.RunUntil(del + time.Minute)
	w := apiserver.DefaultParams().WatchDelay
	gone := func(n string) time.Duration {
		at, ok := r.first(n, func(o obs) bool { return o.typ == watch.Deleted })
		if !ok {
			t.Fatalf("%s never deleted", n)
		}
		return at
	}
	// The PE exits on SIGTERM after sigtermExit.
	if want := del + w + p.SigtermExit.D() + p.SandboxStop.D() + w; gone("quick") != want {
		t.Fatalf("quick gone at %v, want %v", gone("quick"), want)
	}
	// A container slower than its grace period is killed at its end.
	r2 := newRig(t, func() Params { q := exactParams(); q.SigtermExit = paramfile.Duration(10 * time.Second); return q }(), 4)
	slow2 := pod("slow", "pe:1")
	slow2.Spec.TerminationGracePeriodSeconds = &g
	r2.create(t, slow2)
	r2.e.RunUntil(5 * time.Second)
	del = r2.e.Now()
	var cur corev1.Pod
	_ = r2.c.Get(context.Background(), key("slow"), &cur)
	_ = r2.c.Delete(context.Background(), &cur)
	r2.e.RunUntil(del + time.Minute)
	at, ok := r2.first("slow", func(o obs) bool { return o.typ == watch.Deleted })
	if want := del + w + 2*time.Second + p.SandboxStop.D() + w; !ok || at != want {
		t.Fatalf("slow gone at %v, want %v", at, want)
	}
	if last := r2.seen["slow"]; last[len(last)-1].phase != corev1.PodFailed {
		t.Fatalf("killed pod's last phase %s, want Failed (exit 137)", last[len(last)-1].phase)
	}
}

func TestCPUSharesProportionalToRequests(t *testing.T) {
	r := newRig(t, exactParams(), 2)
	for name, cpu := range map[string]string{"a": "1000m", "b": "500m", "c": "500m", "d": "1000m"} {
		pd := pod(name, "pe:1")
		pd.Spec.Containers[0].Resources.Requests = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu)}
		r.create(t, pd)
	}
	r.e.RunUntil(5 * time.Second)
	sh := r.k.CPUShares()
	// 3 cores of requests on 2 cores: each gets 2/3 of its request.
	want := map[string]float64{"a": 2.0 / 3, "b": 1.0 / 3, "c": 1.0 / 3, "d": 2.0 / 3}
	for n, w := range want {
		if d := sh[key(n)] - w; d > 1e-9 || d < -1e-9 {
			t.Fatalf("shares %v", sh)
		}
	}
	// A pod that needs little leaves its part to the others.
	r.k.Demand = func(k types.NamespacedName) float64 {
		if k.Name == "d" {
			return 0.1
		}
		return -1
	}
	sh = r.k.CPUShares()
	if d := sh[key("a")] - 0.95; d > 1e-9 || d < -1e-9 {
		t.Fatalf("with d idle: %v", sh)
	}
}

func TestStopAndStartNode(t *testing.T) {
	r := newRig(t, exactParams(), 4)
	r.create(t, pod("p", "pe:1"))
	r.e.RunUntil(5 * time.Second)
	r.k.Stop()
	if r.k.IsRunning(key("p")) {
		t.Fatal("pod runs on a stopped node")
	}
	n := len(r.seen["p"])
	r.e.RunUntil(time.Minute)
	if len(r.seen["p"]) != n {
		t.Fatal("a stopped kubelet wrote status")
	}
	r.k.Start()
	r.e.RunUntil(2 * time.Minute)
	if !r.k.IsRunning(key("p")) || r.k.Restarts(key("p")) != 1 {
		t.Fatalf("after start: running %v restarts %d", r.k.IsRunning(key("p")), r.k.Restarts(key("p")))
	}
}

func TestWaitsForConfigMapVolume(t *testing.T) {
	p := exactParams()
	r := newRig(t, p, 4)
	pd := pod("cfg", "pe:1")
	pd.Spec.Volumes = []corev1.Volume{{Name: "c", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
		LocalObjectReference: corev1.LocalObjectReference{Name: "pe-config"}}}}}
	r.create(t, pd)
	r.e.RunUntil(3 * time.Second)
	if _, ok := r.first("cfg", func(o obs) bool { return o.phase == corev1.PodRunning }); ok {
		t.Fatal("started without its ConfigMap")
	}
	made := r.e.Now()
	if err := r.c.Create(context.Background(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "pe-config", Namespace: "ns"}}); err != nil {
		t.Fatal(err)
	}
	r.e.RunUntil(20 * time.Second)
	at, ok := r.first("cfg", func(o obs) bool { return o.phase == corev1.PodRunning })
	// Mount retries at 0.5, 1.5, 3.5, 7.5 s after the kubelet saw the pod:
	// the first after the ConfigMap exists succeeds.
	w := apiserver.DefaultParams().WatchDelay
	retry := w + 3500*time.Millisecond
	if want := retry + p.VolumeSetup.D() + p.SandboxCreate.D() + p.ContainerStart.D() + w; !ok || at != want {
		t.Fatalf("Running at %v (ConfigMap made at %v), want %v", at, made, want)
	}
}

func TestImagePullsAreSerialized(t *testing.T) {
	p := exactParams()
	r := newRig(t, p, 4)
	r.k.ImageSize = func(string) int64 { return 50_000_000 } // 1 s each at 50 MB/s
	r.create(t, pod("a", "img-a:1"))
	r.create(t, pod("b", "img-b:1"))
	r.e.RunUntil(time.Minute)
	ra, _ := r.first("a", func(o obs) bool { return o.phase == corev1.PodRunning })
	rb, _ := r.first("b", func(o obs) bool { return o.phase == corev1.PodRunning })
	pull := p.ImagePullOverhead.D() + time.Second
	if d := rb - ra; d != pull {
		t.Fatalf("second pod running %v after the first, want one pull (%v) later", d, pull)
	}
}
