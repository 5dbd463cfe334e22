package kubelet

import (
	_ "embed"

	"sluice.dev/sluice/sim/cluster/paramfile"
)

//go:embed params.yaml
var paramsYAML []byte

// Params tune the kubelet model.
type Params struct {
	SandboxCreate         paramfile.Duration `json:"sandboxCreate"`
	ContainerStart        paramfile.Duration `json:"containerStart"`
	StartJitter           float64            `json:"startJitter"`
	ImagePullOverhead     paramfile.Duration `json:"imagePullOverhead"`
	ImagePullBandwidth    float64            `json:"imagePullBandwidth"`
	DefaultImageSize      int64              `json:"defaultImageSize"`
	BackoffInitial        paramfile.Duration `json:"backoffInitial"`
	BackoffMax            paramfile.Duration `json:"backoffMax"`
	SigtermExit           paramfile.Duration `json:"sigtermExit"`
	SandboxStop           paramfile.Duration `json:"sandboxStop"`
	ProbePeriod           paramfile.Duration `json:"probePeriod"`
	ProbeSuccessThreshold int32              `json:"probeSuccessThreshold"`
	ProbeFailureThreshold int32              `json:"probeFailureThreshold"`
	PodCIDRPrefix         string             `json:"podCIDRPrefix"`
	VolumeSetup           paramfile.Duration `json:"volumeSetup"`
	PLEGRelistPeriod      paramfile.Duration `json:"plegRelistPeriod"`
	SerializeImagePulls   bool               `json:"serializeImagePulls"`
	MountRetryInitial     paramfile.Duration `json:"mountRetryInitial"`
	MountRetryMax         paramfile.Duration `json:"mountRetryMax"`
}

// DefaultParams are the values of params.yaml.
func DefaultParams() Params {
	var p Params
	paramfile.MustLoad(paramsYAML, &p)
	return p
}

// ParamFile is the embedded default parameter file, with each value's source.
func ParamFile() []byte { return paramsYAML }
