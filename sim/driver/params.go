package driver

import (
	_ "embed"
	"time"

	"sluice.dev/sluice/sim/params"
)

//go:embed params.yaml
var defaultParams []byte

// Params are the controller manager model's parameters; see params.yaml for
// the source of each default.
type Params struct {
	ReconcileCPU       time.Duration `yaml:"reconcileCPU"`
	ReconcileCPUJitter float64       `yaml:"reconcileCPUJitter"`
	Cores              int           `yaml:"cores"`
	RetryBaseDelay     time.Duration `yaml:"retryBaseDelay"`
	RetryMaxDelay      time.Duration `yaml:"retryMaxDelay"`
	RetryQPS           float64       `yaml:"retryQPS"`
	RetryBurst         int           `yaml:"retryBurst"`
	LeaseDuration      time.Duration `yaml:"leaseDuration"`
	RetryPeriod        time.Duration `yaml:"retryPeriod"`
}

// DefaultParams returns the embedded defaults.
func DefaultParams() Params {
	p, err := LoadParams()
	if err != nil {
		panic(err)
	}
	return p
}

// LoadParams returns the embedded defaults overridden by the given YAML files.
func LoadParams(overrides ...string) (Params, error) {
	var p Params
	err := params.Load(defaultParams, &p, overrides...)
	return p, err
}
