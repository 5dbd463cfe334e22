package kubelet

import "sort"

// Claim is one pod's claim on a node's CPU under CFS.
type Claim struct {
	// Weight is the pod's cpu.shares (proportional to its cpu request).
	Weight float64
	// Cap is the most the pod can use, in cores: its demand, bounded by its
	// CFS quota (cpu limit) if any. A negative Cap means no bound.
	Cap float64
}

// Shares converts a cpu request in millicores to cgroup cpu.shares as the
// kubelet does (MilliCPUToShares: request*1024/1000, at least 2).
func Shares(milliCPU int64) float64 {
	s := milliCPU * 1024 / 1000
	if s < 2 {
		s = 2
	}
	return float64(s)
}

// WaterFill divides capacity cores among claims the way a work-conserving
// proportional-share scheduler (CFS with cpu.shares) does in steady state:
// each claim gets capacity in proportion to its weight, a claim that needs
// less than that keeps only what it needs and the rest is divided again
// among the others. Claims are settled in order of cap per weight, so the
// whole division is one sort and one pass.
func WaterFill(capacity float64, claims []Claim) []float64 {
	out := make([]float64, len(claims))
	open := make([]int, 0, len(claims))
	var w float64
	for i, c := range claims {
		if c.Cap != 0 && c.Weight > 0 {
			open = append(open, i)
			w += c.Weight
		}
	}
	sort.SliceStable(open, func(a, b int) bool { return ratio(claims[open[a]]) < ratio(claims[open[b]]) })
	left := capacity
	for n, i := range open {
		if left <= 0 || w <= 0 {
			break
		}
		c := claims[i]
		fair := left * c.Weight / w
		if c.Cap >= 0 && c.Cap <= fair {
			out[i] = c.Cap
			left -= c.Cap
			w -= c.Weight
			continue
		}
		// Every claim from here on wants more than its fair part.
		for _, j := range open[n:] {
			out[j] = left * claims[j].Weight / w
		}
		break
	}
	return out
}

func ratio(c Claim) float64 {
	if c.Cap < 0 || c.Weight <= 0 {
		return 1e300
	}
	return c.Cap / c.Weight
}
