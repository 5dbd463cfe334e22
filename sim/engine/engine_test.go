package engine

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

func TestOrderByTimeThenSequence(t *testing.T) {
	e := New(1)
	var got []string
	rec := func(s string) func() { return func() { got = append(got, fmt.Sprintf("%s@%v", s, e.Now())) } }
	e.After(30*time.Millisecond, rec("c"))
	e.After(10*time.Millisecond, rec("a1"))
	e.After(10*time.Millisecond, rec("a2"))
	e.After(-5*time.Millisecond, rec("zero")) // negative counts as now
	e.After(20*time.Millisecond, func() {
		got = append(got, fmt.Sprintf("b@%v", e.Now()))
		e.After(0, rec("b-child"))                 // same instant, scheduled later: after a3
		e.After(10*time.Millisecond, rec("c-tie")) // same time as c but scheduled later
	})
	e.After(20*time.Millisecond, rec("a3"))
	e.Run()
	want := []string{"zero@0s", "a1@10ms", "a2@10ms", "b@20ms", "a3@20ms", "b-child@20ms", "c@30ms", "c-tie@30ms"}
	if !slices.Equal(got, want) {
		t.Fatalf("order\n got %v\nwant %v", got, want)
	}
	if e.Events() != uint64(len(want)) {
		t.Fatalf("Events() = %d, want %d", e.Events(), len(want))
	}
}

func TestCancellation(t *testing.T) {
	e := New(1)
	var got []int
	var timers []*Timer
	for i := 0; i < 100; i++ {
		i := i
		timers = append(timers, e.After(time.Duration(i%17)*time.Millisecond, func() { got = append(got, i) }))
	}
	stopped := map[int]bool{}
	for i := 0; i < 100; i += 3 {
		if !timers[i].Stop() {
			t.Fatalf("first Stop of %d returned false", i)
		}
		if timers[i].Stop() {
			t.Fatalf("second Stop of %d returned true", i)
		}
		stopped[i] = true
	}
	if e.Len() != 100-len(stopped) {
		t.Fatalf("Len() = %d after stopping %d of 100", e.Len(), len(stopped))
	}
	e.Run()
	if len(got) != 100-len(stopped) {
		t.Fatalf("ran %d events, want %d", len(got), 100-len(stopped))
	}
	last := time.Duration(-1)
	for _, i := range got {
		if stopped[i] {
			t.Fatalf("stopped event %d ran", i)
		}
		at := time.Duration(i%17) * time.Millisecond
		if at < last {
			t.Fatalf("event %d at %v ran after one at %v", i, at, last)
		}
		last = at
	}
	if timers[1].Stop() {
		t.Fatal("Stop after run returned true")
	}
}

func TestStopFromInsideEvent(t *testing.T) {
	e := New(1)
	ran := false
	var later *Timer
	e.After(time.Millisecond, func() {
		if !later.Stop() {
			t.Error("Stop of a pending timer from an event returned false")
		}
	})
	later = e.After(2*time.Millisecond, func() { ran = true })
	e.Run()
	if ran {
		t.Fatal("cancelled event ran")
	}
}

func TestRunUntilAndRunWhile(t *testing.T) {
	e := New(1)
	n := 0
	for i := 1; i <= 10; i++ {
		e.After(time.Duration(i)*time.Second, func() { n++ })
	}
	e.RunUntil(3500 * time.Millisecond)
	if n != 3 || e.Now() != 3500*time.Millisecond {
		t.Fatalf("after RunUntil(3.5s): n=%d now=%v", n, e.Now())
	}
	// RunUntil includes events exactly at t.
	e.RunUntil(5 * time.Second)
	if n != 5 {
		t.Fatalf("event at exactly 5s not run: n=%d", n)
	}
	if still := e.RunWhile(func() bool { return n < 8 }, time.Minute); still {
		t.Fatal("RunWhile returned true although the condition was reached")
	}
	if n != 8 || e.Now() != 8*time.Second {
		t.Fatalf("RunWhile stopped at n=%d now=%v", n, e.Now())
	}
	if still := e.RunWhile(func() bool { return true }, 9*time.Second); !still {
		t.Fatal("RunWhile on limit returned false")
	}
	if n != 9 {
		t.Fatalf("RunWhile with limit 9s ran to n=%d", n)
	}
}

// trace runs a small randomized model and returns what happened when.
func trace(seed uint64) []string {
	e := New(seed)
	var out []string
	var spawn func(id, depth int)
	spawn = func(id, depth int) {
		d := time.Duration(e.Rand().IntN(1000)) * time.Microsecond
		tm := e.After(d, func() {
			out = append(out, fmt.Sprintf("%d@%v", id, e.Now()))
			if depth < 6 {
				spawn(id*2, depth+1)
				spawn(id*2+1, depth+1)
			}
		})
		if e.Rand().IntN(10) == 0 {
			tm.Stop()
		}
	}
	spawn(1, 0)
	e.Run()
	return out
}

func TestDeterminism(t *testing.T) {
	a, b := trace(42), trace(42)
	if !slices.Equal(a, b) {
		t.Fatal("same seed gave different traces")
	}
	if len(a) < 10 {
		t.Fatalf("trace too short to mean anything: %d", len(a))
	}
	if slices.Equal(a, trace(43)) {
		t.Fatal("different seeds gave identical traces")
	}
}

func TestHeapInvariantUnderRandomOps(t *testing.T) {
	e := New(7)
	var live []*Timer
	for i := 0; i < 5000; i++ {
		switch r := e.Rand().IntN(3); {
		case r < 2:
			live = append(live, e.After(time.Duration(e.Rand().IntN(100)), func() {}))
		default:
			if len(live) > 0 {
				j := e.Rand().IntN(len(live))
				live[j].Stop()
				live = append(live[:j], live[j+1:]...)
			}
		}
		if i%500 == 0 {
			for k, tm := range e.heap {
				if tm.idx != k {
					t.Fatalf("timer at slot %d records idx %d", k, tm.idx)
				}
				if k > 0 && less(tm, e.heap[(k-1)/2]) {
					t.Fatalf("heap order broken at %d", k)
				}
			}
		}
	}
	prev := &Timer{at: -1}
	for len(e.heap) > 0 {
		top := e.heap[0]
		if less(top, prev) {
			t.Fatal("events popped out of order")
		}
		prev = top
		e.Step()
	}
}

// BenchmarkEmptyEvents measures schedule+run of empty events with a steady
// queue of 1000 pending events (each event schedules its successor).
func BenchmarkEmptyEvents(b *testing.B) {
	e := New(1)
	var fn func()
	fn = func() { e.After(time.Duration(e.now%997)+1, fn) }
	for i := 0; i < 1000; i++ {
		e.After(time.Duration(i), fn)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		e.Step()
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
