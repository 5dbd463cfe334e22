package kindbackend

import (
	"context"
	"fmt"
	"os/exec"

	"sluice.dev/sluice/kindconfig"
	"sluice.dev/sluice/platform/api/v1alpha1"
)

// peUser is the user and group the PE image runs as (build/Dockerfile).
const peUser = "65532:65532"

// checkpointHostDir is the node directory of a filesystem store without a
// claim for a namespace (platform/render: checkpointHostPath/<namespace>).
func checkpointHostDir(ns string) string { return "/var/lib/sluice/checkpoints/" + ns }

// prepareStore makes a Job's checkpoint store usable on kind before the Job
// is created. S3: a MinIO server in the trial's namespace
// (kindconfig.DeployMinIO, on the control-plane node, deleted with the
// namespace) whose endpoint, bucket and credentials Secret replace the
// workload's. Filesystem without a claim: the PE pods mount a hostPath
// directory that the kubelet would create owned by root (mode 0755), where
// the PE, running as a non-root user, cannot write; the backend creates it
// on every worker, owned by the PE's user (removed again by cleanupStore).
func (b *Backend) prepareStore(ctx context.Context, job *v1alpha1.Job) error {
	st := job.Spec.CheckpointStore
	if st != nil && st.Type == v1alpha1.StoreS3 {
		endpoint, secret, err := b.Cluster.DeployMinIO(ctx, job.Namespace)
		if err != nil {
			return fmt.Errorf("deploying MinIO for the S3 checkpoint store: %w", err)
		}
		st.Endpoint, st.Bucket, st.CredentialsSecret, st.Insecure = endpoint, kindconfig.MinIOBucket, secret, true
		b.logf("S3 checkpoint store: MinIO at %s", endpoint)
		return nil
	}
	if !hostPathStore(job) {
		return nil
	}
	workers, err := b.Cluster.Workers()
	if err != nil {
		return err
	}
	dir := checkpointHostDir(job.Namespace)
	for _, w := range workers {
		out, err := exec.CommandContext(ctx, "docker", "exec", w, "sh", "-c",
			fmt.Sprintf("mkdir -p %s && chown %s %s", dir, peUser, dir)).CombinedOutput()
		if err != nil {
			return fmt.Errorf("preparing checkpoint directory %s on %s: %v: %s", dir, w, err, out)
		}
	}
	return nil
}

// cleanupStore removes what prepareStore made and the checkpoints in it.
func (b *Backend) cleanupStore(ctx context.Context, ns string) {
	workers, err := b.Cluster.Workers()
	if err != nil {
		b.logf("cleanup: %v", err)
		return
	}
	for _, w := range workers {
		if out, err := exec.CommandContext(ctx, "docker", "exec", w, "rm", "-rf", checkpointHostDir(ns)).CombinedOutput(); err != nil {
			b.logf("cleanup: removing checkpoints on %s: %v: %s", w, err, out)
		}
	}
}
