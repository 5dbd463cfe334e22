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
// among the others.
func WaterFill(capacity float64, claims []Claim) []float64 {
	out := make([]float64, len(claims))
	open := make([]int, 0, len(claims))
	for i, c := range claims {
		if c.Cap != 0 {
			open = append(open, i)
		}
	}
	left := capacity
	for len(open) > 0 && left > 1e-12 {
		var w float64
		for _, i := range open {
			w += claims[i].Weight
		}
		if w <= 0 {
			break
		}
		// Claims whose fair part exceeds their cap are satisfied first.
		sort.SliceStable(open, func(a, b int) bool {
			ca, cb := claims[open[a]], claims[open[b]]
			return ratio(ca) < ratio(cb)
		})
		i := open[0]
		c := claims[i]
		fair := left * c.Weight / w
		if c.Cap >= 0 && c.Cap-out[i] <= fair {
			give := c.Cap - out[i]
			out[i] += give
			left -= give
			open = open[1:]
			continue
		}
		// Nobody is capped below the fair part: split what is left.
		for _, j := range open {
			out[j] += left * claims[j].Weight / w
		}
		left = 0
	}
	return out
}

func ratio(c Claim) float64 {
	if c.Cap < 0 || c.Weight <= 0 {
		return 1e300
	}
	return c.Cap / c.Weight
}
