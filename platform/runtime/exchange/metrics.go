package exchange

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics of exports and imports, labelled by operator (and export, on
// the import side).
type Metrics struct {
	// Export side.
	Subscribers       *prometheus.GaugeVec
	SubscribersTotal  *prometheus.CounterVec
	SubscriberDrops   *prometheus.CounterVec
	ExportTuples      *prometheus.CounterVec
	ExportTuplesDrops *prometheus.CounterVec
	HandshakeRefused  *prometheus.CounterVec
	// Import side.
	ImportConnected *prometheus.GaugeVec
	ImportConnects  *prometheus.CounterVec
	ImportFails     *prometheus.CounterVec
	ImportTuples    *prometheus.CounterVec
	ImportFiltered  *prometheus.CounterVec
	ImportMissing   *prometheus.CounterVec
	ImportRestarts  *prometheus.CounterVec
}

// NewMetrics makes the metrics and registers them on reg (nil: not
// registered). Registering twice on one registry reuses the first set.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	const ns = "sluice_pe"
	cv := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: name, Help: help}, labels)
	}
	gv := func(name, help string, labels ...string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: name, Help: help}, labels)
	}
	m := &Metrics{
		Subscribers:       gv("export_subscribers", "Importers connected to an export.", "operator"),
		SubscribersTotal:  cv("export_subscriptions_total", "Importer connections accepted by an export.", "operator"),
		SubscriberDrops:   cv("export_subscriber_drops_total", "Importers disconnected by an export for being slow or gone.", "operator"),
		ExportTuples:      cv("export_tuples_total", "Tuples an export sent towards its subscribers (once per subscriber).", "operator"),
		ExportTuplesDrops: cv("export_tuples_dropped_total", "Tuples an export could not send to a subscriber it dropped.", "operator"),
		HandshakeRefused:  cv("export_handshakes_refused_total", "Subscribe handshakes an export refused, by reason.", "operator", "reason"),
		ImportConnected:   gv("import_connected", "1 while an import is connected to an export.", "operator", "export"),
		ImportConnects:    cv("import_connects_total", "Connections an import made to an export.", "operator", "export"),
		ImportFails:       cv("import_connect_failures_total", "Failed connection attempts of an import.", "operator", "export"),
		ImportTuples:      cv("import_tuples_total", "Tuples an import received.", "operator", "export"),
		ImportFiltered:    cv("import_tuples_filtered_total", "Tuples an import's filter dropped.", "operator"),
		ImportMissing:     cv("import_missing_total", "Sequence numbers an import found missing from an export (gaps).", "operator", "export"),
		ImportRestarts:    cv("import_origin_restarts_total", "Epoch changes an import saw in an exporter's origins.", "operator", "export"),
	}
	if reg == nil {
		return m
	}
	register := func(c prometheus.Collector) prometheus.Collector {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return are.ExistingCollector
			}
		}
		return c
	}
	m.Subscribers = register(m.Subscribers).(*prometheus.GaugeVec)
	m.SubscribersTotal = register(m.SubscribersTotal).(*prometheus.CounterVec)
	m.SubscriberDrops = register(m.SubscriberDrops).(*prometheus.CounterVec)
	m.ExportTuples = register(m.ExportTuples).(*prometheus.CounterVec)
	m.ExportTuplesDrops = register(m.ExportTuplesDrops).(*prometheus.CounterVec)
	m.HandshakeRefused = register(m.HandshakeRefused).(*prometheus.CounterVec)
	m.ImportConnected = register(m.ImportConnected).(*prometheus.GaugeVec)
	m.ImportConnects = register(m.ImportConnects).(*prometheus.CounterVec)
	m.ImportFails = register(m.ImportFails).(*prometheus.CounterVec)
	m.ImportTuples = register(m.ImportTuples).(*prometheus.CounterVec)
	m.ImportFiltered = register(m.ImportFiltered).(*prometheus.CounterVec)
	m.ImportMissing = register(m.ImportMissing).(*prometheus.CounterVec)
	m.ImportRestarts = register(m.ImportRestarts).(*prometheus.CounterVec)
	return m
}
