package driver

import (
	_ "embed"
	"fmt"
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
	if err := params.Load(defaultParams, &p, overrides...); err != nil {
		return p, err
	}
	return p, p.Validate()
}

// Validate rejects values the model cannot run with.
func (p Params) Validate() error {
	switch {
	case p.ReconcileCPU < 0 || p.RetryBaseDelay <= 0 || p.RetryMaxDelay < p.RetryBaseDelay || p.LeaseDuration < 0 || p.RetryPeriod < 0:
		return fmt.Errorf("driver params: bad duration in %+v", p)
	case p.ReconcileCPUJitter < 0 || p.ReconcileCPUJitter >= 1:
		return fmt.Errorf("driver params: reconcileCPUJitter %v not in [0, 1)", p.ReconcileCPUJitter)
	case p.Cores < 0 || p.RetryQPS < 0 || p.RetryBurst < 0:
		return fmt.Errorf("driver params: negative cores, retryQPS or retryBurst in %+v", p)
	}
	return nil
}
