// Package clock is a virtual clock on top of the simulation engine. It
// implements k8s.io/utils/clock's WithTicker and WithDelayedExecution
// (and so clock.PassiveClock), so that code written against an injected clock
// runs unchanged in virtual time.
//
// Timers and tickers are engine events. Their channels are buffered (size 1)
// and sends never block, like time.Timer. Sleep panics: nothing in the
// simulator may block, because there is only one thread of control.
package clock

import (
	"time"

	k8sclock "k8s.io/utils/clock"

	"sluice.dev/sluice/sim/engine"
)

// Clock is the virtual clock: Now() = epoch + engine time.
type Clock struct {
	e     *engine.Engine
	epoch time.Time
}

var (
	_ k8sclock.WithTicker                    = (*Clock)(nil)
	_ k8sclock.WithDelayedExecution          = (*Clock)(nil)
	_ k8sclock.WithTickerAndDelayedExecution = (*Clock)(nil)
)

// New returns a clock reading epoch at engine time 0.
func New(e *engine.Engine, epoch time.Time) *Clock { return &Clock{e: e, epoch: epoch} }

// Engine is the engine the clock reads.
func (c *Clock) Engine() *engine.Engine { return c.e }

// Epoch is the wall time at engine time 0.
func (c *Clock) Epoch() time.Time { return c.epoch }

// Now is the current virtual wall time.
func (c *Clock) Now() time.Time { return c.epoch.Add(c.e.Now()) }

// Since is Now().Sub(t).
func (c *Clock) Since(t time.Time) time.Duration { return c.Now().Sub(t) }

// After returns a channel that receives the virtual time after d.
func (c *Clock) After(d time.Duration) <-chan time.Time { return c.NewTimer(d).C() }

// Tick is NewTicker(d).C(); nil for d <= 0 as time.Tick.
func (c *Clock) Tick(d time.Duration) <-chan time.Time {
	if d <= 0 {
		return nil
	}
	return c.NewTicker(d).C()
}

// Sleep panics: a sleeping caller would block the only thread of the
// simulation. Use AfterFunc or a RequeueAfter instead.
func (c *Clock) Sleep(d time.Duration) {
	panic("sim/clock: Sleep called; nothing in the simulator may block (use AfterFunc or RequeueAfter)")
}

// NewTimer returns a timer that sends the virtual time on C() after d.
func (c *Clock) NewTimer(d time.Duration) k8sclock.Timer {
	t := &timer{c: c, ch: make(chan time.Time, 1)}
	t.fire = func() {
		select {
		case t.ch <- c.Now():
		default:
		}
	}
	t.ev = c.e.After(d, t.fire)
	return t
}

// AfterFunc runs f in its own engine event after d. The returned timer's C()
// is nil, as with time.AfterFunc.
func (c *Clock) AfterFunc(d time.Duration, f func()) k8sclock.Timer {
	t := &timer{c: c, fire: f}
	t.ev = c.e.After(d, f)
	return t
}

// NewTicker returns a ticker that sends on C() every d of virtual time. Like
// time.Ticker it drops ticks that the reader has not taken.
func (c *Clock) NewTicker(d time.Duration) k8sclock.Ticker {
	if d <= 0 {
		panic("sim/clock: non-positive interval for NewTicker")
	}
	tk := &ticker{c: c, d: d, ch: make(chan time.Time, 1)}
	tk.schedule()
	return tk
}

type timer struct {
	c    *Clock
	ch   chan time.Time
	fire func()
	ev   *engine.Timer
}

func (t *timer) C() <-chan time.Time { return t.ch }

func (t *timer) Stop() bool { return t.ev.Stop() }

func (t *timer) Reset(d time.Duration) bool {
	active := t.ev.Stop()
	t.ev = t.c.e.After(d, t.fire)
	return active
}

type ticker struct {
	c  *Clock
	d  time.Duration
	ch chan time.Time
	ev *engine.Timer
}

func (t *ticker) C() <-chan time.Time { return t.ch }

func (t *ticker) Stop() { t.ev.Stop() }

func (t *ticker) schedule() {
	t.ev = t.c.e.After(t.d, func() {
		select {
		case t.ch <- t.c.Now():
		default:
		}
		t.schedule()
	})
}
