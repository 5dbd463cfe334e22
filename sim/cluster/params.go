package cluster

import (
	"fmt"
	"sort"

	"sluice.dev/sluice/sim/checkpointing"
	"sluice.dev/sluice/sim/cluster/paramfile"
	"sluice.dev/sluice/sim/dataplane"
	"sluice.dev/sluice/sim/kubelet"
	"sluice.dev/sluice/sim/network"
	"sluice.dev/sluice/sim/nodelifecycle"
	"sluice.dev/sluice/sim/scheduler"
)

// Models whose parameters Override and Provenance know, by name.
var Models = []string{"scheduler", "kubelet", "nodelifecycle", "network", "dataplane", "checkpointing"}

func (p *Params) target(model string) (any, []byte, error) {
	switch model {
	case "scheduler":
		return &p.Scheduler, scheduler.ParamFile(), nil
	case "kubelet":
		return &p.Kubelet, kubelet.ParamFile(), nil
	case "nodelifecycle":
		return &p.NodeLifecycle, nodelifecycle.ParamFile(), nil
	case "network":
		return &p.Network, network.ParamFile(), nil
	case "dataplane":
		return &p.DataPlane, dataplane.ParamFile(), nil
	case "checkpointing":
		return &p.Checkpointing, checkpointing.ParamFile(), nil
	}
	return nil, nil, fmt.Errorf("unknown model %q (one of %v)", model, Models)
}

// Override applies a parameter file to one model's parameters: it names
// some of them, each with its value and source (for example a figure
// measured on kind). The overrides are kept for Provenance.
func (p *Params) Override(model string, data []byte) error {
	out, _, err := p.target(model)
	if err != nil {
		return err
	}
	applied, err := paramfile.Overlay(data, out)
	if err != nil {
		return fmt.Errorf("%s: %w", model, err)
	}
	if p.Overrides == nil {
		p.Overrides = map[string]map[string]paramfile.Entry{}
	}
	if p.Overrides[model] == nil {
		p.Overrides[model] = map[string]paramfile.Entry{}
	}
	for k, e := range applied {
		p.Overrides[model][k] = e
	}
	return nil
}

// Provenance lists every model parameter as "model.name" with its value and
// source: the embedded default's, or the override's. It belongs in a run's
// metadata. Parameters changed in Go without Override are not seen here.
func (p *Params) Provenance() (map[string]paramfile.Entry, error) {
	out := map[string]paramfile.Entry{}
	for _, model := range Models {
		_, file, _ := p.target(model)
		entries, err := paramfile.Parse(file)
		if err != nil {
			return nil, err
		}
		for k, e := range entries {
			out[model+"."+k] = e
		}
		for k, e := range p.Overrides[model] {
			out[model+"."+k] = e
		}
	}
	return out, nil
}

// ProvenanceKeys are Provenance's keys, sorted.
func ProvenanceKeys(m map[string]paramfile.Entry) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
