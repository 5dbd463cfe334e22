package kindbackend

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"sluice.dev/sluice/experiments/spec"
	"sluice.dev/sluice/platform/api/v1alpha1"
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
//
// A Job whose checkpoint store is a hostPath of the node (filesystem
// without a claim) gets one worker: a replaced PE must find its
// checkpoints on the node it lands on.
func (b *Backend) fitShape(ctx context.Context, c spec.Cluster, job *v1alpha1.Job) ([]string, error) {
	workers, err := b.Cluster.Workers()
	if err != nil {
		return nil, err
	}
	want := definedNodes(c)
	if hostPathStore(job) {
		want = 1
	}
	extra := surplusWorkers(workers, want)
	for i, name := range extra {
		if err := b.setUnschedulable(ctx, name, true); err != nil {
			_ = b.uncordon(ctx, extra[:i])
			return nil, err
		}
	}
	if len(extra) > 0 {
		b.logf("cordoned %v: the trial has %d workers", extra, want)
	}
	return extra, nil
}

// hostPathStore says a Job's checkpoints live in a hostPath of the node.
func hostPathStore(job *v1alpha1.Job) bool {
	st := job.Spec.CheckpointStore
	return st != nil && st.Type == v1alpha1.StoreFilesystem && st.ClaimName == ""
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
