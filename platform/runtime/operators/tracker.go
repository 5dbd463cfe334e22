package operators

import (
	"slices"

	"sluice.dev/sluice/platform/runtime/wire"
)

// OriginStats is what a tracker knows about one origin's sequence.
type OriginStats struct {
	ID    uint32 `json:"id"`
	Name  string `json:"name,omitempty"`
	Epoch uint32 `json:"epoch"`
	// Next is the sequence number expected next in the current epoch.
	Next   uint64 `json:"next"`
	Tuples uint64 `json:"tuples"`
	// Missing counts sequence numbers passed over, not owed as skips, that
	// have not arrived (yet: a late one is taken back off).
	Missing uint64 `json:"missing"`
	// Duplicates counts sequence numbers seen a second time.
	Duplicates uint64 `json:"duplicates"`
	// Reordered counts tuples that arrived after a later one of their
	// origin and filled the hole it left: tuples of one origin that took
	// different paths (a split and a union) arrive out of order without
	// being duplicated.
	Reordered uint64 `json:"reordered"`
	// Skipped counts sequence numbers that operators upstream dropped on
	// purpose or sent another way, and that have not arrived here.
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
	// Holes are the sequence numbers below Next that have not arrived, in
	// ascending order, as far back as the tracker remembers (HoleWindow,
	// MaxHoles). A tuple below Next fills a hole (reordered) or is a
	// duplicate. They are part of a checkpoint.
	Holes []SeqRange `json:"holes,omitempty"`
}

// SeqRange is the sequence numbers From..To-1 of an origin. Owed ranges
// were skipped on purpose upstream; the others are missing.
type SeqRange struct {
	From uint64 `json:"f"`
	To   uint64 `json:"t"`
	Owed bool   `json:"o,omitempty"`
}

// Bounds of a tracker's memory of holes, per origin: a tuple more than
// HoleWindow sequence numbers late, or older than the oldest of MaxHoles
// holes, cannot be told apart from a duplicate and is counted as one.
const (
	HoleWindow = 1 << 16
	MaxHoles   = 4096
)

// Observation is what a tracker made of one tuple.
type Observation struct {
	// Missing is how many sequence numbers the tuple showed missing.
	Missing uint64
	// Duplicate: the tuple's sequence number was seen before.
	Duplicate bool
	// Reordered: the tuple filled a hole that a later tuple left.
	Reordered bool
	// Refound: the hole it filled had been counted missing.
	Refound bool
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
	return tr.ObserveAll(t).Missing
}

// ObserveAll records t and says whether it showed a gap, filled one or
// repeated a sequence number.
func (tr *Tracker) ObserveAll(t *wire.Tuple) Observation {
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
		s.Next, s.Holes = 0, nil
		if tr.join {
			s.Next = t.Seq
		}
	}
	rejoin := s.Rejoin
	s.Rejoin = false
	s.UpstreamLost += uint64(t.Lost)
	if t.Seq < s.Next {
		return s.late(t)
	}
	s.Tuples++
	s.ValueSum += t.Value
	var obs Observation
	if rejoin {
		// Whatever lies between was owed to another channel's tracker.
		s.Holes = nil
	} else if t.Seq > s.Next {
		// The tuple's skips owe the numbers just below it; the rest of
		// the gap is missing, unless it arrives late.
		owedFrom := s.Next
		if skip := uint64(t.Skip); t.Seq-s.Next > skip {
			owedFrom = t.Seq - skip
			obs.Missing = owedFrom - s.Next
			s.Missing += obs.Missing
			s.addHole(SeqRange{From: s.Next, To: owedFrom})
		}
		if owedFrom < t.Seq {
			s.Skipped += t.Seq - owedFrom
			s.addHole(SeqRange{From: owedFrom, To: t.Seq, Owed: true})
		}
	}
	s.Next = t.Seq + 1
	s.forget()
	return obs
}

// late handles a tuple below Next: it fills a hole, or it is a duplicate.
func (s *OriginStats) late(t *wire.Tuple) Observation {
	i, found := slices.BinarySearchFunc(s.Holes, t.Seq, func(h SeqRange, seq uint64) int {
		switch {
		case h.To <= seq:
			return -1
		case h.From > seq:
			return 1
		}
		return 0
	})
	if !found {
		s.Duplicates++
		return Observation{Duplicate: true}
	}
	h := s.Holes[i]
	s.Tuples++
	s.ValueSum += t.Value
	s.Reordered++
	obs := Observation{Reordered: true, Refound: !h.Owed}
	if h.Owed {
		s.Skipped--
	} else {
		s.Missing--
	}
	switch {
	case h.To-h.From == 1:
		s.Holes = slices.Delete(s.Holes, i, i+1)
	case t.Seq == h.From:
		s.Holes[i].From++
	case t.Seq == h.To-1:
		s.Holes[i].To--
	default:
		s.Holes = slices.Insert(s.Holes, i+1, SeqRange{From: t.Seq + 1, To: h.To, Owed: h.Owed})
		s.Holes[i].To = t.Seq
	}
	return obs
}

// addHole appends a range above every hole already known, joining it to
// the last one when they touch and are of one kind.
func (s *OriginStats) addHole(r SeqRange) {
	if n := len(s.Holes); n > 0 && s.Holes[n-1].To == r.From && s.Holes[n-1].Owed == r.Owed {
		s.Holes[n-1].To = r.To
		return
	}
	s.Holes = append(s.Holes, r)
}

// forget drops holes that are too old or too many to remember: a tuple
// that fills one of them later counts as a duplicate.
func (s *OriginStats) forget() {
	drop := 0
	for drop < len(s.Holes) && (len(s.Holes)-drop > MaxHoles || s.Holes[drop].To+HoleWindow <= s.Next) {
		drop++
	}
	if drop > 0 {
		s.Holes = slices.Delete(s.Holes, 0, drop)
	}
}

// Origins returns copies of the per-origin stats in first-seen order.
func (tr *Tracker) Origins() []OriginStats {
	out := make([]OriginStats, len(tr.order))
	for i, s := range tr.order {
		out[i] = *s
		out[i].Holes = slices.Clone(s.Holes)
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
		s.Holes = slices.Clone(s.Holes)
		tr.byID[s.ID] = &s
		tr.order = append(tr.order, &s)
	}
}
