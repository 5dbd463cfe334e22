package nodelifecycle

import (
	"time"

	_ "embed"

	"sluice.dev/sluice/sim/cluster/paramfile"
)

//go:embed params.yaml
var paramsYAML []byte

// Params tune the heartbeat and node lifecycle models.
type Params struct {
	LeaseDuration             paramfile.Duration `json:"leaseDuration"`
	LeaseRenewInterval        paramfile.Duration `json:"leaseRenewInterval"`
	NodeStatusUpdateFrequency paramfile.Duration `json:"nodeStatusUpdateFrequency"`
	NodeStatusReportFrequency paramfile.Duration `json:"nodeStatusReportFrequency"`
	HeartbeatJitter           float64            `json:"heartbeatJitter"`
	NodeMonitorPeriod         paramfile.Duration `json:"nodeMonitorPeriod"`
	NodeMonitorGracePeriod    paramfile.Duration `json:"nodeMonitorGracePeriod"`
	NodeEvictionRate          float64            `json:"nodeEvictionRate"`
	UnhealthyZoneThreshold    float64            `json:"unhealthyZoneThreshold"`
	LargeClusterSizeThreshold int                `json:"largeClusterSizeThreshold"`
	DefaultTolerationSeconds  int64              `json:"defaultTolerationSeconds"`
}

// DefaultParams are the values of params.yaml.
func DefaultParams() Params {
	var p Params
	paramfile.MustLoad(paramsYAML, &p)
	return p
}

func durationParam(d time.Duration) paramfile.Duration { return paramfile.Duration(d) }

// ParamFile is the embedded default parameter file, with each value's source.
func ParamFile() []byte { return paramsYAML }
