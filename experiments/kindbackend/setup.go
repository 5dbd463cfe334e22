package kindbackend

import (
	"context"
	"io"
	"os"

	"sluice.dev/sluice/kindconfig"
)

// ClusterEnv names the kind cluster FromEnv uses (default "sluice-exp").
const ClusterEnv = "SLUICE_KIND_CLUSTER"

// FromEnv prepares a backend for cmd/experiment: the cluster named by
// $SLUICE_KIND_CLUSTER (created with one control plane and three workers
// when missing), the images of `make image` loaded into it and the
// operator deployed from config/ under repoDir.
func FromEnv(ctx context.Context, repoDir string, mode Mode, log io.Writer) (*Backend, error) {
	name := os.Getenv(ClusterEnv)
	if name == "" {
		name = "sluice-exp"
	}
	c, err := kindconfig.Ensure(ctx, kindconfig.Options{Name: name, Shape: kindconfig.ThreeWorkers, RepoDir: repoDir, Log: log})
	if err != nil {
		return nil, err
	}
	if err := c.LoadImages(ctx, kindconfig.OperatorImage, kindconfig.PEImage); err != nil {
		return nil, err
	}
	if err := c.DeployOperator(ctx, true); err != nil {
		return nil, err
	}
	return New(c, mode, log)
}

// ClusterName is the kind cluster's name, for the cluster column of the
// rows (the runner writes the definition's cluster name there today).
func (b *Backend) ClusterName() string { return b.Cluster.Name }
