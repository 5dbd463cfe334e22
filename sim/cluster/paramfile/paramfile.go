// Package paramfile reads the simulator models' parameter files. Every value
// in such a file carries the place it comes from, so that a reader of a
// result can tell a Kubernetes default from a measurement or a guess:
//
//	nodeMonitorGracePeriod:
//	  value: 50s
//	  source: "kubernetes: kube-controller-manager --node-monitor-grace-period default in 1.32"
//
// A source starts with "kubernetes:" (a Kubernetes default), "kind:"
// (measured on a kind cluster), "sluice:" (a default of Sluice's own code,
// such as the PE runtime) or "guess:". Load refuses a file with a value
// without a valid source.
package paramfile

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// Entry is one parameter with its provenance.
type Entry struct {
	Value  json.RawMessage `json:"value"`
	Source string          `json:"source"`
}

// Origins a source may start with.
var Origins = []string{"kubernetes:", "kind:", "sluice:", "guess:"}

// Parse reads a parameter file into its entries, checking every source.
func Parse(data []byte) (map[string]Entry, error) {
	var m map[string]Entry
	if err := yaml.UnmarshalStrict(data, &m); err != nil {
		return nil, fmt.Errorf("parameter file: %w", err)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		e := m[k]
		if len(e.Value) == 0 {
			return nil, fmt.Errorf("parameter %s: no value", k)
		}
		ok := false
		for _, o := range Origins {
			if strings.HasPrefix(e.Source, o) && len(strings.TrimSpace(e.Source)) > len(o) {
				ok = true
			}
		}
		if !ok {
			return nil, fmt.Errorf("parameter %s: source %q must start with one of %v and say more", k, e.Source, Origins)
		}
	}
	return m, nil
}

// Load parses data and decodes the values into out, a pointer to a struct
// whose json field names are the parameter names. Every field of out must be
// given by the file and every parameter of the file must be a field of out.
func Load(data []byte, out any) error {
	m, err := Parse(data)
	if err != nil {
		return err
	}
	flat := make(map[string]json.RawMessage, len(m))
	for k, e := range m {
		flat[k] = e.Value
	}
	raw, err := json.Marshal(flat)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(out); err != nil {
		return fmt.Errorf("parameter file: %w", err)
	}
	// A field missing from the file would silently stay zero; refuse it.
	var fields map[string]json.RawMessage
	full, err := json.Marshal(out)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(full, &fields); err != nil {
		return err
	}
	for k := range fields {
		if _, ok := m[k]; !ok {
			return fmt.Errorf("parameter file: %s is missing", k)
		}
	}
	return nil
}

// Overlay decodes a parameter file that gives some of the parameters (each
// with its source, like a full file) over out, which keeps the values the
// file does not name. It returns the entries it applied.
func Overlay(data []byte, out any) (map[string]Entry, error) {
	m, err := Parse(data)
	if err != nil {
		return nil, err
	}
	flat := make(map[string]json.RawMessage, len(m))
	for k, e := range m {
		flat[k] = e.Value
	}
	raw, err := json.Marshal(flat)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(out); err != nil {
		return nil, fmt.Errorf("parameter file: %w", err)
	}
	return m, nil
}

// MustLoad is Load for embedded files, which are part of the program.
func MustLoad(data []byte, out any) {
	if err := Load(data, out); err != nil {
		panic(err)
	}
}

// Duration is a time.Duration written as a Go duration string ("10s").
type Duration time.Duration

// D is the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// MarshalJSON writes the duration string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON reads a duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string like \"10s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}
