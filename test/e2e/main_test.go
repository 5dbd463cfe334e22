//go:build e2e

// Package e2e tests Sluice end to end on a real kind cluster: the real
// operator image deployed from config/, real PE pods passing tuples over
// TCP. Run with hack/kind-e2e.sh, or against an existing cluster:
//
//	SLUICE_E2E_CLUSTER=sluice-dev go test -tags e2e ./test/e2e/...
//
// Without a reachable Docker engine every test skips with the reason.
package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"sluice.dev/sluice/kindconfig"
)

var (
	// cl is the cluster under test; nil when skipped.
	cl *kindconfig.Cluster
	// skipReason is why there is no cluster (every test skips with it).
	skipReason string
	// setupErr is a failure to prepare a cluster that should exist (every
	// test fails with it: a broken setup must not look like a skip).
	setupErr error
)

func repoDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

func TestMain(m *testing.M) {
	ctx := context.Background()
	name := os.Getenv("SLUICE_E2E_CLUSTER")
	if name == "" {
		name = "sluice-e2e"
	}
	created := false
	if err := kindconfig.DockerAvailable(ctx); err != nil {
		skipReason = "no Docker engine (start one, e.g. hack/kind-e2e.sh): " + err.Error()
	} else {
		created, setupErr = setup(ctx, name)
	}
	code := m.Run()
	if created && os.Getenv("KEEP_CLUSTER") != "1" && cl != nil {
		if err := cl.Delete(); err != nil {
			fmt.Fprintln(os.Stderr, "e2e: deleting cluster:", err)
		}
	}
	os.Exit(code)
}

// setup creates (or reuses) the cluster, loads the images built by `make
// image` and deploys the operator from config/.
func setup(ctx context.Context, name string) (created bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	exists, err := kindconfig.Exists(name)
	if err != nil {
		return false, err
	}
	created = !exists
	c, err := kindconfig.Ensure(ctx, kindconfig.Options{Name: name, Shape: kindconfig.ThreeWorkers,
		RepoDir: repoDir(), Log: os.Stderr})
	if err != nil {
		return created, err
	}
	cl = c
	workers, err := c.Workers()
	if err != nil {
		return created, err
	}
	if len(workers) < 3 {
		return created, fmt.Errorf("cluster %s has %d workers, the tests need 3 (create it with cluster-up %s 3)", name, len(workers), name)
	}
	if os.Getenv("SLUICE_E2E_SKIP_LOAD") != "1" {
		if err := c.LoadImages(ctx, kindconfig.OperatorImage, kindconfig.PEImage); err != nil {
			return created, fmt.Errorf("%w (build the images with make image)", err)
		}
	}
	return created, c.DeployOperator(ctx, true)
}

// cluster returns the cluster under test, or skips/fails the test.
func cluster(t *testing.T) *kindconfig.Cluster {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
	if setupErr != nil {
		t.Fatalf("cluster setup: %v", setupErr)
	}
	return cl
}
