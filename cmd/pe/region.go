package main

import (
	"fmt"
	"log/slog"
	"time"

	"sluice.dev/sluice/platform/checkpoint"
	"sluice.dev/sluice/platform/peconfig"
	"sluice.dev/sluice/platform/runtime/regionctl"
)

// regionControl is how a PE of a consistent region talks with it: files in
// regionDir in local mode, its ConsistentRegion and its own pod in a
// cluster. A PE outside any region gets nil.
func regionControl(pe *peconfig.PE, regionDir, namespace string, poll time.Duration, log *slog.Logger) (regionctl.Control, error) {
	if pe.Region == nil {
		return nil, nil
	}
	if regionDir != "" {
		return regionctl.NewFiles(regionDir, pe.Region.Name, pe.Name, poll), nil
	}
	return regionctl.NewKube(regionctl.KubeOptions{Namespace: namespace, Resource: pe.Region.Resource,
		Log: log.With("region", pe.Region.Resource)})
}

// openStore opens the PE's checkpoint store; nil without one.
func openStore(s *peconfig.Store) (checkpoint.Store, error) {
	if s == nil {
		return nil, nil
	}
	st, err := checkpoint.Open(checkpoint.Config{Type: s.Type, Path: s.Path, Endpoint: s.Endpoint, Bucket: s.Bucket,
		Prefix: s.Prefix, Insecure: s.Insecure, CreateBucket: s.CreateBucket, AccessKeyEnv: s.AccessKeyEnv, SecretKeyEnv: s.SecretKeyEnv})
	if err != nil {
		return nil, fmt.Errorf("checkpoint store: %w", err)
	}
	return st, nil
}
