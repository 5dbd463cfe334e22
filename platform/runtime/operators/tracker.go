package operators

import "sluice.dev/sluice/platform/runtime/wire"

// OriginStats is what a tracker knows about one origin's sequence.
type OriginStats struct {
	ID    uint32 `json:"id"`
	Name  string `json:"name,omitempty"`
	Epoch uint32 `json:"epoch"`
	// Next is the sequence number expected next in the current epoch.
	Next   uint64 `json:"next"`
	Tuples uint64 `json:"tuples"`
	// Missing counts sequence numbers that never arrived.
	Missing uint64 `json:"missing"`
	// Duplicates counts tuples at or below one already seen.
	Duplicates uint64 `json:"duplicates"`
	// Skipped counts sequence numbers dropped on purpose upstream.
	Skipped uint64 `json:"skipped"`
	// UpstreamLost is loss reported by a re-numbering operator upstream.
	UpstreamLost uint64 `json:"upstreamLost"`
	// Restarts counts epoch changes: the origin's process started again.
	Restarts uint64 `json:"restarts"`
	ValueSum int64  `json:"valueSum"`
	// Rejoin: the next tuple at or above Next sets the position, skips
	// or not (set on trackers rebuilt for a new parallel width, whose
	// upstream owed its skips to the old channels).
	Rejoin bool `json:"rejoin,omitempty"`
}

// Tracker checks the sequence numbers of the tuples it sees, per origin.
//
// Strict trackers (sinks) expect every epoch to start at sequence 0, so a
// sink that misses the start of a stream reports it. Joining trackers
// (aggregates) take the first tuple of an epoch as the start: an aggregate
// restarted mid-stream does not report tuples its previous incarnation
// already handled.
type Tracker struct {
	join   bool
	byID   map[uint32]*OriginStats
	order  []*OriginStats
	last   *OriginStats
	lastID uint32
}

func NewTracker(join bool) *Tracker {
	return &Tracker{join: join, byID: make(map[uint32]*OriginStats)}
}

// Observe records t and returns how many sequence numbers it found missing
// just before t.
func (tr *Tracker) Observe(t *wire.Tuple) (missing uint64) {
	s := tr.last
	if s == nil || tr.lastID != t.Origin {
		s = tr.byID[t.Origin]
		if s == nil {
			s = &OriginStats{ID: t.Origin, Epoch: t.Epoch}
			tr.byID[t.Origin] = s
			tr.order = append(tr.order, s)
			if tr.join {
				s.Next = t.Seq
			}
		}
		tr.last, tr.lastID = s, t.Origin
	}
	if t.Epoch != s.Epoch {
		s.Restarts++
		s.Epoch = t.Epoch
		s.Next = 0
		if tr.join {
			s.Next = t.Seq
		}
	}
	rejoin := s.Rejoin
	s.Rejoin = false
	s.UpstreamLost += uint64(t.Lost)
	if t.Seq < s.Next {
		s.Duplicates++
		return 0
	}
	s.Tuples++
	s.ValueSum += t.Value
	s.Skipped += uint64(t.Skip)
	expect := s.Next + uint64(t.Skip)
	if rejoin {
		expect = t.Seq
	}
	if t.Seq > expect {
		missing = t.Seq - expect
		s.Missing += missing
	}
	s.Next = t.Seq + 1
	return missing
}

// Origins returns copies of the per-origin stats in first-seen order.
func (tr *Tracker) Origins() []OriginStats {
	out := make([]OriginStats, len(tr.order))
	for i, s := range tr.order {
		out[i] = *s
	}
	return out
}

// Restore replaces the tracker's state.
func (tr *Tracker) Restore(stats []OriginStats) {
	tr.byID = make(map[uint32]*OriginStats, len(stats))
	tr.order = tr.order[:0]
	tr.last = nil
	for i := range stats {
		s := stats[i]
		tr.byID[s.ID] = &s
		tr.order = append(tr.order, &s)
	}
}
