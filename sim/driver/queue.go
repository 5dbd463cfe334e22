package driver

import (
	"time"

	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"sluice.dev/sluice/sim/apiserver"
	"sluice.dev/sluice/sim/engine"
)

// queue is client-go's workqueue in virtual time: a FIFO with a dirty set
// (an item queued twice is queued once), a processing set (an item being
// reconciled is not handed out again until Done; if it was re-added meanwhile
// it is queued at Done), a delaying part (AddAfter keeps the earliest ready
// time per item) and the default controller rate limiter.
type queue struct {
	e          *engine.Engine
	items      []reconcile.Request
	head       int
	dirty      map[reconcile.Request]bool
	processing map[reconcile.Request]bool
	waiting    map[reconcile.Request]*engine.Timer
	failures   map[reconcile.Request]int
	bucket     *apiserver.TokenBucket
	base, max  time.Duration
	onAdd      func()
}

func newQueue(e *engine.Engine, p Params, onAdd func()) *queue {
	return &queue{
		e: e, dirty: map[reconcile.Request]bool{}, processing: map[reconcile.Request]bool{},
		waiting: map[reconcile.Request]*engine.Timer{}, failures: map[reconcile.Request]int{},
		bucket: apiserver.NewTokenBucket(p.RetryQPS, p.RetryBurst), base: p.RetryBaseDelay, max: p.RetryMaxDelay,
		onAdd: onAdd,
	}
}

func (q *queue) Len() int { return len(q.items) - q.head }

func (q *queue) Add(r reconcile.Request) {
	if q.dirty[r] {
		return
	}
	q.dirty[r] = true
	if q.processing[r] {
		return
	}
	q.items = append(q.items, r)
	q.onAdd()
}

// Get pops the next item; ok is false when the queue is empty.
func (q *queue) Get() (r reconcile.Request, ok bool) {
	if q.Len() == 0 {
		return r, false
	}
	r = q.items[q.head]
	q.items[q.head] = reconcile.Request{}
	q.head++
	if q.head > 1024 && q.head*2 > len(q.items) {
		q.items = append([]reconcile.Request(nil), q.items[q.head:]...)
		q.head = 0
	}
	q.processing[r] = true
	delete(q.dirty, r)
	return r, true
}

func (q *queue) Done(r reconcile.Request) {
	delete(q.processing, r)
	if q.dirty[r] {
		q.items = append(q.items, r)
		q.onAdd()
	}
}

func (q *queue) AddAfter(r reconcile.Request, d time.Duration) {
	if d <= 0 {
		q.Add(r)
		return
	}
	at := q.e.Now() + d
	if t, ok := q.waiting[r]; ok {
		if t.When() <= at {
			return
		}
		t.Stop()
	}
	q.waiting[r] = q.e.At(at, func() {
		delete(q.waiting, r)
		q.Add(r)
	})
}

// When is the default controller rate limiter: the larger of the per-item
// exponential back-off and the overall token bucket's wait.
func (q *queue) When(r reconcile.Request) time.Duration {
	n := q.failures[r]
	q.failures[r] = n + 1
	d := q.max
	if n < 40 {
		if b := q.base << uint(n); b > 0 && b < q.max {
			d = b
		}
	}
	if w := q.bucket.Reserve(q.e.Now()); w > d {
		d = w
	}
	return d
}

func (q *queue) AddRateLimited(r reconcile.Request) { q.AddAfter(r, q.When(r)) }

func (q *queue) Forget(r reconcile.Request) { delete(q.failures, r) }

// shutDown drops everything, as a crashed process loses its queues.
func (q *queue) shutDown() {
	for _, t := range q.waiting {
		t.Stop()
	}
	q.onAdd = func() {}
	q.items, q.head = nil, 0
	q.dirty, q.processing, q.waiting = map[reconcile.Request]bool{}, map[reconcile.Request]bool{}, map[reconcile.Request]*engine.Timer{}
}
