package scheduler

import (
	"time"

	_ "embed"

	"sluice.dev/sluice/sim/cluster/paramfile"
)

//go:embed params.yaml
var paramsYAML []byte

// Params tune the scheduler model.
type Params struct {
	CycleCost                         paramfile.Duration `json:"cycleCost"`
	BindLatency                       paramfile.Duration `json:"bindLatency"`
	PodInitialBackoff                 paramfile.Duration `json:"podInitialBackoff"`
	PodMaxBackoff                     paramfile.Duration `json:"podMaxBackoff"`
	UnschedulableFlushPeriod          paramfile.Duration `json:"unschedulableFlushPeriod"`
	PodMaxInUnschedulablePodsDuration paramfile.Duration `json:"podMaxInUnschedulablePodsDuration"`
	Weights                           Weights            `json:"weights"`
}

// DefaultParams are the values of params.yaml.
func DefaultParams() Params {
	var p Params
	paramfile.MustLoad(paramsYAML, &p)
	return p
}

// Backoff is the scheduling queue's back-off after the given number of
// failed attempts: initial, doubled per further attempt, capped.
func (p Params) Backoff(attempts int) time.Duration {
	d := p.PodInitialBackoff.D()
	for i := 1; i < attempts; i++ {
		d *= 2
		if d >= p.PodMaxBackoff.D() {
			return p.PodMaxBackoff.D()
		}
	}
	return d
}

// ParamFile is the embedded default parameter file, with each value's source.
func ParamFile() []byte { return paramsYAML }
