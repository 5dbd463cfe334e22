package dataplane

import (
	_ "embed"

	"sluice.dev/sluice/sim/cluster/paramfile"
)

//go:embed params.yaml
var paramsYAML []byte

// Params tune the data-plane model.
type Params struct {
	SourceCost        paramfile.Duration `json:"sourceCost"`
	MapCost           paramfile.Duration `json:"mapCost"`
	MapRoundCost      paramfile.Duration `json:"mapRoundCost"`
	FilterCost        paramfile.Duration `json:"filterCost"`
	AggregateCost     paramfile.Duration `json:"aggregateCost"`
	SplitCost         paramfile.Duration `json:"splitCost"`
	UnionCost         paramfile.Duration `json:"unionCost"`
	SinkCost          paramfile.Duration `json:"sinkCost"`
	SerializeCost     paramfile.Duration `json:"serializeCost"`
	DeserializeCost   paramfile.Duration `json:"deserializeCost"`
	ByteCostNanos     float64            `json:"byteCostNanos"`
	TupleHeaderBytes  int64              `json:"tupleHeaderBytes"`
	PEMaxCores        float64            `json:"peMaxCores"`
	StreamBufferBytes int64              `json:"streamBufferBytes"`
	SourceChunk       float64            `json:"sourceChunk"`
	SourceTick        paramfile.Duration `json:"sourceTick"`
	ReconnectMin      paramfile.Duration `json:"reconnectMin"`
	ReconnectMax      paramfile.Duration `json:"reconnectMax"`
	ReconnectJitter   float64            `json:"reconnectJitter"`
	SourceWaitPoll    paramfile.Duration `json:"sourceWaitPoll"`
	ReadyPoll         paramfile.Duration `json:"readyPoll"`
	DefaultKeys       int64              `json:"defaultKeys"`
}

// DefaultParams are the values of params.yaml.
func DefaultParams() Params {
	var p Params
	paramfile.MustLoad(paramsYAML, &p)
	return p
}

// ParamFile is the embedded default parameter file, with each value's source.
func ParamFile() []byte { return paramsYAML }
