package main

import (
	"log/slog"

	"sluice.dev/sluice/platform/peconfig"
	"sluice.dev/sluice/platform/runtime/exchange"
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
