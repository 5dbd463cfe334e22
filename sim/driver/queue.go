package driver

import (
	"time"

	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"sluice.dev/sluice/sim/apiserver"
	"sluice.dev/sluice/sim/engine"
)

// Queue is client-go's workqueue in virtual time: a FIFO with a dirty set
// (an item queued twice is queued once), a processing set (an item being
// reconciled is not handed out again until Done; if it was re-added meanwhile
// it is queued at Done), a delaying part (AddAfter keeps the earliest ready
// time per item) and the default controller rate limiter.
type Queue[T comparable] struct {
	e          *engine.Engine
	items      []T
	head       int
	dirty      map[T]bool
	processing map[T]bool
	waiting    map[T]*engine.Timer
	failures   map[T]int
	addedAt    map[T]time.Duration
	waited     time.Duration // queue time of the item last handed out by Get
	bucket     *apiserver.TokenBucket
	base, max  time.Duration
	onAdd      func()
}

type queue = Queue[reconcile.Request]

func newQueue(e *engine.Engine, p Params, onAdd func()) *queue {
	return NewQueue[reconcile.Request](e, p, onAdd)
}

// NewQueue returns an empty queue with p's retry parameters; onAdd is called
// whenever an item becomes ready (to wake an idle worker).
func NewQueue[T comparable](e *engine.Engine, p Params, onAdd func()) *Queue[T] {
	return &Queue[T]{
		e: e, dirty: map[T]bool{}, processing: map[T]bool{},
		waiting: map[T]*engine.Timer{}, failures: map[T]int{}, addedAt: map[T]time.Duration{},
		bucket: apiserver.NewTokenBucket(p.RetryQPS, p.RetryBurst), base: p.RetryBaseDelay, max: p.RetryMaxDelay,
		onAdd: onAdd,
	}
}

func (q *Queue[T]) Len() int { return len(q.items) - q.head }

func (q *Queue[T]) Add(r T) {
	if q.dirty[r] {
		return
	}
	q.dirty[r] = true
	q.addedAt[r] = q.e.Now()
	if q.processing[r] {
		return
	}
	q.items = append(q.items, r)
	q.onAdd()
}

// Get pops the next item; ok is false when the queue is empty.
func (q *Queue[T]) Get() (r T, ok bool) {
	if q.Len() == 0 {
		return r, false
	}
	r = q.items[q.head]
	var zero T
	q.items[q.head] = zero
	q.head++
	if q.head > 1024 && q.head*2 > len(q.items) {
		q.items = append([]T(nil), q.items[q.head:]...)
		q.head = 0
	}
	q.processing[r] = true
	delete(q.dirty, r)
	q.waited = q.e.Now() - q.addedAt[r]
	delete(q.addedAt, r)
	return r, true
}

// Waited is how long the item last returned by Get was queued (from the
// Add that made it dirty), controller-runtime's workqueue_queue_duration.
func (q *Queue[T]) Waited() time.Duration { return q.waited }

func (q *Queue[T]) Done(r T) {
	delete(q.processing, r)
	if q.dirty[r] {
		q.items = append(q.items, r)
		q.onAdd()
	}
}

func (q *Queue[T]) AddAfter(r T, d time.Duration) {
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
func (q *Queue[T]) When(r T) time.Duration {
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

func (q *Queue[T]) AddRateLimited(r T) { q.AddAfter(r, q.When(r)) }

func (q *Queue[T]) Forget(r T) { delete(q.failures, r) }

// ShutDown drops everything, as a crashed process loses its queues.
func (q *Queue[T]) ShutDown() {
	for _, t := range q.waiting {
		t.Stop()
	}
	q.onAdd = func() {}
	q.items, q.head = nil, 0
	q.dirty, q.processing, q.waiting = map[T]bool{}, map[T]bool{}, map[T]*engine.Timer{}
	q.addedAt = map[T]time.Duration{}
}
