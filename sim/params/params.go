// Package params loads a model's parameters from YAML: an embedded default
// file, optionally overlaid by a file on disk. Decoding is strict (unknown
// keys are errors) so that a typo in an experiment's parameters fails loudly
// instead of silently running with the default. Durations are written as Go
// duration strings ("5ms", "1.5s").
package params

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"gopkg.in/yaml.v3"
)

// Decode decodes YAML into out, rejecting unknown fields. An empty document
// leaves out unchanged, so a file may override a subset of the defaults.
func Decode(data []byte, out any) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(out); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

// Load decodes the embedded defaults into out, then each override file in
// order; later files override earlier values field by field.
func Load(defaults []byte, out any, overrides ...string) error {
	if err := Decode(defaults, out); err != nil {
		return fmt.Errorf("embedded defaults: %w", err)
	}
	for _, path := range overrides {
		if path == "" {
			continue
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if err := Decode(b, out); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	}
	return nil
}
