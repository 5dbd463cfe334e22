// Package regionctl is how a PE process talks with its consistent region:
// it receives the region's commands (the state of its ConsistentRegion) and
// reports its own progress. In a cluster the commands come from watching the
// ConsistentRegion and the progress is an annotation on the PE's own pod; in
// local mode both are files in the run directory. docs/consistent-regions.md
// describes the protocol.
package regionctl

import (
	"context"

	"sluice.dev/sluice/platform/api/v1alpha1"
)

// Command is the part of a ConsistentRegion's status that a PE acts on.
type Command struct {
	State            v1alpha1.RegionState
	Epoch            int64
	CurrentSeq       int64
	LastCompletedSeq int64
	RestoreSeq       int64
}

// FromStatus extracts the command from a region's status.
func FromStatus(s *v1alpha1.ConsistentRegionStatus) Command {
	return Command{State: s.State, Epoch: s.Epoch, CurrentSeq: s.CurrentSeq,
		LastCompletedSeq: s.LastCompletedSeq, RestoreSeq: s.RestoreSeq}
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
