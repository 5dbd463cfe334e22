package kubelet

import "time"

// Backoff is the kubelet's crash-loop back-off per container, with the
// semantics of client-go's flowcontrol.Backoff as the kubelet uses it: the
// first restart after a failure is immediate and records a back-off of
// Initial; each later failure within the window waits the current back-off
// and doubles it up to Max; an entry not updated for 2*Max (10 min) is reset.
type Backoff struct {
	Initial, Max time.Duration
	entries      map[string]*backoffEntry
}

type backoffEntry struct {
	d          time.Duration
	lastUpdate time.Duration
}

// NewBackoff returns an empty back-off table.
func NewBackoff(initial, max time.Duration) *Backoff {
	return &Backoff{Initial: initial, Max: max, entries: map[string]*backoffEntry{}}
}

func (b *Backoff) expired(e *backoffEntry, t time.Duration) bool {
	return t-e.lastUpdate > 2*b.Max
}

// Delay is how long after now the container that exited at finished may be
// restarted; 0 means now. It does not change the table.
func (b *Backoff) Delay(key string, finished, now time.Duration) time.Duration {
	e := b.entries[key]
	if e == nil || b.expired(e, now) {
		return 0
	}
	if wait := finished + e.d - now; wait > 0 {
		return wait
	}
	return 0
}

// Restarted records a restart of a container that exited at finished
// (flowcontrol's Next with the exit time as the event time).
func (b *Backoff) Restarted(key string, finished time.Duration) {
	e := b.entries[key]
	if e == nil || b.expired(e, finished) {
		b.entries[key] = &backoffEntry{d: b.Initial, lastUpdate: finished}
		return
	}
	e.d = min(2*e.d, b.Max)
	e.lastUpdate = finished
}

// Current is the back-off a container would wait after its next failure.
func (b *Backoff) Current(key string) time.Duration {
	if e := b.entries[key]; e != nil {
		return e.d
	}
	return 0
}

// Forget drops a container's entry (its pod is gone).
func (b *Backoff) Forget(key string) { delete(b.entries, key) }
