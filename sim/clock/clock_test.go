package clock

import (
	"testing"
	"time"

	"sluice.dev/sluice/sim/engine"
)

var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func TestNowFollowsEngine(t *testing.T) {
	e := engine.New(1)
	c := New(e, epoch)
	if !c.Now().Equal(epoch) {
		t.Fatalf("Now at start = %v", c.Now())
	}
	e.RunUntil(1500 * time.Millisecond)
	if got := c.Since(epoch); got != 1500*time.Millisecond {
		t.Fatalf("Since(epoch) = %v", got)
	}
}

func TestTimerAndAfterFunc(t *testing.T) {
	e := engine.New(1)
	c := New(e, epoch)
	tm := c.NewTimer(2 * time.Second)
	var ranAt time.Duration = -1
	c.AfterFunc(time.Second, func() { ranAt = e.Now() })
	stopped := c.AfterFunc(time.Second, func() { t.Error("stopped AfterFunc ran") })
	if !stopped.Stop() {
		t.Fatal("Stop of pending AfterFunc returned false")
	}
	e.RunUntil(1999 * time.Millisecond)
	select {
	case <-tm.C():
		t.Fatal("timer fired early")
	default:
	}
	if ranAt != time.Second {
		t.Fatalf("AfterFunc ran at %v", ranAt)
	}
	e.RunUntil(2 * time.Second)
	select {
	case v := <-tm.C():
		if !v.Equal(epoch.Add(2 * time.Second)) {
			t.Fatalf("timer sent %v", v)
		}
	default:
		t.Fatal("timer did not fire at 2s")
	}
	if tm.Stop() {
		t.Fatal("Stop after firing returned true")
	}
	if tm.Reset(time.Second) {
		t.Fatal("Reset of a fired timer reported it active")
	}
	e.RunUntil(3 * time.Second)
	if len(tm.C()) != 1 {
		t.Fatal("reset timer did not fire again")
	}
}

func TestTickerDropsUnreadTicks(t *testing.T) {
	e := engine.New(1)
	c := New(e, epoch)
	tk := c.NewTicker(100 * time.Millisecond)
	e.RunUntil(350 * time.Millisecond)
	v := <-tk.C()
	if !v.Equal(epoch.Add(100 * time.Millisecond)) {
		t.Fatalf("first kept tick = %v, want the first one (later ones dropped)", v)
	}
	e.RunUntil(400 * time.Millisecond)
	if v := <-tk.C(); !v.Equal(epoch.Add(400 * time.Millisecond)) {
		t.Fatalf("tick at 400ms = %v", v)
	}
	tk.Stop()
	if e.Len() != 0 {
		t.Fatalf("stopped ticker left %d events", e.Len())
	}
}

func TestSleepPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("Sleep did not panic")
		}
	}()
	New(engine.New(1), epoch).Sleep(time.Second)
}
