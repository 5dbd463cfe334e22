package kindbackend

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// nodeDev is the kind node container's interface on the docker network.
const nodeDev = "eth0"

// delayCommands are the tc commands, run inside one node container, that
// delay by d the packets it sends to dsts (CIDRs): an HTB root whose
// unclassified traffic bypasses it untouched, one class with a netem leaf,
// and a u32 filter per destination into that class. Only traffic to the
// other workers (their addresses and pod CIDRs) is delayed, so the API
// server and pods of the same node are not.
func delayCommands(dev string, d time.Duration, dsts []string) [][]string {
	us := strconv.FormatInt(d.Microseconds(), 10) + "us"
	cmds := [][]string{
		{"tc", "qdisc", "replace", "dev", dev, "root", "handle", "1:", "htb", "default", "0"},
		{"tc", "class", "add", "dev", dev, "parent", "1:", "classid", "1:10", "htb", "rate", "10gbit"},
		{"tc", "qdisc", "add", "dev", dev, "parent", "1:10", "handle", "10:", "netem", "delay", us},
	}
	for _, dst := range dsts {
		cmds = append(cmds, []string{"tc", "filter", "add", "dev", dev, "parent", "1:", "protocol", "ip", "prio", "1",
			"u32", "match", "ip", "dst", dst, "flowid", "1:10"})
	}
	return cmds
}

// peerDestinations maps every worker to the CIDRs of the other workers:
// their InternalIP (/32) and pod CIDR (simplenet routes pod traffic
// unencapsulated, so cross-node pod packets carry the pod's address).
func peerDestinations(nodes []corev1.Node, workers []string) (map[string][]string, error) {
	own := map[string][]string{}
	for _, n := range nodes {
		var cidrs []string
		for _, a := range n.Status.Addresses {
			if a.Type == corev1.NodeInternalIP && !strings.Contains(a.Address, ":") {
				cidrs = append(cidrs, a.Address+"/32")
			}
		}
		if n.Spec.PodCIDR != "" && !strings.Contains(n.Spec.PodCIDR, ":") {
			cidrs = append(cidrs, n.Spec.PodCIDR)
		}
		own[n.Name] = cidrs
	}
	out := map[string][]string{}
	for _, w := range workers {
		if _, ok := own[w]; !ok {
			return nil, fmt.Errorf("worker %s has no Node object", w)
		}
		for _, o := range workers {
			if o != w {
				out[w] = append(out[w], own[o]...)
			}
		}
	}
	return out, nil
}

// addNodeDelay delays by d every packet a worker sends to another worker.
// On a kernel without sch_netem (CONFIG_NET_SCH_NETEM) it fails, leaving
// no qdisc behind: a trial must not run undelayed under a delayed name.
func (b *Backend) addNodeDelay(ctx context.Context, d time.Duration) error {
	workers, err := b.Cluster.Workers()
	if err != nil {
		return err
	}
	var nodes corev1.NodeList
	if err := b.Cluster.Client.List(ctx, &nodes, client.MatchingLabels{}); err != nil {
		return err
	}
	dsts, err := peerDestinations(nodes.Items, workers)
	if err != nil {
		return err
	}
	for _, w := range workers {
		for _, c := range delayCommands(nodeDev, d, dsts[w]) {
			out, err := exec.CommandContext(ctx, "docker", append([]string{"exec", w}, c...)...).CombinedOutput()
			if err != nil {
				_ = b.clearNodeDelay(ctx)
				msg := strings.TrimSpace(string(out))
				if strings.Contains(msg, "qdisc kind is unknown") {
					msg += " (the host kernel has no netem qdisc: CONFIG_NET_SCH_NETEM is not set or sch_netem is not loaded)"
				}
				return fmt.Errorf("on %s: %s: %v: %s", w, strings.Join(c, " "), err, msg)
			}
		}
	}
	b.logf("netem: +%s one-way between workers %v", d, workers)
	return nil
}

// clearNodeDelay removes the root qdisc of every worker (a missing one is
// not an error).
func (b *Backend) clearNodeDelay(ctx context.Context) error {
	workers, err := b.Cluster.Workers()
	if err != nil {
		return err
	}
	var first error
	for _, w := range workers {
		out, err := exec.CommandContext(ctx, "docker", "exec", w, "tc", "qdisc", "del", "dev", nodeDev, "root").CombinedOutput()
		msg := string(out)
		if err != nil && !strings.Contains(msg, "handle of zero") && !strings.Contains(msg, "No such file") && first == nil {
			first = fmt.Errorf("clearing qdisc on %s: %v: %s", w, err, msg)
		}
	}
	return first
}
