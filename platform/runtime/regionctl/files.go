package regionctl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"sluice.dev/sluice/platform/api/v1alpha1"
)

// RegionFile is where the local supervisor writes a region's status.
func RegionFile(dir, region string) string {
	return filepath.Join(dir, "region-"+region+".json")
}

// ProgressFile is where a local PE writes its progress.
func ProgressFile(dir, pe string) string {
	return filepath.Join(dir, "progress-"+pe+".json")
}

// WriteJSONAtomic writes v as JSON to path through a temporary file and a
// rename, so that a reader sees the old or the new document, never a part.
func WriteJSONAtomic(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, werr := f.Write(b)
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// ReadRegionFile reads a region status written by the supervisor. A
// missing file gives an error wrapping fs.ErrNotExist.
func ReadRegionFile(path string) (*v1alpha1.ConsistentRegionStatus, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var st v1alpha1.ConsistentRegionStatus
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &st, nil
}

// ReadProgressFile reads a PE's progress. A missing file gives an error
// wrapping fs.ErrNotExist.
func ReadProgressFile(path string) (*v1alpha1.RegionProgress, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var p v1alpha1.RegionProgress
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &p, nil
}

// DefaultPollInterval is how often Files reads the region file.
const DefaultPollInterval = 20 * time.Millisecond

// Files is the local-mode Control: the supervisor writes the region's
// status to RegionFile(dir, region), and the PE writes its progress to
// ProgressFile(dir, pe). Commands come from polling the region file.
type Files struct {
	regionPath, progressPath string
	every                    time.Duration
	cmds                     chan Command

	mu   sync.Mutex
	last *v1alpha1.RegionProgress
}

// NewFiles returns the control of PE pe in region region, with files in dir.
// pollEvery <= 0 means DefaultPollInterval.
func NewFiles(dir, region, pe string, pollEvery time.Duration) *Files {
	if pollEvery <= 0 {
		pollEvery = DefaultPollInterval
	}
	return &Files{regionPath: RegionFile(dir, region), progressPath: ProgressFile(dir, pe),
		every: pollEvery, cmds: make(chan Command, 1)}
}

// Commands implements Control.
func (f *Files) Commands() <-chan Command { return f.cmds }

// Report implements Control: it rewrites the progress file unless the
// report equals the last one written.
func (f *Files) Report(_ context.Context, p v1alpha1.RegionProgress) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.last != nil && *f.last == p {
		return nil
	}
	if err := WriteJSONAtomic(f.progressPath, p); err != nil {
		return fmt.Errorf("region progress: %w", err)
	}
	f.last = &p
	return nil
}

// Run implements Control: it polls the region file and delivers every
// change of command, until ctx ends. A missing file is waited for, and so
// is one that does not parse (the supervisor writes atomically, so only a
// stranger's write does that; the next good write replaces it).
func (f *Files) Run(ctx context.Context) error {
	defer close(f.cmds)
	var last *Command
	t := time.NewTicker(f.every)
	defer t.Stop()
	for {
		st, err := ReadRegionFile(f.regionPath)
		if err == nil {
			c := FromStatus(st)
			if last == nil || *last != c {
				deliver(f.cmds, c)
				last = &c
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// deliver puts c in a one-slot channel, replacing a command not yet read:
// only the latest command matters. Run is the only sender.
func deliver(ch chan Command, c Command) {
	for {
		select {
		case ch <- c:
			return
		default:
		}
		select {
		case <-ch:
		default:
		}
	}
}
