package kindbackend

import (
	"context"
	"fmt"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"sluice.dev/sluice/experiments/hostcpu"
	"sluice.dev/sluice/experiments/results"
	"sluice.dev/sluice/kindconfig"
)

// A kind cluster shares its host's cores with whatever else the host runs,
// so a measurement is trusted only on a quiet host. Quiet means: over a
// probe of QuietProbe, the host's CPU outside the cluster's node
// containers (and outside this harness) averages at most QuietOutside
// cores, and the 1-minute load average is at most twice the host's core
// count plus one (a build that just ended still holds the load up; an idle
// kind cluster keeps it near 1-3 on two cores, from its many short
// wake-ups, so the CPU outside the cluster is the test that matters).
// A trial during which the CPU outside the cluster averaged more than
// NoisyOutside cores gets the flag "noisy" on its rows. Running the
// cluster itself costs some CPU outside its containers (dockerd, the
// nodes' shims, the kernel's softirq for the packets between nodes): 0.1
// cores during an 8-PE submission on 2 cores, 0 when idle; other work
// such as a build costs a core or more.
const (
	QuietProbe       = 5 * time.Second
	QuietOutside     = 0.25
	QuietLoadPerCore = 2
	NoisyOutside     = 0.35
)

// hostProbe reads the CPU of the host and of the cluster's nodes.
type hostProbe struct {
	nodes []hostcpu.Node
}

// newHostProbe finds the node containers' processes; nil (no accounting)
// off Linux or when docker cannot say.
func newHostProbe(ctx context.Context, c *kindconfig.Cluster) (*hostProbe, error) {
	if runtime.GOOS != "linux" {
		return nil, nil
	}
	names, err := c.NodeContainers()
	if err != nil {
		return nil, err
	}
	p := &hostProbe{}
	for _, n := range names {
		out, err := exec.CommandContext(ctx, "docker", "inspect", "-f", "{{.State.Pid}}", n).Output()
		if err != nil {
			return nil, fmt.Errorf("docker inspect %s: %w", n, err)
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(out)))
		if err != nil || pid == 0 {
			return nil, fmt.Errorf("node container %s has no process (pid %q)", n, out)
		}
		p.nodes = append(p.nodes, hostcpu.Node{Name: n, PID: pid})
	}
	if _, err := hostcpu.Take(p.nodes); err != nil {
		return nil, err
	}
	return p, nil
}

// refresh re-reads the node containers' processes (a stopped and started
// node has a new one).
func (p *hostProbe) refresh(ctx context.Context, c *kindconfig.Cluster) {
	if q, err := newHostProbe(ctx, c); err == nil && q != nil {
		p.nodes = q.nodes
	}
}

func (p *hostProbe) take() (*hostcpu.Snapshot, error) { return hostcpu.Take(p.nodes) }

// quiet measures the host for QuietProbe and says whether it is quiet.
func (p *hostProbe) quiet(ctx context.Context) (hostcpu.Usage, bool, error) {
	a, err := p.take()
	if err != nil {
		return hostcpu.Usage{}, false, err
	}
	select {
	case <-ctx.Done():
		return hostcpu.Usage{}, false, ctx.Err()
	case <-time.After(QuietProbe):
	}
	b, err := p.take()
	if err != nil {
		return hostcpu.Usage{}, false, err
	}
	u := hostcpu.Between(a, b, nil)
	u.CPUSeconds = nil
	cores := float64(runtime.NumCPU())
	return u, u.Outside <= QuietOutside && u.LoadAfter[0] <= QuietLoadPerCore*cores+1, nil
}

// WaitQuiet waits up to maxWait for a quiet host, reporting on log. It
// returns the last probe and whether it was quiet.
func (b *Backend) WaitQuiet(ctx context.Context, maxWait time.Duration) (hostcpu.Usage, bool, error) {
	if b.host == nil {
		return hostcpu.Usage{}, false, fmt.Errorf("no host CPU accounting here (Linux with docker only)")
	}
	deadline := time.Now().Add(maxWait)
	for {
		u, ok, err := b.host.quiet(ctx)
		if err != nil || ok {
			return u, ok, err
		}
		if time.Now().After(deadline) {
			return u, false, nil
		}
		b.logf("waiting for a quiet host: %.2f cores busy outside the cluster (at most %.2f), load %.2f (at most %d)",
			u.Outside, QuietOutside, u.LoadAfter[0], QuietLoadPerCore*runtime.NumCPU()+1)
	}
}

// trialInfo turns two snapshots into the trial's conditions, naming each
// pod's CPU by its component (kube-apiserver, etcd, coredns, ...).
func (b *Backend) trialInfo(ctx context.Context, a, z *hostcpu.Snapshot, ns string) *results.TrialInfo {
	names := b.podComponents(ctx, ns)
	u := hostcpu.Between(a, z, func(uid string) string { return names[uid] })
	info := &results.TrialInfo{Host: &u}
	if b.Forced {
		info.Flags = append(info.Flags, results.FlagForced)
	}
	if u.Outside > NoisyOutside {
		info.Flags = append(info.Flags, results.FlagNoisy)
	}
	return info
}

// podComponents names pods by UID (and static pods by their config
// hash, the UID of their cgroup): the control plane's components by name,
// the trial's pods as "workload".
func (b *Backend) podComponents(ctx context.Context, ns string) map[string]string {
	out := map[string]string{}
	var pods corev1.PodList
	if err := b.Cluster.Client.List(ctx, &pods); err != nil {
		return out
	}
	for _, p := range pods.Items {
		name := Component(p.Namespace, p.Name)
		if p.Namespace == ns {
			name = "workload"
		}
		out[string(p.UID)] = name
		if h := p.Annotations["kubernetes.io/config.mirror"]; h != "" {
			out[h] = name
		}
	}
	return out
}

// Component is the component a pod belongs to: the name of a control
// plane pod without its node or hash suffix, "sluice-operator", or the
// namespace/name of any other.
func Component(ns, name string) string {
	switch ns {
	case "kube-system":
		for _, c := range []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd", "coredns", "kube-proxy", "simplenet", "kindnet"} {
			if strings.HasPrefix(name, c) {
				return c
			}
		}
	case kindconfig.OperatorNamespace:
		return "sluice-operator"
	case "local-path-storage":
		return "local-path-provisioner"
	}
	return ns + "/" + name
}

// ClusterInfo is the cluster's identity for the metadata.
func (b *Backend) ClusterInfo(ctx context.Context) *results.ClusterInfo {
	ci := &results.ClusterInfo{Provider: "kind", Name: b.Cluster.Name, HostCores: runtime.NumCPU()}
	if names, err := b.Cluster.NodeContainers(); err == nil && len(names) > 0 {
		if out, err := exec.CommandContext(ctx, "docker", "inspect", "-f", "{{.Config.Image}}", names[0]).Output(); err == nil {
			ci.NodeImage = strings.TrimSpace(string(out))
		}
	}
	var nodes corev1.NodeList
	if err := b.Cluster.Client.List(ctx, &nodes); err == nil {
		for _, n := range nodes.Items {
			role := "worker"
			if _, ok := n.Labels["node-role.kubernetes.io/control-plane"]; ok {
				role = "control-plane"
			}
			c := n.Status.Capacity
			ci.Nodes = append(ci.Nodes, results.NodeInfo{Name: n.Name, Role: role, CPU: c.Cpu().String(),
				Memory: c.Memory().String(), Pods: c.Pods().String(), Kubelet: n.Status.NodeInfo.KubeletVersion,
				Runtime: n.Status.NodeInfo.ContainerRuntimeVersion, Provider: n.Spec.ProviderID})
			ci.KubernetesVersion = n.Status.NodeInfo.KubeletVersion
		}
	}
	return ci
}

// Describe puts the cluster, the host's quiet test and the forcing into a
// run's metadata.
func (b *Backend) Describe(md *results.Metadata) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	md.Cluster = b.ClusterInfo(ctx)
	md.Forced = b.Forced
	if b.Quiet != nil {
		q := *b.Quiet
		md.Quiet = &q
	}
}

var _ client.Object = (*corev1.Pod)(nil)
