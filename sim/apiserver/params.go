package apiserver

import (
	_ "embed"
	"time"

	"sluice.dev/sluice/sim/params"
)

//go:embed params.yaml
var defaultParams []byte

// Params are the API server model's parameters. See params.yaml for where
// each default comes from.
type Params struct {
	// RequestLatency is the round trip of one request, charged to the caller.
	RequestLatency time.Duration `yaml:"requestLatency"`
	// RequestLatencyJitter is the relative half-width of the uniform jitter
	// on RequestLatency (0 = none).
	RequestLatencyJitter float64 `yaml:"requestLatencyJitter"`
	// ListLatencyPerObject is added to a LIST's latency per returned object.
	ListLatencyPerObject time.Duration `yaml:"listLatencyPerObject"`
	// WatchDelay is the time from a write's commit to its watch delivery.
	WatchDelay time.Duration `yaml:"watchDelay"`
	// ClientQPS and ClientBurst are the token-bucket limits of clients made
	// by NewClient with Limited set (a controller manager's client).
	ClientQPS   float64 `yaml:"clientQPS"`
	ClientBurst int     `yaml:"clientBurst"`
	// DefaultPodGracePeriod applies to pods that set no
	// terminationGracePeriodSeconds.
	DefaultPodGracePeriod time.Duration `yaml:"defaultPodGracePeriod"`
}

// DefaultParams returns the embedded defaults.
func DefaultParams() Params {
	p, err := LoadParams()
	if err != nil {
		panic(err) // the embedded file is part of the build; tests cover it
	}
	return p
}

// LoadParams returns the embedded defaults overridden by the given YAML files.
func LoadParams(overrides ...string) (Params, error) {
	var p Params
	err := params.Load(defaultParams, &p, overrides...)
	return p, err
}
