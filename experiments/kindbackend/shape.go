package kindbackend

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"sluice.dev/sluice/experiments/spec"
)

// definedNodes is the number of worker nodes of a cluster shape.
func definedNodes(c spec.Cluster) int {
	n := 0
	for _, g := range c.Nodes {
		n += g.Count
	}
	return n
}

// surplusWorkers are the kind workers beyond the definition's node count,
// the last ones in name order (the first ones stand for <group>-0, ...).
func surplusWorkers(workers []string, want int) []string {
	if want <= 0 || want >= len(workers) {
		return nil
	}
	return workers[want:]
}

// fitShape cordons the kind workers the definition does not have, so that
// the scheduler sees as many nodes as the simulated cluster (a kind worker
// reports the host's cores, which for oversubscription's 2-CPU nodes on a
// 2-core machine is the definition's allocatable). A cluster with fewer
// workers than the definition stays as it is. It returns the cordoned
// nodes, to be uncordoned at the trial's end.
func (b *Backend) fitShape(ctx context.Context, c spec.Cluster) ([]string, error) {
	workers, err := b.Cluster.Workers()
	if err != nil {
		return nil, err
	}
	extra := surplusWorkers(workers, definedNodes(c))
	for i, name := range extra {
		if err := b.setUnschedulable(ctx, name, true); err != nil {
			_ = b.uncordon(ctx, extra[:i])
			return nil, err
		}
	}
	if len(extra) > 0 {
		b.logf("cordoned %v: the definition has %d workers", extra, definedNodes(c))
	}
	return extra, nil
}

func (b *Backend) uncordon(ctx context.Context, nodes []string) error {
	var first error
	for _, n := range nodes {
		if err := b.setUnschedulable(ctx, n, false); err != nil && first == nil {
			first = err
		}
	}
	return first
}

func (b *Backend) setUnschedulable(ctx context.Context, name string, v bool) error {
	var n corev1.Node
	if err := b.Cluster.Client.Get(ctx, client.ObjectKey{Name: name}, &n); err != nil {
		return fmt.Errorf("node %s: %w", name, err)
	}
	if n.Spec.Unschedulable == v {
		return nil
	}
	patch := client.MergeFrom(n.DeepCopy())
	n.Spec.Unschedulable = v
	if err := b.Cluster.Client.Patch(ctx, &n, patch); err != nil {
		return fmt.Errorf("setting node %s unschedulable=%v: %w", name, v, err)
	}
	return nil
}
