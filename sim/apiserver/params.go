package apiserver

import (
	_ "embed"
	"fmt"
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
	if err := params.Load(defaultParams, &p, overrides...); err != nil {
		return p, err
	}
	return p, p.Validate()
}

// Validate rejects values the model cannot run with.
func (p Params) Validate() error {
	switch {
	case p.RequestLatency < 0 || p.WatchDelay < 0 || p.ListLatencyPerObject < 0 || p.DefaultPodGracePeriod < 0:
		return fmt.Errorf("apiserver params: negative duration in %+v", p)
	case p.RequestLatencyJitter < 0 || p.RequestLatencyJitter >= 1:
		return fmt.Errorf("apiserver params: requestLatencyJitter %v not in [0, 1)", p.RequestLatencyJitter)
	case p.ClientQPS < 0 || p.ClientBurst < 0 || (p.ClientQPS > 0 && p.ClientBurst < 1):
		return fmt.Errorf("apiserver params: clientQPS %v / clientBurst %d", p.ClientQPS, p.ClientBurst)
	}
	return nil
}
