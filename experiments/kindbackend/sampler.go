package kindbackend

import (
	"context"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"

	"sluice.dev/sluice/experiments/metrics"
	"sluice.dev/sluice/kindconfig"
	"sluice.dev/sluice/platform/api/v1alpha1"
)

// sampler scrapes the sink PEs' /metrics through the API server's pod
// proxy: each sink operator's received-tuple counter (one cumulative
// series per pod, so a relaunched sink starts a new series instead of
// lowering the total) and the increments of its latency histogram,
// spread evenly over each bucket's range (linear interpolation, as
// histogram_quantile does).
//
// It also reads the emitted-tuple counter of the sources of consistent
// regions (sluice_pe_operator_tuples_out_total), for replay_duration.
type sampler struct {
	b       *Backend
	ns      string
	sinks   map[string][]string // PE name -> sink operators
	sources map[string][]string // PE name -> region source operators

	mu   sync.Mutex
	out  []metrics.Sample
	prev map[string][]bucket // subject -> last cumulative buckets
}

type bucket struct {
	le float64
	n  float64
}

func newSampler(b *Backend, ns string, sinks, sources map[string][]string) *sampler {
	return &sampler{b: b, ns: ns, sinks: sinks, sources: sources, prev: map[string][]bucket{}}
}

func (s *sampler) run(ctx context.Context, rec *recorder) {
	every := s.b.ScrapeEvery
	if every <= 0 {
		every = 500 * time.Millisecond
	}
	pes := map[string]bool{}
	for pe := range s.sinks {
		pes[pe] = true
	}
	for pe := range s.sources {
		pes[pe] = true
	}
	for ctx.Err() == nil {
		for pe := range pes {
			p := rec.pe(pe)
			if p == nil || p.Status.PodName == "" {
				continue
			}
			pod := rec.pod(p.Status.PodName)
			// A region source's PE is not ready while its stream is broken
			// (from the fault to the reset's end): its counter is read as
			// long as the pod runs, or the moment the reset paused it
			// would be missed.
			if pod == nil || !(kindconfig.PodReady(pod) || len(s.sources[pe]) > 0 && pod.Status.Phase == corev1.PodRunning) {
				continue
			}
			sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			text, err := s.b.Cluster.ScrapePod(sctx, s.ns, pod.Name, int(v1alpha1.PEHealthPort), "/metrics")
			cancel()
			// Stamp on receipt, like watch events.
			now := s.b.clk.Now()
			if err != nil {
				continue
			}
			for _, op := range s.sinks[pe] {
				s.add(now, pod.Name+"/"+op, text, op)
			}
			for _, op := range s.sources[pe] {
				s.addSource(now, pod.Name+"/"+op, text, op)
			}
		}
		select {
		case <-ctx.Done():
		case <-s.b.clk.After(every):
		}
	}
}

func (s *sampler) add(now time.Time, subject string, text []byte, op string) {
	frag := `operator="` + op + `"`
	n, err := kindconfig.SumMetric(text, "sluice_pe_operator_tuples_in_total", frag)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil {
		s.out = append(s.out, metrics.Sample{Time: now, Name: metrics.SinkTuples, Subject: subject, Value: n})
	}
	cur := parseBuckets(text, "sluice_pe_sink_latency_seconds_bucket", frag)
	prev := s.prev[subject]
	s.prev[subject] = cur
	if prev == nil || len(prev) != len(cur) {
		return
	}
	lower := 0.0
	for i, bk := range cur {
		// Tuples that arrived since the last scrape in this bucket.
		d := (bk.n - prev[i].n)
		if i > 0 {
			d -= cur[i-1].n - prev[i-1].n
		}
		lo, hi := lower, bk.le
		lower = bk.le
		if d <= 0 {
			continue
		}
		if math.IsInf(hi, 1) {
			// Above the last bound: only its lower edge is known.
			s.out = append(s.out, metrics.Sample{Time: now, Name: metrics.TupleLatency, Subject: subject, Value: lo, Weight: d})
			continue
		}
		// Spread the bucket's tuples evenly over its range, as
		// Prometheus's histogram_quantile interpolates: with buckets
		// doubling in width, the upper bound alone would overstate
		// a latency by up to 2x.
		for j := range interpSteps {
			v := lo + (float64(j)+0.5)*(hi-lo)/interpSteps
			s.out = append(s.out, metrics.Sample{Time: now, Name: metrics.TupleLatency, Subject: subject, Value: v, Weight: d / interpSteps})
		}
	}
}

// addSource records a region source's emitted-tuple counter.
func (s *sampler) addSource(now time.Time, subject string, text []byte, op string) {
	n, err := kindconfig.SumMetric(text, "sluice_pe_operator_tuples_out_total", `operator="`+op+`"`)
	if err != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.out = append(s.out, metrics.Sample{Time: now, Name: metrics.SourceTuples, Subject: subject, Value: n})
}

// interpSteps is the number of samples a histogram bucket is spread over.
const interpSteps = 8

// parseBuckets reads one histogram's cumulative buckets, sorted by bound.
func parseBuckets(text []byte, name, frag string) []bucket {
	var out []bucket
	for _, line := range strings.Split(string(text), "\n") {
		if !strings.HasPrefix(line, name+"{") || !strings.Contains(line, frag) {
			continue
		}
		i := strings.Index(line, `le="`)
		if i < 0 {
			continue
		}
		rest := line[i+4:]
		j := strings.IndexByte(rest, '"')
		if j < 0 {
			continue
		}
		le, err := strconv.ParseFloat(rest[:j], 64)
		if err != nil {
			continue
		}
		f := strings.Fields(line)
		n, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			continue
		}
		out = append(out, bucket{le, n})
	}
	sort.Slice(out, func(a, b int) bool { return out[a].le < out[b].le })
	return out
}

func (s *sampler) samples() []metrics.Sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]metrics.Sample(nil), s.out...)
}

// grewAfter says a sink counted more tuples after t than in total at t.
func (s *sampler) grewAfter(t time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	last := map[string]float64{}
	base := math.NaN()
	sum := func() float64 {
		x := 0.0
		for _, v := range last {
			x += v
		}
		return x
	}
	for _, smp := range s.out {
		if smp.Name != metrics.SinkTuples {
			continue
		}
		if smp.Time.After(t) && math.IsNaN(base) {
			base = sum()
		}
		last[smp.Subject] = smp.Value
		if !math.IsNaN(base) && sum() > base {
			return true
		}
	}
	return false
}
