// Package peconfig is the one definition of the configuration a PE runs
// from: the platform writes it into ConfigMaps, the PE runtime reads it from
// the files those ConfigMaps are mounted as, and local mode reads the same
// files from a directory. Changing it changes both sides at once.
//
// Two documents exist:
//   - PE (key pe.json of the PE's ConfigMap <job>-pe-<index>): the operators
//     fused into the PE, every stream that touches them, and the PE's input
//     ports.
//   - PortTable (key ports.json of the job ConfigMap <job>-ports): for every
//     operator input port fed from another PE, which PE and PE port it
//     listens on. A PE finds the peer of an outgoing stream here.
package peconfig

import (
	"encoding/json"
	"fmt"
	"sort"

	"sluice.dev/sluice/platform/api/v1alpha1"
)

// Version is the format version written by this code.
const Version = 1

// Stream is a stream of the application with its stable ID: its index in
// the Job's spec.application.streams. A PE-to-PE connection carries one
// stream and announces its ID when it connects.
type Stream struct {
	ID   int32             `json:"id"`
	From v1alpha1.Endpoint `json:"from"`
	To   v1alpha1.Endpoint `json:"to"`
}

// Input is one input port of a PE: it listens on TCP port 10000+Port and
// delivers to one operator input port.
type Input struct {
	Port         int32  `json:"port"`
	Operator     string `json:"operator"`
	OperatorPort int32  `json:"operatorPort"`
	// Streams are the IDs of the cross-PE streams that connect to this port;
	// the PE is connected when each of them has a live connection.
	Streams []int32 `json:"streams"`
}

// PE is the configuration of one processing element.
type PE struct {
	Version   int    `json:"version"`
	Job       string `json:"job"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Index     int32  `json:"index"`
	// Operators fused into this PE, in topological order.
	Operators []v1alpha1.Operator `json:"operators"`
	// Streams whose source or target operator is in this PE.
	Streams []Stream `json:"streams"`
	// Inputs are the PE's input ports, by Port.
	Inputs []Input `json:"inputs"`
	// Exports are the PE ports on which export operators serve importers;
	// they are numbered after Inputs.
	Exports []ExportPort `json:"exports,omitempty"`
	// Imports name the Import object of each import operator, whose status
	// says where to connect.
	Imports []ImportRef `json:"imports,omitempty"`
	// Region is set when the PE's operators are in a consistent region.
	Region *Region `json:"region,omitempty"`
	// Store is where the PE writes checkpoints (set with Region).
	Store *Store `json:"store,omitempty"`
	// Channel is set on the PEs of a parallel region's channels when the
	// region is inside a consistent region.
	Channel *Channel `json:"channel,omitempty"`
}

// Channel tells a PE which channel of a parallel region it runs, so that a
// reset to a checkpoint taken at another width can rebuild its keyed state
// from the checkpoints of every channel of that width
// (docs/parallel-regions.md). Only PEs in a consistent region get it. It
// does not change with the width, so a width change leaves the kept
// channels' pods alone: the width comes with the region's reset command
// (ConsistentRegion status.parallelWidths).
type Channel struct {
	// Region is the parallel region's name in the application.
	Region string `json:"region"`
	// Index of the channel.
	Index int32 `json:"index"`
	// PartitionBy is how the region's splits partition (key or roundRobin).
	PartitionBy string `json:"partitionBy"`
	// Group is this PE's position among the PEs of its channel; Groups is
	// how many PEs each channel has (the PE of group k of channel c is
	// named by app.ChannelPEName).
	Group  int32 `json:"group"`
	Groups int32 `json:"groups"`
	// Operators maps each operator of the PE to the application operator
	// it copies (agg-3 -> agg); channel c's copy of L is L-<c>.
	Operators map[string]string `json:"operators"`
}

// ExportPort is a PE port that serves an export operator's stream: an
// importing PE connects to it and receives the stream.
type ExportPort struct {
	Port     int32  `json:"port"`
	Operator string `json:"operator"`
}

// ImportRef names the Import object of an import operator.
type ImportRef struct {
	Operator string `json:"operator"`
	Resource string `json:"resource"`
}

// Region tells a PE which consistent region it belongs to and where to
// watch it (docs/consistent-regions.md).
type Region struct {
	// Name of the region in the application.
	Name string `json:"name"`
	// Resource is the name of the ConsistentRegion object to watch.
	Resource string `json:"resource"`
	// Trigger of the region's checkpoints.
	Trigger v1alpha1.RegionTrigger `json:"trigger"`
}

// Store is the checkpoint store configuration as the PE reads it.
// Credentials are never here, only the names of the environment variables
// that hold them.
type Store struct {
	Type         string `json:"type"`
	Path         string `json:"path,omitempty"`
	Endpoint     string `json:"endpoint,omitempty"`
	Bucket       string `json:"bucket,omitempty"`
	Prefix       string `json:"prefix,omitempty"`
	Insecure     bool   `json:"insecure,omitempty"`
	CreateBucket bool   `json:"createBucket,omitempty"`
	AccessKeyEnv string `json:"accessKeyEnv,omitempty"`
	SecretKeyEnv string `json:"secretKeyEnv,omitempty"`
}

// Environment variables that carry S3 credentials into a PE container.
const (
	EnvS3AccessKey = "SLUICE_S3_ACCESS_KEY"
	EnvS3SecretKey = "SLUICE_S3_SECRET_KEY"
)

// PortEntry says where an operator input port fed from another PE listens.
type PortEntry struct {
	Operator     string `json:"operator"`
	OperatorPort int32  `json:"operatorPort"`
	PE           string `json:"pe"`
	PEPort       int32  `json:"pePort"`
}

// PortTable is the job-wide operator port to PE port table.
type PortTable struct {
	Version   int    `json:"version"`
	Job       string `json:"job"`
	Namespace string `json:"namespace"`
	// Operators maps every operator to the PE it is fused into.
	Operators map[string]string `json:"operators"`
	// Inputs lists every operator input port fed from another PE.
	Inputs []PortEntry `json:"inputs"`
}

// Lookup returns the PE and PE port that an operator input port listens on.
func (t *PortTable) Lookup(operator string, port int32) (PortEntry, bool) {
	i := sort.Search(len(t.Inputs), func(i int) bool {
		e := t.Inputs[i]
		return e.Operator > operator || (e.Operator == operator && e.OperatorPort >= port)
	})
	if i < len(t.Inputs) && t.Inputs[i].Operator == operator && t.Inputs[i].OperatorPort == port {
		return t.Inputs[i], true
	}
	return PortEntry{}, false
}

// Sort puts Inputs in the order Lookup needs.
func (t *PortTable) Sort() {
	sort.Slice(t.Inputs, func(i, j int) bool {
		a, b := t.Inputs[i], t.Inputs[j]
		if a.Operator != b.Operator {
			return a.Operator < b.Operator
		}
		return a.OperatorPort < b.OperatorPort
	})
}

// ServiceHost is the DNS name of a PE's Service in a cluster.
func ServiceHost(pe, namespace string) string {
	return pe + "." + namespace + ".svc"
}

// TCPPort is the TCP port PE input port i listens on.
func TCPPort(pePort int32) int32 { return v1alpha1.PEInputPortBase + pePort }

// ParsePE decodes and checks a PE document.
func ParsePE(data []byte) (*PE, error) {
	var pe PE
	if err := json.Unmarshal(data, &pe); err != nil {
		return nil, fmt.Errorf("pe config: %w", err)
	}
	if pe.Version != Version {
		return nil, fmt.Errorf("pe config: version %d, this runtime reads version %d", pe.Version, Version)
	}
	if pe.Name == "" || len(pe.Operators) == 0 {
		return nil, fmt.Errorf("pe config: name and operators are required")
	}
	return &pe, nil
}

// ParsePortTable decodes and checks a port table document.
func ParsePortTable(data []byte) (*PortTable, error) {
	var t PortTable
	if err := json.Unmarshal(data, &t); err != nil {
		return nil, fmt.Errorf("port table: %w", err)
	}
	if t.Version != Version {
		return nil, fmt.Errorf("port table: version %d, this runtime reads version %d", t.Version, Version)
	}
	t.Sort()
	return &t, nil
}
