package network

import (
	_ "embed"

	"sluice.dev/sluice/sim/cluster/paramfile"
)

//go:embed params.yaml
var paramsYAML []byte

// Params tune the network model.
type Params struct {
	FusedLatency           paramfile.Duration `json:"fusedLatency"`
	FusedBandwidth         float64            `json:"fusedBandwidth"`
	SameNodeLatency        paramfile.Duration `json:"sameNodeLatency"`
	SameNodeBandwidth      float64            `json:"sameNodeBandwidth"`
	CrossNodeLatency       paramfile.Duration `json:"crossNodeLatency"`
	CrossNodeBandwidth     float64            `json:"crossNodeBandwidth"`
	JitterFraction         float64            `json:"jitterFraction"`
	EndpointSliceDelay     paramfile.Duration `json:"endpointSliceDelay"`
	KubeProxyMinSyncPeriod paramfile.Duration `json:"kubeProxyMinSyncPeriod"`
	KubeProxySyncDuration  paramfile.Duration `json:"kubeProxySyncDuration"`
	DNSRecordDelay         paramfile.Duration `json:"dnsRecordDelay"`
	DNSLookup              paramfile.Duration `json:"dnsLookup"`
	DNSCacheTTL            paramfile.Duration `json:"dnsCacheTTL"`
	ConnectRoundTrips      int                `json:"connectRoundTrips"`
}

// DefaultParams are the values of params.yaml.
func DefaultParams() Params {
	var p Params
	paramfile.MustLoad(paramsYAML, &p)
	return p
}

// ParamFile is the embedded default parameter file, with each value's source.
func ParamFile() []byte { return paramsYAML }
