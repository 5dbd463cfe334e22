package kindbackend

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"sluice.dev/sluice/experiments/spec"
	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/app"
)

// inject performs one fault and returns the moment it was issued.
func (b *Backend) inject(ctx context.Context, rec *recorder, job *v1alpha1.Job, f spec.ResolvedFault, stopped map[string]bool) (time.Time, error) {
	var pod *corev1.Pod
	if f.PE >= 0 {
		pe := rec.pe(app.PEName(job.Name, int32(f.PE)))
		if pe == nil || pe.Status.PodName == "" {
			return time.Time{}, fmt.Errorf("PE %d has no pod", f.PE)
		}
		pod = rec.pod(pe.Status.PodName)
		if pod == nil {
			return time.Time{}, fmt.Errorf("pod %s of PE %d not seen", pe.Status.PodName, f.PE)
		}
	}
	switch f.Action {
	case spec.DeleteJob:
		at := b.clk.Now()
		err := b.Cluster.Client.Delete(ctx, job, client.PropagationPolicy(f.Propagation))
		return at, err
	case spec.StartNode:
		node, err := b.nodeOf(f.Node, pod)
		if err != nil {
			return time.Time{}, err
		}
		return b.startNode(ctx, node, stopped)
	}
	if pod == nil {
		return time.Time{}, fmt.Errorf("%s needs a PE", f.Action)
	}
	return b.hitPod(ctx, f.Action, f.Node, pod, stopped)
}

// hitPod applies a pod-level fault (deletePod, killContainer, stopNode) to
// one pod; the baseline uses it on its Deployment's pod.
func (b *Backend) hitPod(ctx context.Context, action spec.Action, nodeName string, pod *corev1.Pod, stopped map[string]bool) (time.Time, error) {
	switch action {
	case spec.DeletePod:
		at := b.clk.Now()
		return at, b.Cluster.Client.Delete(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: pod.Namespace, Name: pod.Name}})
	case spec.KillContainer:
		if len(pod.Status.ContainerStatuses) == 0 || pod.Status.ContainerStatuses[0].ContainerID == "" {
			return time.Time{}, fmt.Errorf("pod %s has no running container", pod.Name)
		}
		id := pod.Status.ContainerStatuses[0].ContainerID
		_, id, _ = strings.Cut(id, "://")
		at := b.clk.Now()
		// The node's containerd holds the container in namespace k8s.io.
		out, err := exec.CommandContext(ctx, "docker", "exec", pod.Spec.NodeName,
			"ctr", "-n", "k8s.io", "tasks", "kill", "-s", "SIGKILL", id).CombinedOutput()
		if err != nil {
			return at, fmt.Errorf("killing container %s on %s: %v: %s", id, pod.Spec.NodeName, err, out)
		}
		return at, nil
	case spec.StopNode:
		node, err := b.nodeOf(nodeName, pod)
		if err != nil {
			return time.Time{}, err
		}
		if op, err := b.Cluster.OperatorPod(ctx); err == nil && op.Spec.NodeName == node {
			b.logf("warning: the operator runs on %s too; it stops with the node", node)
		}
		at := b.clk.Now()
		stopped[node] = true
		var cmd *exec.Cmd
		if s := b.sharedScript("node-stop"); s != "" {
			cmd = exec.CommandContext(ctx, s, node, "2")
		} else {
			cmd = exec.CommandContext(ctx, "docker", "stop", "-t", "2", node)
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			return at, fmt.Errorf("stopping node %s: %v: %s", node, err, out)
		}
		return at, nil
	}
	return time.Time{}, fmt.Errorf("fault %q is not supported on kind", action)
}

// nodeOf maps a definition's node name (<group>-<i>, i-th worker) to a kind
// worker, or takes the pod's node when the fault names none.
func (b *Backend) nodeOf(name string, pod *corev1.Pod) (string, error) {
	if name == "" {
		if pod == nil || pod.Spec.NodeName == "" {
			return "", fmt.Errorf("no node to act on")
		}
		return pod.Spec.NodeName, nil
	}
	workers, err := b.Cluster.Workers()
	if err != nil {
		return "", err
	}
	i := strings.LastIndex(name, "-")
	idx, err := strconv.Atoi(name[i+1:])
	if i < 0 || err != nil || idx < 0 || idx >= len(workers) {
		return "", fmt.Errorf("node %q does not map to one of the %d kind workers", name, len(workers))
	}
	return workers[idx], nil
}

// startNode starts a stopped node container again.
func (b *Backend) startNode(ctx context.Context, node string, stopped map[string]bool) (time.Time, error) {
	at := b.clk.Now()
	if out, err := exec.CommandContext(ctx, "docker", "start", node).CombinedOutput(); err != nil {
		return at, fmt.Errorf("docker start %s: %v: %s", node, err, out)
	}
	delete(stopped, node)
	return at, nil
}
