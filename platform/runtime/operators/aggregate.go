package operators

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"time"

	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/runtime/wire"
)

// Aggregate is a keyed tumbling-window aggregate over the tuples' event
// time. A window closes when a tuple at or past its end arrives, when the
// input has been quiet long enough that the event clock (the latest event
// time plus the wall time since it arrived) is a full window past its end,
// or when the input ends. It then emits one tuple per key, in key order,
// numbered with the aggregate's own origin and sequence; the first of them
// carries in Lost the input tuples the aggregate found missing since its
// previous output.
type Aggregate struct {
	out    Emitter
	fn     string
	window int64 // nanoseconds
	st     aggState
	// tracker checks input sequences; its state is part of the snapshot.
	tracker *Tracker
	origin  uint32
	epoch   uint32
	t       wire.Tuple
	keys    []uint64
	now     func() int64
	// wallAtMax is the wall time at which MaxEvent last advanced.
	wallAtMax int64
}

// acc is the running aggregate of one key in one window.
type acc struct {
	Count   int64 `json:"c"`
	Sum     int64 `json:"s"`
	Min     int64 `json:"mn"`
	Max     int64 `json:"mx"`
	MaxTime int64 `json:"t"`
}

// aggState is everything a checkpoint must keep.
type aggState struct {
	Seq uint64 `json:"seq"`
	// Open windows by window number (Event / window).
	Windows map[int64]map[uint64]*acc `json:"windows"`
	// ClosedBelow: windows below this number are closed; later tuples
	// for them go to the oldest open window and count as late.
	ClosedBelow int64  `json:"closedBelow"`
	Late        int64  `json:"late"`
	PendingLost uint64 `json:"pendingLost"`
	MaxEvent    int64  `json:"maxEvent"`
	Seen        bool   `json:"seen"`
	// Epoch of the output tuples (0 in snapshots of older versions: the
	// engine's). A channel created by a width change numbers its output
	// in a new epoch (Redistribution.FreshEpoch).
	Epoch uint32 `json:"epoch,omitempty"`
}

func NewAggregate(name string, p *v1alpha1.OperatorParams, env Env) (*Aggregate, error) {
	fn := p.Function
	if fn == "" {
		fn = "count"
	}
	switch fn {
	case "count", "sum", "min", "max", "avg":
	default:
		return nil, fmt.Errorf("aggregate %q: unknown function %q", name, fn)
	}
	win := deref64(p.WindowMillis, 1000)
	if win < 1 {
		return nil, fmt.Errorf("aggregate %q: windowMillis must be positive", name)
	}
	now := env.Now
	if now == nil {
		now = func() int64 { return time.Now().UnixNano() }
	}
	return &Aggregate{out: env.Out, fn: fn, window: win * 1e6, tracker: NewTracker(true),
		origin: OriginID(name), epoch: env.Epoch, now: now,
		st: aggState{Windows: map[int64]map[uint64]*acc{}, ClosedBelow: math.MinInt64, Epoch: env.Epoch}}, nil
}

func (a *Aggregate) Process(_ int, t *wire.Tuple) {
	a.st.PendingLost += a.tracker.Observe(t) + uint64(t.Lost)
	if !a.st.Seen || t.Event > a.st.MaxEvent {
		a.st.MaxEvent, a.st.Seen = t.Event, true
		a.wallAtMax = a.now()
	}
	w := t.Event / a.window
	if w < a.st.ClosedBelow {
		a.st.Late++
		w = a.st.ClosedBelow
	}
	keys := a.st.Windows[w]
	if keys == nil {
		keys = make(map[uint64]*acc)
		a.st.Windows[w] = keys
	}
	c := keys[t.Key]
	if c == nil {
		c = &acc{Min: t.Value, Max: t.Value}
		keys[t.Key] = c
	}
	c.Count++
	c.Sum += t.Value
	c.Min = min(c.Min, t.Value)
	c.Max = max(c.Max, t.Value)
	c.MaxTime = max(c.MaxTime, t.Time)
	// Tuples come roughly in time order: one at or past a window's end
	// closes it.
	a.closeBelow(w)
}

// Tick closes windows that ended a full window before the event clock.
func (a *Aggregate) Tick(now int64) {
	if !a.st.Seen {
		return
	}
	est := a.st.MaxEvent + max(now-a.wallAtMax, 0)
	a.closeBelow(est/a.window - 1)
}

// Finish closes every window.
func (a *Aggregate) Finish() { a.closeBelow(math.MaxInt64) }

// Late is the number of tuples that arrived after their window closed.
func (a *Aggregate) Late() int64 { return a.st.Late }

func (a *Aggregate) closeBelow(w int64) {
	if w <= a.st.ClosedBelow {
		return
	}
	if len(a.st.Windows) > 0 {
		var ws []int64
		for x := range a.st.Windows {
			if x < w {
				ws = append(ws, x)
			}
		}
		slices.Sort(ws)
		for _, x := range ws {
			a.emit(x, a.st.Windows[x])
			delete(a.st.Windows, x)
		}
	}
	a.st.ClosedBelow = w
}

func (a *Aggregate) emit(w int64, keys map[uint64]*acc) {
	a.keys = a.keys[:0]
	for k := range keys {
		a.keys = append(a.keys, k)
	}
	slices.Sort(a.keys)
	for _, k := range a.keys {
		c := keys[k]
		var v int64
		switch a.fn {
		case "count":
			v = c.Count
		case "sum":
			v = c.Sum
		case "min":
			v = c.Min
		case "max":
			v = c.Max
		case "avg":
			v = c.Sum / c.Count
		}
		// Event time: the window's last instant, so that a downstream
		// window of the same length puts it in the same window.
		a.t = wire.Tuple{Origin: a.origin, Epoch: a.st.Epoch, Seq: a.st.Seq, Key: k, Time: c.MaxTime,
			Event: (w+1)*a.window - 1, Value: v,
			Lost: uint32(min(a.st.PendingLost, math.MaxUint32))}
		a.st.PendingLost -= uint64(a.t.Lost)
		a.st.Seq++
		a.out.Emit(0, &a.t)
	}
}

type aggSnapshot struct {
	State   aggState      `json:"state"`
	Tracker []OriginStats `json:"tracker"`
}

// Snapshot encodes the open windows, the output sequence and the input
// tracker.
func (a *Aggregate) Snapshot() ([]byte, error) {
	return json.Marshal(aggSnapshot{State: a.st, Tracker: a.tracker.Origins()})
}

// Restore replaces the state with a snapshot's.
func (a *Aggregate) Restore(b []byte) error {
	var s aggSnapshot
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("aggregate restore: %w", err)
	}
	if s.State.Windows == nil {
		s.State.Windows = map[int64]map[uint64]*acc{}
	}
	if s.State.Epoch == 0 {
		s.State.Epoch = a.epoch
	}
	a.st = s.State
	a.wallAtMax = a.now()
	a.tracker.Restore(s.Tracker)
	return nil
}

// Redistribute rebuilds the state of the aggregate's copy in channel
// r.Channel from the snapshots of every channel of a checkpoint taken at
// another width. The merge rules (docs/parallel-regions.md):
//   - keyed state: the accumulators of the keys the copy owns, from
//     whichever old channel held them (with a key partition a key was in
//     one channel; round robin merges its partial accumulators);
//   - ClosedBelow: the smallest of the old channels'. This assumes the
//     region's input event time never goes back (true of the sources):
//     every later tuple then falls at or after the newest window any old
//     channel closed, so no closed window reopens; and every window an
//     old channel still held open stays open here, to be emitted once.
//     With out-of-order event time a late tuple could land in a window
//     that the channel owning its key had already closed;
//   - MaxEvent and Seen: the latest (they only drive wall-clock closing,
//     which regions do not use);
//   - Late and PendingLost: each old channel's to its one heir;
//   - output numbering: a channel that existed continues its own origin's
//     sequence and epoch; a new one starts at 0 in a fresh epoch;
//   - input tracker: merged by mergeOrigins (highest Next, rejoin).
func (a *Aggregate) Redistribute(r Redistribution) ([]byte, error) {
	out := aggSnapshot{State: aggState{Windows: map[int64]map[uint64]*acc{}, ClosedBelow: math.MaxInt64}}
	st := &out.State
	trackers := make([][]OriginStats, 0, len(r.Parts))
	for old, b := range r.Parts {
		var s aggSnapshot
		if err := json.Unmarshal(b, &s); err != nil {
			return nil, fmt.Errorf("aggregate redistribute (channel %d): %w", old, err)
		}
		p := s.State
		st.ClosedBelow = min(st.ClosedBelow, p.ClosedBelow)
		if p.Seen && (!st.Seen || p.MaxEvent > st.MaxEvent) {
			st.MaxEvent, st.Seen = p.MaxEvent, true
		}
		for w, keys := range p.Windows {
			for k, c := range keys {
				if !r.Owns(k, old) {
					continue
				}
				dst := st.Windows[w]
				if dst == nil {
					dst = map[uint64]*acc{}
					st.Windows[w] = dst
				}
				if have := dst[k]; have != nil {
					have.Count += c.Count
					have.Sum += c.Sum
					have.Min = min(have.Min, c.Min)
					have.Max = max(have.Max, c.Max)
					have.MaxTime = max(have.MaxTime, c.MaxTime)
				} else {
					cp := *c
					dst[k] = &cp
				}
			}
		}
		if r.Heir(old) {
			st.Late += p.Late
			st.PendingLost += p.PendingLost
		}
		if old == r.Channel {
			st.Seq, st.Epoch = p.Seq, p.Epoch
		}
		trackers = append(trackers, s.Tracker)
	}
	if len(r.Parts) == 0 {
		st.ClosedBelow = math.MinInt64
	}
	if !r.Existed() {
		st.Seq, st.Epoch = 0, r.FreshEpoch()
	}
	out.Tracker = mergeOrigins(trackers, r)
	return json.Marshal(out)
}
