package driver

import (
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"sluice.dev/sluice/sim/engine"
)

func req(name string) reconcile.Request {
	return reconcile.Request{NamespacedName: types.NamespacedName{Namespace: "ns", Name: name}}
}

func TestQueueDedupAndProcessing(t *testing.T) {
	e := engine.New(1)
	adds := 0
	q := newQueue(e, DefaultParams(), func() { adds++ })
	q.Add(req("a"))
	q.Add(req("b"))
	q.Add(req("a"))
	if q.Len() != 2 {
		t.Fatalf("dedup: len %d, want 2", q.Len())
	}
	r, _ := q.Get()
	if r != req("a") {
		t.Fatalf("FIFO: got %v first", r)
	}
	// Re-added while processing: not handed out again until Done.
	q.Add(req("a"))
	q.Add(req("a"))
	if q.Len() != 1 {
		t.Fatalf("item in processing was queued: len %d", q.Len())
	}
	r2, _ := q.Get()
	if r2 != req("b") {
		t.Fatalf("got %v, want b", r2)
	}
	if _, ok := q.Get(); ok {
		t.Fatal("a handed out while still processing")
	}
	q.Done(req("a"))
	if r3, ok := q.Get(); !ok || r3 != req("a") {
		t.Fatalf("a not re-queued at Done: %v %v", r3, ok)
	}
	q.Done(req("a"))
	q.Done(req("b"))
	if q.Len() != 0 {
		t.Fatalf("done items left in queue: %d", q.Len())
	}
}

func TestQueueAddAfterKeepsEarliest(t *testing.T) {
	e := engine.New(1)
	q := newQueue(e, DefaultParams(), func() {})
	q.AddAfter(req("a"), 10*time.Second)
	q.AddAfter(req("a"), 3*time.Second)
	q.AddAfter(req("a"), 5*time.Second)
	e.RunUntil(2999 * time.Millisecond)
	if q.Len() != 0 {
		t.Fatal("ready too early")
	}
	e.RunUntil(3 * time.Second)
	if q.Len() != 1 {
		t.Fatal("not ready at the earliest time")
	}
	q.Get()
	q.Done(req("a"))
	e.RunUntil(20 * time.Second)
	if q.Len() != 0 {
		t.Fatalf("superseded delayed adds fired: len %d", q.Len())
	}
}

func TestRateLimiterBackoff(t *testing.T) {
	e := engine.New(1)
	p := DefaultParams()
	p.RetryBurst = 1 << 30 // isolate the per-item part
	q := newQueue(e, p, func() {})
	var got []time.Duration
	for i := 0; i < 5; i++ {
		got = append(got, q.When(req("a")))
	}
	want := []time.Duration{5 * time.Millisecond, 10 * time.Millisecond, 20 * time.Millisecond, 40 * time.Millisecond, 80 * time.Millisecond}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("backoff %v, want %v", got, want)
		}
	}
	if d := q.When(req("b")); d != 5*time.Millisecond {
		t.Fatalf("other item starts at %v", d)
	}
	for i := 0; i < 40; i++ {
		q.When(req("a"))
	}
	if d := q.When(req("a")); d != 1000*time.Second {
		t.Fatalf("cap: %v", d)
	}
	q.Forget(req("a"))
	if d := q.When(req("a")); d != 5*time.Millisecond {
		t.Fatalf("after Forget: %v", d)
	}
	// The overall bucket: 10/s after a burst of 100.
	p = DefaultParams()
	q = newQueue(e, p, func() {})
	var last time.Duration
	for i := 0; i < 110; i++ {
		last = q.When(req(string(rune('a'+i%26)) + string(rune('a'+i/26))))
	}
	if last != time.Second {
		t.Fatalf("110th distinct item waited %v, want 1s from the bucket", last)
	}
}
