package kindbackend

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"sluice.dev/sluice/experiments/metrics"
	"sluice.dev/sluice/experiments/spec"
	"sluice.dev/sluice/platform/api/v1alpha1"
)

func TestSurplusWorkers(t *testing.T) {
	w := []string{"k-worker", "k-worker2", "k-worker3"}
	for _, tc := range []struct {
		shape spec.Cluster
		want  []string
	}{
		// oversubscription: two 2-CPU workers -> the third is cordoned.
		{spec.Cluster{Nodes: []spec.NodeGroup{{Name: "worker", Count: 2}}}, []string{"k-worker3"}},
		{spec.Cluster{Nodes: []spec.NodeGroup{{Name: "a", Count: 1}, {Name: "b", Count: 1}}}, []string{"k-worker3"}},
		// as many or more nodes than kind has: nothing to cordon.
		{spec.Cluster{Nodes: []spec.NodeGroup{{Name: "worker", Count: 3}}}, nil},
		{spec.Cluster{Nodes: []spec.NodeGroup{{Name: "worker", Count: 4}}}, nil},
		{spec.Cluster{}, nil},
	} {
		if got := surplusWorkers(w, definedNodes(tc.shape)); !slices.Equal(got, tc.want) {
			t.Errorf("%+v: cordon %v, want %v", tc.shape, got, tc.want)
		}
	}
}

func TestHasBaseline(t *testing.T) {
	sub := spec.Scenario{Metrics: []string{metrics.Submission, metrics.PodStartup}}
	over := spec.Scenario{Observe: time.Minute, Metrics: []string{metrics.Throughput, metrics.Submission}}
	rec := spec.Scenario{Faults: []spec.ResolvedFault{{Action: spec.KillContainer}, {Action: spec.StartNode}}}
	gc := spec.Scenario{Faults: []spec.ResolvedFault{{Action: spec.DeleteJob}}, Metrics: []string{metrics.GCJob}}
	for name, tc := range map[string]struct {
		sc   spec.Scenario
		want bool
	}{"submission": {sub, true}, "oversubscription": {over, false}, "recovery": {rec, true}, "gc": {gc, false}} {
		if got := HasBaseline(tc.sc); got != tc.want {
			t.Errorf("%s: HasBaseline = %v, want %v", name, got, tc.want)
		}
	}
}

func node(name, ip, cidr string) corev1.Node {
	return corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.NodeSpec{PodCIDR: cidr},
		Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: ip}, {Type: corev1.NodeInternalIP, Address: "fc00::" + ip[len(ip)-1:]},
			{Type: corev1.NodeHostName, Address: name}}}}
}

func TestPeerDestinations(t *testing.T) {
	nodes := []corev1.Node{
		node("k-control-plane", "172.18.0.2", "10.244.0.0/24"),
		node("k-worker", "172.18.0.3", "10.244.1.0/24"),
		node("k-worker2", "172.18.0.4", "10.244.2.0/24"),
		node("k-worker3", "172.18.0.5", "10.244.3.0/24"),
	}
	got, err := peerDestinations(nodes, []string{"k-worker", "k-worker2", "k-worker3"})
	if err != nil {
		t.Fatal(err)
	}
	// The control plane is never delayed; IPv6 addresses are skipped.
	want := map[string][]string{
		"k-worker":  {"172.18.0.4/32", "10.244.2.0/24", "172.18.0.5/32", "10.244.3.0/24"},
		"k-worker2": {"172.18.0.3/32", "10.244.1.0/24", "172.18.0.5/32", "10.244.3.0/24"},
		"k-worker3": {"172.18.0.3/32", "10.244.1.0/24", "172.18.0.4/32", "10.244.2.0/24"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Error(diff)
	}
	if _, err := peerDestinations(nodes, []string{"k-worker", "k-gone"}); err == nil {
		t.Error("a worker without a Node object was accepted")
	}
}

func TestDelayCommands(t *testing.T) {
	cmds := delayCommands("eth0", 1500*time.Microsecond, []string{"10.244.2.0/24", "172.18.0.4/32"})
	var lines []string
	for _, c := range cmds {
		lines = append(lines, strings.Join(c, " "))
	}
	want := []string{
		"tc qdisc replace dev eth0 root handle 1: htb default 0",
		"tc class add dev eth0 parent 1: classid 1:10 htb rate 10gbit",
		"tc qdisc add dev eth0 parent 1:10 handle 10: netem delay 1500us",
		"tc filter add dev eth0 parent 1: protocol ip prio 1 u32 match ip dst 10.244.2.0/24 flowid 1:10",
		"tc filter add dev eth0 parent 1: protocol ip prio 1 u32 match ip dst 172.18.0.4/32 flowid 1:10",
	}
	if diff := cmp.Diff(want, lines); diff != "" {
		t.Error(diff)
	}
}

func TestNameWithDelay(t *testing.T) {
	if n := (&Backend{}).Name(); n != "kind" {
		t.Errorf("plain backend named %q", n)
	}
	if n := (&Backend{NodeDelay: 2 * time.Millisecond}).Name(); n != "kind-netem2ms" {
		t.Errorf("delayed backend named %q", n)
	}
	if n := (&Backend{Mode: Baseline, NodeDelay: time.Millisecond}).Name(); n != "kind-baseline" {
		t.Errorf("baseline named %q", n)
	}
}

func TestCompletedPod(t *testing.T) {
	mk := func(name, job string, phase corev1.PodPhase) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{v1alpha1.LabelJob: job}}}
		p.Status.Phase = phase
		return p
	}
	pods := []*corev1.Pod{mk("a", "j", corev1.PodRunning), mk("b", "other", corev1.PodSucceeded), mk("c", "j", corev1.PodFailed)}
	if p := completedPod(pods, "j"); p != nil {
		t.Errorf("completedPod = %s; no pod of j succeeded", p.Name)
	}
	pods = append(pods, mk("d", "j", corev1.PodSucceeded))
	if p := completedPod(pods, "j"); p == nil || p.Name != "d" {
		t.Errorf("completedPod = %v, want d", p)
	}
}
