package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"sluice.dev/sluice/experiments/kindbackend"
	"sluice.dev/sluice/experiments/runner"
	"sluice.dev/sluice/experiments/simbackend"
)

// backends make the runnable backends by name; a run gets every backend
// the factory returns, each trial on each in turn.
var backends = map[string]func(ctx context.Context, o options, log io.Writer) ([]runner.Backend, error){
	"sim": func(context.Context, options, io.Writer) ([]runner.Backend, error) {
		return []runner.Backend{simbackend.New()}, nil
	},
	// A real kind cluster ($SLUICE_KIND_CLUSTER, default sluice-exp;
	// created, loaded with `make image`'s images and given the operator if
	// needed), with -baseline the same cluster's plain-Kubernetes trials.
	"kind": func(ctx context.Context, o options, log io.Writer) ([]runner.Backend, error) {
		modes := []kindbackend.Mode{kindbackend.Platform}
		if o.baseline {
			modes = append(modes, kindbackend.Baseline)
		}
		return kindBackends(ctx, o, log, modes...)
	},
	// Only the baselines: plain Kubernetes objects instead of the platform
	// (bare pods, a Deployment).
	"kind-baseline": func(ctx context.Context, o options, log io.Writer) ([]runner.Backend, error) {
		return kindBackends(ctx, o, log, kindbackend.Baseline)
	},
}

// kindBackends prepares the kind cluster once, waits for a quiet host (or
// refuses a busy one, unless forced) and returns a backend per mode.
func kindBackends(ctx context.Context, o options, log io.Writer, modes ...kindbackend.Mode) ([]runner.Backend, error) {
	if o.parallel > 1 {
		return nil, errors.New("kind trials share one cluster: -parallel must be 1")
	}
	repo, err := os.Getwd()
	if err != nil {
		return nil, err
	}
	var out []runner.Backend
	for i, m := range modes {
		var b *kindbackend.Backend
		if i == 0 {
			b, err = kindbackend.FromEnv(ctx, repo, m, log)
		} else {
			b, err = kindbackend.New(out[0].(*kindbackend.Backend).Cluster, m, log)
		}
		if err != nil {
			return nil, err
		}
		b.NodeDelay = o.nodeDelay
		out = append(out, b)
	}
	first := out[0].(*kindbackend.Backend)
	quiet, ok, err := first.WaitQuiet(ctx, o.quietWait)
	if err != nil {
		return nil, fmt.Errorf("testing the host for other work: %w", err)
	}
	if !ok && !o.forceBusy {
		return nil, fmt.Errorf("the host is busy with other work (%.2f cores outside the cluster, at most %.2f; load %.2f): "+
			"measurements would not be trustworthy; stop that work, or pass -force-busy to run anyway with every row flagged",
			quiet.Outside, kindbackend.QuietOutside, quiet.LoadAfter[0])
	}
	for _, b := range out {
		kb := b.(*kindbackend.Backend)
		kb.Quiet, kb.Forced = &quiet, !ok
	}
	if !ok {
		fmt.Fprintf(log, "experiment: host busy (%.2f cores outside the cluster); running anyway (-force-busy), rows flagged %q\n", quiet.Outside, "forced")
	}
	return out, nil
}
