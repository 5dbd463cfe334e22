// Package regionctl is how a PE process talks with its consistent region:
// it receives the region's commands (the state of its ConsistentRegion) and
// reports its own progress. In a cluster the commands come from watching the
// ConsistentRegion and the progress is an annotation on the PE's own pod; in
// local mode both are files in the run directory. docs/consistent-regions.md
// describes the protocol.
package regionctl

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"sluice.dev/sluice/platform/api/v1alpha1"
)

// Command is the part of a ConsistentRegion's status that a PE acts on.
// It is comparable: the controls deliver a command only when it changed.
type Command struct {
	State            v1alpha1.RegionState
	Epoch            int64
	CurrentSeq       int64
	LastCompletedSeq int64
	RestoreSeq       int64
	// Widths are the epoch's parallel widths, encoded by EncodeWidths.
	Widths string
}

// FromStatus extracts the command from a region's status.
func FromStatus(s *v1alpha1.ConsistentRegionStatus) Command {
	return Command{State: s.State, Epoch: s.Epoch, CurrentSeq: s.CurrentSeq,
		LastCompletedSeq: s.LastCompletedSeq, RestoreSeq: s.RestoreSeq, Widths: EncodeWidths(s.ParallelWidths)}
}

// EncodeWidths writes parallel widths as "name=width,..." in name order.
func EncodeWidths(w map[string]int32) string {
	parts := make([]string, 0, len(w))
	for name, width := range w {
		parts = append(parts, fmt.Sprintf("%s=%d", name, width))
	}
	slices.Sort(parts)
	return strings.Join(parts, ",")
}

// Width is the epoch's width of a parallel region, or 0 when the command
// does not say.
func (c Command) Width(parallel string) int32 {
	for _, part := range strings.Split(c.Widths, ",") {
		name, w, ok := strings.Cut(part, "=")
		if ok && name == parallel {
			n, err := strconv.ParseInt(w, 10, 32)
			if err == nil {
				return int32(n)
			}
		}
	}
	return 0
}

// Control connects a PE process with its region.
type Control interface {
	// Commands delivers the region's command whenever it changes. Only the
	// latest matters: a slow reader may miss intermediate ones. The channel
	// is closed when ctx given to Run ends.
	Commands() <-chan Command
	// Report publishes the PE's progress; the latest report wins.
	Report(ctx context.Context, p v1alpha1.RegionProgress) error
	// Run drives the control until ctx ends.
	Run(ctx context.Context) error
}
