package main

import (
	"sluice.dev/sluice/experiments/runner"
	"sluice.dev/sluice/experiments/simbackend"
)

func init() {
	backends["sim"] = func() (runner.Backend, error) { return simbackend.New(), nil }
	// "kind" registers here when the kind backend lands (its own issue).
}
