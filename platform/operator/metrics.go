package operator

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"sluice.dev/sluice/platform/api/v1alpha1"
)

// RegionCollector exports the state of consistent and parallel regions as
// Prometheus metrics, read from the operator's cache at each scrape: the
// resources' status is the one record, the metrics are a view of it.
type RegionCollector struct {
	Reader client.Reader
	// Timeout bounds one scrape's cache reads.
	Timeout time.Duration

	lastSeq, resets, checkpoints, bytes, drain, reset, state *prometheus.Desc
	width, wanted, rebalance                                 *prometheus.Desc
}

// NewRegionCollector describes the metrics.
func NewRegionCollector(r client.Reader) *RegionCollector {
	cr := []string{"namespace", "job", "region"}
	return &RegionCollector{Reader: r, Timeout: 5 * time.Second,
		lastSeq:     prometheus.NewDesc("sluice_region_last_checkpoint_seq", "Last complete checkpoint of a consistent region.", cr, nil),
		resets:      prometheus.NewDesc("sluice_region_resets_total", "Resets of a consistent region.", cr, nil),
		checkpoints: prometheus.NewDesc("sluice_region_checkpoints_total", "Checkpoints a consistent region completed.", cr, nil),
		bytes:       prometheus.NewDesc("sluice_region_checkpoint_bytes", "Size of the last complete checkpoint, all PEs.", cr, nil),
		drain:       prometheus.NewDesc("sluice_region_last_drain_seconds", "Duration of the last completed drain.", cr, nil),
		reset:       prometheus.NewDesc("sluice_region_last_reset_seconds", "Duration of the last completed reset.", cr, nil),
		state: prometheus.NewDesc("sluice_region_state", "1 for the state a consistent region is in.",
			append(cr, "state"), nil),
		width:     prometheus.NewDesc("sluice_parallel_width", "Channels a parallel region runs.", cr, nil),
		wanted:    prometheus.NewDesc("sluice_parallel_wanted_width", "Channels a parallel region is asked for.", cr, nil),
		rebalance: prometheus.NewDesc("sluice_parallel_last_rebalance_seconds", "Duration of the last completed width change.", cr, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *RegionCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.lastSeq, c.resets, c.checkpoints, c.bytes, c.drain, c.reset, c.state, c.width, c.wanted, c.rebalance} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *RegionCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.Timeout)
	defer cancel()
	var crs v1alpha1.ConsistentRegionList
	if err := c.Reader.List(ctx, &crs); err == nil {
		for i := range crs.Items {
			r := &crs.Items[i]
			l := []string{r.Namespace, r.Spec.JobName, r.Spec.Region}
			st := &r.Status
			ch <- prometheus.MustNewConstMetric(c.lastSeq, prometheus.GaugeValue, float64(st.LastCompletedSeq), l...)
			ch <- prometheus.MustNewConstMetric(c.resets, prometheus.CounterValue, float64(st.Resets), l...)
			ch <- prometheus.MustNewConstMetric(c.checkpoints, prometheus.CounterValue, float64(st.Checkpoints), l...)
			ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.GaugeValue, float64(st.CheckpointBytes), l...)
			if st.LastDrainDuration != nil {
				ch <- prometheus.MustNewConstMetric(c.drain, prometheus.GaugeValue, st.LastDrainDuration.Seconds(), l...)
			}
			if st.LastResetDuration != nil {
				ch <- prometheus.MustNewConstMetric(c.reset, prometheus.GaugeValue, st.LastResetDuration.Seconds(), l...)
			}
			if st.State != "" {
				ch <- prometheus.MustNewConstMetric(c.state, prometheus.GaugeValue, 1, append(l, string(st.State))...)
			}
		}
	}
	var prs v1alpha1.ParallelRegionList
	if err := c.Reader.List(ctx, &prs); err == nil {
		for i := range prs.Items {
			r := &prs.Items[i]
			l := []string{r.Namespace, r.Spec.JobName, r.Spec.Region}
			ch <- prometheus.MustNewConstMetric(c.width, prometheus.GaugeValue, float64(r.Status.Width), l...)
			ch <- prometheus.MustNewConstMetric(c.wanted, prometheus.GaugeValue, float64(r.Spec.Width), l...)
			if d := r.Status.LastRebalanceDuration; d != nil {
				ch <- prometheus.MustNewConstMetric(c.rebalance, prometheus.GaugeValue, d.Seconds(), l...)
			}
		}
	}
}
