package main

import (
	"fmt"
	"io"
	"slices"
	"sort"

	"github.com/montanaflynn/stats"

	"sluice.dev/sluice/experiments/results"
	"sluice.dev/sluice/experiments/runner"
)

// summarize prints, per point and metric, the median of each backend of a
// paired run and the ratio of the first backend's to the second's (the
// platform's cost over plain Kubernetes).
func summarize(w io.Writer, rep *runner.Report) error {
	type key struct{ point, metric string }
	med := map[string]map[key]float64{}
	var keys []key
	var names []string
	for _, br := range rep.Backends {
		rows, err := results.ReadFile(br.CSV)
		if err != nil {
			return err
		}
		names = append(names, br.Backend)
		vals := map[key][]float64{}
		for _, r := range rows {
			k := key{r.Params, r.Metric}
			vals[k] = append(vals[k], r.Value)
		}
		med[br.Backend] = map[key]float64{}
		for k, v := range vals {
			med[br.Backend][k], _ = stats.Median(v)
			if !slices.Contains(keys, k) {
				keys = append(keys, k)
			}
		}
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].point != keys[j].point {
			return keys[i].point < keys[j].point
		}
		return keys[i].metric < keys[j].metric
	})
	fmt.Fprintf(w, "%-28s %-24s %14s %14s %8s\n", "point", "metric (median)", names[0], names[1], "ratio")
	for _, k := range keys {
		a, okA := med[names[0]][k]
		b, okB := med[names[1]][k]
		as, bs, ratio := "-", "-", "-"
		if okA {
			as = fmt.Sprintf("%.3f", a)
		}
		if okB {
			bs = fmt.Sprintf("%.3f", b)
		}
		if okA && okB && b > 0 {
			ratio = fmt.Sprintf("%.2f", a/b)
		}
		fmt.Fprintf(w, "%-28s %-24s %14s %14s %8s\n", k.point, k.metric, as, bs, ratio)
	}
	return nil
}
