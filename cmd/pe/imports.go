package main

import (
	"log/slog"

	"sluice.dev/sluice/platform/peconfig"
	"sluice.dev/sluice/platform/runtime/engine"
	"sluice.dev/sluice/platform/runtime/exchange"
	"sluice.dev/sluice/platform/runtime/operators"
	"sluice.dev/sluice/platform/runtime/regionctl"
)

// importWatch is how the PE's import operators learn where their exports
// are: files in importDir in local mode (import-<resource>.json), their
// Import objects in a cluster. A PE without imports gets nil.
func importWatch(pe *peconfig.PE, importDir, namespace string, log *slog.Logger) (exchange.WatchFunc, error) {
	if len(pe.Imports) == 0 {
		return nil, nil
	}
	if importDir != "" {
		return exchange.Files{Dir: importDir}.For, nil
	}
	k, err := exchange.NewKube(exchange.KubeOptions{Namespace: namespace, Log: log.With("component", "import-watch")})
	if err != nil {
		return nil, err
	}
	return k.For, nil
}

// importSummaryFile is what --import-summary writes.
type importSummaryFile struct {
	PE      string                    `json:"pe"`
	Imports []operators.ImportSummary `json:"imports"`
}

// writeImportSummary writes what the PE's imports received and missed to
// path (nothing without a path or without imports).
func writeImportSummary(path string, pe string, e *engine.Engine) error {
	if path == "" || e == nil || len(e.Imports()) == 0 {
		return nil
	}
	f := importSummaryFile{PE: pe}
	for _, im := range e.Imports() {
		f.Imports = append(f.Imports, im.Summary())
	}
	return regionctl.WriteJSONAtomic(path, f)
}
