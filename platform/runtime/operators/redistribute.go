package operators

import (
	"encoding/json"
	"fmt"
)

// Redistribution says how the checkpointed state of a parallel region's
// channels at one width is dealt to the channels at another width
// (docs/parallel-regions.md, "Keyed state on a width change").
type Redistribution struct {
	// Parts are the snapshots of the operator's copy in every channel of
	// the checkpoint, indexed by that channel (so len(Parts) is the
	// checkpoint's width).
	Parts [][]byte
	// Channel and Width are those of the copy being rebuilt.
	Channel, Width int
	// ByKey: the region's split partitions by key, so a key belongs to
	// channel Port(key, Width). Otherwise (round robin) keys are spread
	// over every channel, and old channel c's whole state goes to channel
	// c mod Width.
	ByKey bool
	// RestoreSeq is the checkpoint being restored (> 0).
	RestoreSeq uint64
}

// Owns says whether a key held by old channel old belongs to the rebuilt
// copy.
func (r Redistribution) Owns(key uint64, old int) bool {
	if r.ByKey {
		return Port(key, r.Width) == r.Channel
	}
	return old%r.Width == r.Channel
}

// Heir says whether the rebuilt copy inherits the non-keyed counters of
// old channel old (late tuples, loss still to report, tracker counts):
// each old channel has exactly one heir, so totals are kept, not
// multiplied by the new width.
func (r Redistribution) Heir(old int) bool { return old%r.Width == r.Channel }

// Existed says whether the rebuilt copy's channel was part of the
// checkpoint (it then continues its own output numbering).
func (r Redistribution) Existed() bool { return r.Channel < len(r.Parts) }

// FreshEpoch is the tuple epoch in which a channel that did not exist in
// checkpoint RestoreSeq numbers its output from 0. A sink may have seen
// that channel's origin before (the region was this wide earlier), at a
// higher sequence number: a new epoch makes it start a new sequence
// rather than count duplicates. Region tuples otherwise carry epoch 1, and
// a channel created at checkpoint S gets 1+S: a channel's earlier era
// started at an earlier checkpoint, so its epoch was smaller.
func (r Redistribution) FreshEpoch() uint32 { return uint32(1 + r.RestoreSeq) }

// Redistributor is a stateful operator whose state can be rebuilt for a
// channel of another width from the snapshots of every channel.
// Redistribute returns the snapshot to Restore; it does not read or change
// the receiver's state (it runs off the engine's lock).
type Redistributor interface {
	Redistribute(r Redistribution) ([]byte, error)
}

// mergeOrigins merges input trackers of several channels: per origin the
// highest epoch and, in it, the highest Next (every tuple below it was
// handled by some old channel, so one below it again is a duplicate), and
// the counters of the channels r makes this copy heir of. Every merged
// origin rejoins: its next tuple sets the position, since the skips owed
// by operators upstream (a split, a filter) were owed to the old
// channels.
func mergeOrigins(parts [][]OriginStats, r Redistribution) []OriginStats {
	var out []OriginStats
	idx := map[uint32]int{}
	for old, stats := range parts {
		for _, s := range stats {
			i, ok := idx[s.ID]
			if !ok {
				i = len(out)
				idx[s.ID] = i
				out = append(out, OriginStats{ID: s.ID, Epoch: s.Epoch, Next: s.Next})
			}
			m := &out[i]
			switch {
			case s.Epoch > m.Epoch:
				m.Epoch, m.Next = s.Epoch, s.Next
			case s.Epoch == m.Epoch:
				m.Next = max(m.Next, s.Next)
			}
			if r.Heir(old) {
				m.Tuples += s.Tuples
				m.Missing += s.Missing
				m.Duplicates += s.Duplicates
				m.Reordered += s.Reordered
				m.Skipped += s.Skipped
				m.UpstreamLost += s.UpstreamLost
				m.Restarts += s.Restarts
				m.ValueSum += s.ValueSum
			}
		}
	}
	for i := range out {
		out[i].Rejoin = true
	}
	return out
}

// Redistribute rebuilds the owed skips of a filter in a channel: skips
// were owed to the old channel's downstream, whose trackers rejoin, so
// only reported loss is kept (each old channel's by its heir).
func (f *Filter) Redistribute(r Redistribution) ([]byte, error) {
	lost := map[uint64]uint32{}
	for old, b := range r.Parts {
		var es []pendingEntry
		if err := json.Unmarshal(b, &es); err != nil {
			return nil, fmt.Errorf("filter redistribute (channel %d): %w", old, err)
		}
		if r.Heir(old) {
			for _, e := range es {
				lost[e.Origin] += e.Lost
			}
		}
	}
	var p pending
	for o, l := range lost {
		if l > 0 {
			if p.m == nil {
				p.m = map[uint64]owed{}
			}
			p.m[o] = owed{lost: l}
		}
	}
	return json.Marshal(p.entries())
}
