package checkpointing

import (
	_ "embed"
	"time"

	"sluice.dev/sluice/platform/api/v1alpha1"

	"sluice.dev/sluice/sim/cluster/paramfile"
)

//go:embed params.yaml
var paramsYAML []byte

// Params tune the checkpointing model.
type Params struct {
	// BytesPerKey is the snapshot size of one key of an aggregate's state.
	BytesPerKey int64 `json:"bytesPerKey"`
	// OperatorBytes is the snapshot size of any operator besides its keys.
	OperatorBytes   int64   `json:"operatorBytes"`
	EncodeBandwidth float64 `json:"encodeBandwidth"`
	DecodeBandwidth float64 `json:"decodeBandwidth"`

	FilesystemPutLatency     paramfile.Duration `json:"filesystemPutLatency"`
	FilesystemGetLatency     paramfile.Duration `json:"filesystemGetLatency"`
	FilesystemWriteBandwidth float64            `json:"filesystemWriteBandwidth"`
	FilesystemReadBandwidth  float64            `json:"filesystemReadBandwidth"`
	S3PutLatency             paramfile.Duration `json:"s3PutLatency"`
	S3GetLatency             paramfile.Duration `json:"s3GetLatency"`
	S3WriteBandwidth         float64            `json:"s3WriteBandwidth"`
	S3ReadBandwidth          float64            `json:"s3ReadBandwidth"`

	// RegionTupleCost is the CPU time a region's PE spends per tuple
	// (receive, operator, send): with the PE's CPU it bounds how fast the
	// region takes what its sources emit, and so how fast a reset's replay
	// catches up.
	RegionTupleCost paramfile.Duration `json:"regionTupleCost"`

	// Jitter is the relative half-width of the uniform noise on each store
	// operation (0: none, for exact tests).
	Jitter float64 `json:"jitter"`
}

// DefaultParams are the values of params.yaml.
func DefaultParams() Params {
	var p Params
	paramfile.MustLoad(paramsYAML, &p)
	return p
}

// ParamFile is the embedded default parameter file, with each value's source.
func ParamFile() []byte { return paramsYAML }

// Store is the cost of one checkpoint store.
type Store struct {
	PutLatency, GetLatency time.Duration
	// WriteBandwidth and ReadBandwidth in bytes per second.
	WriteBandwidth, ReadBandwidth float64
}

// StoreOf returns the costs of a store type (v1alpha1.StoreFilesystem or
// StoreS3); any other type is the filesystem.
func (p Params) StoreOf(typ string) Store {
	if typ == string(v1alpha1.StoreS3) {
		return Store{p.S3PutLatency.D(), p.S3GetLatency.D(), p.S3WriteBandwidth, p.S3ReadBandwidth}
	}
	return Store{p.FilesystemPutLatency.D(), p.FilesystemGetLatency.D(), p.FilesystemWriteBandwidth, p.FilesystemReadBandwidth}
}

// bytesAt is the time to move n bytes at bw bytes per second.
func bytesAt(n int64, bw float64) time.Duration {
	if bw <= 0 || n <= 0 {
		return 0
	}
	return time.Duration(float64(n) / bw * float64(time.Second))
}
