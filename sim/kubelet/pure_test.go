package kubelet

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

func TestBackoffDoublesCapsAndResets(t *testing.T) {
	b := NewBackoff(10*time.Second, 5*time.Minute)
	const key = "ns/p/c"
	now := time.Duration(0)
	var delays []time.Duration
	// A container that crashes one second after each start.
	for i := 0; i < 9; i++ {
		finished := now + time.Second
		d := b.Delay(key, finished, finished)
		delays = append(delays, d)
		b.Restarted(key, finished)
		now = finished + d
	}
	want := []time.Duration{0, 10, 20, 40, 80, 160, 300, 300, 300}
	for i := range want {
		if delays[i] != want[i]*time.Second {
			t.Fatalf("delays %v, want %v seconds", delays, want)
		}
	}
	// After running 10 min (2*max) without failing, back-off starts over.
	finished := now + 10*time.Minute + time.Second
	if d := b.Delay(key, finished, finished); d != 0 {
		t.Fatalf("after 10 min of running: delay %v, want immediate restart", d)
	}
	b.Restarted(key, finished)
	if b.Current(key) != 10*time.Second {
		t.Fatalf("back-off %v after reset, want 10s", b.Current(key))
	}
	// Running just under 10 min keeps the doubled value.
	b2 := NewBackoff(10*time.Second, 5*time.Minute)
	b2.Restarted(key, 0)
	b2.Restarted(key, time.Second) // 20s now
	if d := b2.Delay(key, 9*time.Minute, 9*time.Minute); d != 20*time.Second {
		t.Fatalf("within window: delay %v, want 20s", d)
	}
}

func TestWaterFill(t *testing.T) {
	near := func(a, b float64) bool { return math.Abs(a-b) < 1e-9 }
	// Oversubscribed, all greedy: proportional to weights.
	got := WaterFill(2, []Claim{{Weight: Shares(1000), Cap: -1}, {Weight: Shares(500), Cap: -1}, {Weight: Shares(500), Cap: -1}})
	if !near(got[0], 1) || !near(got[1], 0.5) || !near(got[2], 0.5) {
		t.Fatalf("proportional: %v", got)
	}
	// One pod needs little: the others share what it leaves.
	got = WaterFill(2, []Claim{{Weight: 1024, Cap: 0.2}, {Weight: 1024, Cap: -1}, {Weight: 1024, Cap: -1}})
	if !near(got[0], 0.2) || !near(got[1], 0.9) || !near(got[2], 0.9) {
		t.Fatalf("capped: %v", got)
	}
	// Not oversubscribed: everyone gets its demand.
	got = WaterFill(4, []Claim{{Weight: 2, Cap: 1}, {Weight: 2, Cap: 1.5}})
	if !near(got[0], 1) || !near(got[1], 1.5) {
		t.Fatalf("undersubscribed: %v", got)
	}
	// BestEffort pods get the 2-share minimum.
	got = WaterFill(1, []Claim{{Weight: Shares(0), Cap: -1}, {Weight: Shares(1000), Cap: -1}})
	if !near(got[0], 2.0/1026) {
		t.Fatalf("best effort share %v", got[0])
	}
	var sum float64
	for _, v := range got {
		sum += v
	}
	if !near(sum, 1) {
		t.Fatalf("not work conserving: %v", got)
	}
}

// Properties of max-min fair division with weights, on random claims.
func TestWaterFillProperties(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for iter := 0; iter < 2000; iter++ {
		n := 1 + r.IntN(8)
		claims := make([]Claim, n)
		for i := range claims {
			claims[i] = Claim{Weight: float64(2 + r.IntN(2000)), Cap: -1}
			if r.IntN(3) > 0 {
				claims[i].Cap = r.Float64() * 2
			}
		}
		capacity := r.Float64() * 4
		out := WaterFill(capacity, claims)
		var sum, demand float64
		greedy := false
		for i, c := range claims {
			if out[i] < -1e-12 || (c.Cap >= 0 && out[i] > c.Cap+1e-9) {
				t.Fatalf("claim %+v got %v", c, out[i])
			}
			sum += out[i]
			if c.Cap < 0 {
				greedy = true
			} else {
				demand += c.Cap
			}
		}
		if sum > capacity+1e-9 {
			t.Fatalf("gave %v of %v", sum, capacity)
		}
		// Work conserving: all of the CPU is used unless every claim is met.
		if !greedy && demand < capacity {
			if math.Abs(sum-demand) > 1e-9 {
				t.Fatalf("demand %v, gave %v", demand, sum)
			}
		} else if math.Abs(sum-capacity) > 1e-9 {
			t.Fatalf("capacity %v, gave %v (claims %+v -> %v)", capacity, sum, claims, out)
		}
		// A claim held below its cap gets at least as much per weight as any other.
		for i, c := range claims {
			if c.Cap >= 0 && out[i] >= c.Cap-1e-9 {
				continue
			}
			for j := range claims {
				if out[j]/claims[j].Weight > out[i]/c.Weight+1e-9 {
					t.Fatalf("unfair: %+v->%v vs %+v->%v", c, out[i], claims[j], out[j])
				}
			}
		}
	}
}
