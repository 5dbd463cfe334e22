// Package engine is the simulator's discrete-event core: a single-threaded
// event loop over virtual time. Every model (API server, scheduler, kubelet,
// controllers) is a set of callbacks scheduled here; nothing runs on its own
// goroutine, so a run is a pure function of its inputs and seed.
//
// Events are kept in a binary min-heap ordered by (time, sequence). The
// sequence number is the order in which events were scheduled, so events due
// at the same instant run first-scheduled-first. Each Timer knows its index in
// the heap, which makes cancellation O(log n) with no scanning and no
// tombstones left behind.
package engine

import (
	"math/rand/v2"
	"time"
)

// Timer is a scheduled event.
type Timer struct {
	at  time.Duration
	seq uint64
	fn  func()
	idx int // position in the heap; -1 once run or stopped
	e   *Engine
}

// When is the virtual time the event is (or was) due.
func (t *Timer) When() time.Duration { return t.at }

// Pending reports whether the event is still scheduled.
func (t *Timer) Pending() bool { return t.idx >= 0 }

// Engine is the event loop. It is not safe for concurrent use, by design.
type Engine struct {
	now    time.Duration
	seq    uint64
	events uint64
	heap   []*Timer
	rnd    *rand.Rand
}

// New returns an engine at virtual time 0 whose random source is determined
// by seed.
func New(seed uint64) *Engine {
	return &Engine{rnd: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

// Now is the virtual time since the start of the run.
func (e *Engine) Now() time.Duration { return e.now }

// Rand is the run's only random source; draw from it in event order to keep
// runs reproducible.
func (e *Engine) Rand() *rand.Rand { return e.rnd }

// Events is the number of events executed so far.
func (e *Engine) Events() uint64 { return e.events }

// Len is the number of events still scheduled.
func (e *Engine) Len() int { return len(e.heap) }

// After schedules fn at Now()+d; a negative d counts as 0.
func (e *Engine) After(d time.Duration, fn func()) *Timer {
	if d < 0 {
		d = 0
	}
	return e.At(e.now+d, fn)
}

// At schedules fn at virtual time t; a time in the past counts as Now().
func (e *Engine) At(t time.Duration, fn func()) *Timer {
	if t < e.now {
		t = e.now
	}
	e.seq++
	tm := &Timer{at: t, seq: e.seq, fn: fn, idx: len(e.heap), e: e}
	e.heap = append(e.heap, tm)
	e.up(tm.idx)
	return tm
}

// Stop cancels the event. It returns false if the event already ran or was
// already stopped.
// The timer records its heap slot, so no search is needed.
func (t *Timer) Stop() bool {
	if t.idx < 0 {
		return false
	}
	t.e.remove(t.idx)
	return true
}

// Step runs the earliest event. It returns false when none is left.
func (e *Engine) Step() bool {
	if len(e.heap) == 0 {
		return false
	}
	tm := e.heap[0]
	fn := tm.fn
	e.remove(0)
	e.now = tm.at
	e.events++
	fn()
	return true
}

// Peek is the time of the next event; ok is false when none is scheduled.
func (e *Engine) Peek() (t time.Duration, ok bool) {
	if len(e.heap) == 0 {
		return 0, false
	}
	return e.heap[0].at, true
}

// RunUntil runs every event due at or before t, then sets Now() to t (if t is
// not in the past).
func (e *Engine) RunUntil(t time.Duration) {
	for len(e.heap) > 0 && e.heap[0].at <= t {
		e.Step()
	}
	if t > e.now {
		e.now = t
	}
}

// RunWhile runs events while cond() holds and the next event is due no later
// than limit. It returns cond() at the end, so false means the condition was
// reached and true means the run stopped on the limit or ran out of events.
func (e *Engine) RunWhile(cond func() bool, limit time.Duration) bool {
	for cond() {
		if len(e.heap) == 0 || e.heap[0].at > limit {
			return cond()
		}
		e.Step()
	}
	return false
}

// Run runs until no event is left.
func (e *Engine) Run() {
	for e.Step() {
	}
}

func less(a, b *Timer) bool {
	if a.at != b.at {
		return a.at < b.at
	}
	return a.seq < b.seq
}

func (e *Engine) remove(i int) {
	h := e.heap
	last := len(h) - 1
	tm := h[i]
	if i != last {
		h[i] = h[last]
		h[i].idx = i
	}
	h[last] = nil
	e.heap = h[:last]
	tm.idx = -1
	tm.fn = nil // let the closure be collected even if the caller keeps the Timer
	if i != last {
		if !e.down(i) {
			e.up(i)
		}
	}
}

func (e *Engine) up(i int) {
	h := e.heap
	tm := h[i]
	for i > 0 {
		p := (i - 1) / 2
		if !less(tm, h[p]) {
			break
		}
		h[i] = h[p]
		h[i].idx = i
		i = p
	}
	h[i] = tm
	tm.idx = i
}

// down sifts h[i] towards the leaves; it reports whether it moved.
func (e *Engine) down(i int) bool {
	h := e.heap
	n := len(h)
	tm := h[i]
	start := i
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		c := l
		if r := l + 1; r < n && less(h[r], h[l]) {
			c = r
		}
		if !less(h[c], tm) {
			break
		}
		h[i] = h[c]
		h[i].idx = i
		i = c
	}
	h[i] = tm
	tm.idx = i
	return i != start
}
