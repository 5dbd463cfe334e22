// Package coordinator is the single-writer command queue of an owner. Every
// write of one kind goes through that kind's Coordinator: other parts of the
// platform submit commands, the coordinator applies them to the observed
// object one at a time per object, and it counts a command done only when
// the object it reads back (from the cache) already satisfies it.
//
// Commands are idempotent against observed state (Apply reports whether the
// object still needs the change), so a restarted operator that has lost
// every queue re-derives the same commands from the API server and finds
// the ones that were done already done.
//
// There are no goroutines and no waits here: a command that must wait for
// an earlier write to be seen back returns Pending, and the caller is woken
// by the watch event of that write (or its RequeueAfter).
package coordinator

import (
	"context"
	"fmt"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// Outcome of submitting a command.
type Outcome int

const (
	// Done: the observed object already satisfies the command; nothing was written.
	Done Outcome = iota
	// Written: the command was applied with one write; it becomes Done when
	// the write is seen back.
	Written
	// Pending: an earlier write to the same object has not been seen back
	// yet; submit again when it has (a watch event will say so).
	Pending
)

func (o Outcome) String() string {
	switch o {
	case Done:
		return "Done"
	case Written:
		return "Written"
	default:
		return "Pending"
	}
}

// Finished reports whether the command needs no further submissions.
func (o Outcome) Finished() bool { return o == Done }

// Command moves one object toward a goal.
type Command[T client.Object] struct {
	// Name says what the command does, for logs and errors.
	Name string
	// Status commands write through the status subresource.
	Status bool
	// Apply changes obj toward the goal and reports whether it changed
	// anything. It must return false when obj already satisfies the goal.
	Apply func(obj T) bool
}

// SeenBackTimeout bounds how long a write may stay unseen before the
// coordinator stops waiting for it (the object may have been deleted and
// re-created, or the watch may have been restarted).
const SeenBackTimeout = 30 * time.Second

type inflight struct {
	// writing: a worker is making the write right now.
	writing bool
	// before is the resourceVersion the write replaced ("" for a create);
	// the write is seen once the cache shows another version (or, for a
	// create, the object at all).
	before string
	since  time.Time
}

// Coordinator serialises the writes of one kind.
type Coordinator[T client.Object] struct {
	c      client.Client
	clock  clock.PassiveClock
	newObj func() T

	mu      sync.Mutex
	pending map[types.NamespacedName]inflight
	writes  uint64
}

// New returns the coordinator of the kind newObj makes.
func New[T client.Object](c client.Client, clk clock.PassiveClock, newObj func() T) *Coordinator[T] {
	return &Coordinator[T]{c: c, clock: clk, newObj: newObj, pending: map[types.NamespacedName]inflight{}}
}

// Writes is the number of API writes this coordinator has made.
func (co *Coordinator[T]) Writes() uint64 {
	co.mu.Lock()
	defer co.mu.Unlock()
	return co.writes
}

// busy reports whether an earlier write to key is still unseen, and forgets
// the write once it is seen (or timed out). current is the cached object's
// resourceVersion ("" when absent).
func (co *Coordinator[T]) busy(key types.NamespacedName, current string, exists bool) bool {
	w, ok := co.pending[key]
	if !ok {
		return false
	}
	if w.writing {
		return true
	}
	seen := false
	if w.before == "" {
		seen = exists
	} else {
		seen = !exists || current != w.before
	}
	if seen || co.clock.Since(w.since) > SeenBackTimeout {
		delete(co.pending, key)
		return false
	}
	return true
}

// claim marks key as being written; false if another write holds it.
func (co *Coordinator[T]) claim(key types.NamespacedName, current string, exists bool) bool {
	co.mu.Lock()
	defer co.mu.Unlock()
	if co.busy(key, current, exists) {
		return false
	}
	// Hold the key while the write is in flight so that a concurrent worker
	// sees it as pending; settle() records the final state.
	co.pending[key] = inflight{writing: true, since: co.clock.Now()}
	return true
}

func (co *Coordinator[T]) settle(key types.NamespacedName, before string, wrote bool) {
	co.mu.Lock()
	defer co.mu.Unlock()
	if !wrote {
		delete(co.pending, key)
		return
	}
	co.writes++
	co.pending[key] = inflight{before: before, since: co.clock.Now()}
}

// Submit applies cmd to the object named key, as the cache shows it.
// A missing object is an error the caller can test with apierrors.IsNotFound.
func (co *Coordinator[T]) Submit(ctx context.Context, key types.NamespacedName, cmd Command[T]) (Outcome, error) {
	obj := co.newObj()
	if err := co.c.Get(ctx, key, obj); err != nil {
		return Pending, err
	}
	if !co.claim(key, obj.GetResourceVersion(), true) {
		return Pending, nil
	}
	before := obj.GetResourceVersion()
	if !cmd.Apply(obj) {
		co.settle(key, "", false)
		return Done, nil
	}
	var err error
	if cmd.Status {
		err = co.c.Status().Update(ctx, obj)
	} else {
		err = co.c.Update(ctx, obj)
	}
	if err != nil {
		co.settle(key, "", false)
		return Pending, fmt.Errorf("%s on %s: %w", cmd.Name, key, err)
	}
	co.settle(key, before, true)
	return Written, nil
}

// Create makes obj unless the cache already has it. An object that the API
// server already has (AlreadyExists) counts as Done: creation is idempotent.
func (co *Coordinator[T]) Create(ctx context.Context, obj T) (Outcome, error) {
	key := client.ObjectKeyFromObject(obj)
	existing := co.newObj()
	err := co.c.Get(ctx, key, existing)
	switch {
	case err == nil:
		return Done, nil
	case !apierrors.IsNotFound(err):
		return Pending, err
	}
	if !co.claim(key, "", false) {
		return Pending, nil
	}
	if err := co.c.Create(ctx, obj); err != nil {
		co.settle(key, "", false)
		if apierrors.IsAlreadyExists(err) {
			return Done, nil
		}
		return Pending, fmt.Errorf("create %s: %w", key, err)
	}
	co.settle(key, "", true)
	return Written, nil
}

// Delete removes obj. An object already gone (in the cache), already being
// deleted, or replaced by a new object of the same name counts as Done.
func (co *Coordinator[T]) Delete(ctx context.Context, obj T, opts ...client.DeleteOption) (Outcome, error) {
	if obj.GetDeletionTimestamp() != nil {
		return Done, nil
	}
	key := client.ObjectKeyFromObject(obj)
	current := co.newObj()
	if err := co.c.Get(ctx, key, current); err != nil {
		if apierrors.IsNotFound(err) {
			co.mu.Lock()
			delete(co.pending, key) // gone: whatever we wrote is seen
			co.mu.Unlock()
			return Done, nil
		}
		return Pending, err
	}
	if current.GetDeletionTimestamp() != nil || current.GetUID() != obj.GetUID() {
		return Done, nil // being deleted already, or a new object of the same name
	}
	if !co.claim(key, current.GetResourceVersion(), true) {
		return Pending, nil
	}
	if err := co.c.Delete(ctx, obj, opts...); err != nil {
		co.settle(key, "", false)
		if apierrors.IsNotFound(err) {
			return Done, nil
		}
		return Pending, fmt.Errorf("delete %s: %w", key, err)
	}
	co.settle(key, obj.GetResourceVersion(), true)
	return Written, nil
}

// PendingRetry is how soon a caller whose command was Pending tries again.
// The seen-back watch event usually wakes it first; the retry covers the
// race in which that event arrived while the write was still in flight.
const PendingRetry = 250 * time.Millisecond

// Result turns outcomes into a reconcile result: any Pending outcome asks
// to be reconciled again after PendingRetry.
func Result(outs ...Outcome) reconcile.Result {
	for _, o := range outs {
		if o == Pending {
			return reconcile.Result{RequeueAfter: PendingRetry}
		}
	}
	return reconcile.Result{}
}
