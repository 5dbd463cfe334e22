package main

import (
	"context"
	"os"

	"sluice.dev/sluice/experiments/kindbackend"
	"sluice.dev/sluice/experiments/runner"
	"sluice.dev/sluice/experiments/simbackend"
)

func init() {
	backends["sim"] = func() (runner.Backend, error) { return simbackend.New(), nil }
	// A real kind cluster ($SLUICE_KIND_CLUSTER, default sluice-exp; created,
	// loaded with `make image`'s images and given the operator if needed).
	backends["kind"] = func() (runner.Backend, error) {
		return kindbackend.FromEnv(context.Background(), ".", kindbackend.Platform, os.Stderr)
	}
	// The same cluster running plain Kubernetes objects instead of the
	// platform (bare pods, a Deployment): the baselines of the overhead ratios.
	backends["kind-baseline"] = func() (runner.Backend, error) {
		return kindbackend.FromEnv(context.Background(), ".", kindbackend.Baseline, os.Stderr)
	}
}
