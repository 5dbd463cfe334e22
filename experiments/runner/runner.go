// Package runner runs the trials of an experiment definition on a Backend
// and writes the rows and the run's metadata under results/<experiment>/.
package runner

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"k8s.io/utils/clock"

	"sluice.dev/sluice/experiments/results"
	"sluice.dev/sluice/experiments/spec"
)

// Backend runs one trial and returns its measurements. The runner fills
// the identity columns of the rows (experiment, backend, cluster, params,
// repetition, seed); a backend sets Metric, Subject, Value, Unit and
// Flags, in a deterministic order. Run must honour ctx and the trial's
// timeout.
type Backend interface {
	// Name is the backend column of the rows ("sim", "kind").
	Name() string
	Run(ctx context.Context, t spec.Trial) (Result, error)
}

// Result is what a trial gave.
type Result struct {
	Rows []results.Row
	// Info, when set, describes the trial's conditions for the metadata
	// (the runner fills its identity and times).
	Info *results.TrialInfo
}

// Selective is a backend that runs only some trials (a baseline exists for
// some experiments only); the others are skipped, neither run nor failed.
type Selective interface {
	Applies(t spec.Trial) bool
}

// Describer is a backend that says what it ran on, for the metadata: the
// real cluster, the host's quiet test, the simulator's parameters.
type Describer interface {
	Describe(md *results.Metadata)
}

// Options tune a run.
type Options struct {
	// Parallel is the number of trials run at once; 0 means 1.
	Parallel int
	// Progress receives progress reports; nil means none.
	Progress io.Writer
	// TTY draws a redrawn bar instead of plain lines.
	TTY bool
	// Clock times the run (metadata, progress); nil means the real clock.
	Clock clock.PassiveClock
}

// Outcome is the result of running a set of trials on one backend.
type Outcome struct {
	// Rows of every successful trial, in trial order.
	Rows     []results.Row
	Failures []results.Failure
	Info     []results.TrialInfo
}

// RunTrials runs trials on b. A failed trial is recorded and the run goes
// on; only a cancelled ctx stops it early (with ctx's error).
func RunTrials(ctx context.Context, def *spec.Definition, trials []spec.Trial, b Backend, opts Options) (*Outcome, error) {
	outs, err := RunPaired(ctx, def, trials, []Backend{b}, opts)
	if err != nil {
		return nil, err
	}
	return outs[0], nil
}

// RunPaired runs every trial on each backend in turn (a platform trial,
// then its baseline on the same cluster), so that a ratio of the two is
// measured under the same conditions. A failed trial is recorded and the
// run goes on; a cancelled ctx stops it, and the outcomes then hold the
// trials finished before (with the error).
func RunPaired(ctx context.Context, def *spec.Definition, trials []spec.Trial, bs []Backend, opts Options) ([]*Outcome, error) {
	clk := opts.Clock
	if clk == nil {
		clk = clock.RealClock{}
	}
	var prog *Progress
	if opts.Progress != nil {
		names := make([]string, len(bs))
		for i, b := range bs {
			names[i] = b.Name()
		}
		total := 0
		for _, b := range bs {
			for _, t := range trials {
				if sel, ok := b.(Selective); !ok || sel.Applies(t) {
					total++
				}
			}
		}
		prog = NewProgress(opts.Progress, opts.TTY, clk, def.Name+" ["+strings.Join(names, ", ")+"]", total)
		defer prog.Close()
	}
	workers := max(opts.Parallel, 1)
	type done struct {
		res        Result
		err        error
		start, end time.Time
	}
	per := make([][]done, len(bs))
	for i := range per {
		per[i] = make([]done, len(trials))
	}
	next := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				for k, b := range bs {
					t := trials[i]
					if sel, ok := b.(Selective); ok && !sel.Applies(t) {
						continue
					}
					if ctx.Err() != nil {
						per[k][i].err = ctx.Err()
						continue
					}
					name := t.String()
					if len(bs) > 1 {
						name += " [" + b.Name() + "]"
					}
					if prog != nil {
						prog.Started(name)
					}
					start := clk.Now()
					res, err := b.Run(ctx, t)
					if err == nil {
						err = checkRows(res.Rows)
					}
					per[k][i] = done{res: res, err: err, start: start, end: clk.Now()}
					if prog != nil {
						prog.Finished(name, err)
					}
				}
			}
		}()
	}
feed:
	for i := range trials {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	outs := make([]*Outcome, len(bs))
	for k, b := range bs {
		out := &Outcome{}
		for i, t := range trials {
			d := per[k][i]
			if d.err == nil && d.start.IsZero() {
				continue // skipped, or never started (cancelled)
			}
			info := results.TrialInfo{}
			if d.res.Info != nil {
				info = *d.res.Info
			}
			info.Backend, info.Params, info.Repetition, info.Seed = b.Name(), t.Point.String(), t.Repetition, t.Seed
			info.Start, info.End = d.start.UTC(), d.end.UTC()
			if d.err != nil {
				out.Failures = append(out.Failures, results.Failure{Params: t.Point.String(), Repetition: t.Repetition,
					Seed: t.Seed, Error: d.err.Error()})
			} else {
				out.Rows = append(out.Rows, stamp(d.res.Rows, def, b.Name(), t)...)
			}
			if d.res.Info != nil || d.err == nil {
				out.Info = append(out.Info, info)
			}
		}
		outs[k] = out
	}
	return outs, ctx.Err()
}

func checkRows(rows []results.Row) error {
	for i, r := range rows {
		if r.Metric == "" || r.Unit == "" {
			return fmt.Errorf("backend returned row %d without metric or unit", i)
		}
	}
	return nil
}

func stamp(rows []results.Row, def *spec.Definition, backend string, t spec.Trial) []results.Row {
	out := make([]results.Row, len(rows))
	for i, r := range rows {
		r.Experiment, r.Backend, r.Cluster = def.Name, backend, def.Cluster.Name
		r.Params, r.Repetition, r.Seed = t.Point.String(), t.Repetition, t.Seed
		out[i] = r
	}
	return out
}

// Config is one experiment run as the runner binary asks for it.
type Config struct {
	// DefinitionFile is the experiment definition.
	DefinitionFile string
	// WorkloadsDir holds the workload files definitions name.
	WorkloadsDir string
	// ResultsDir receives <experiment>/<backend>[-<tag>].csv and .json.
	ResultsDir string
	// RepoDir is where the git commit is read; empty means the working directory.
	RepoDir string
	// Repetitions and Seed override the definition's when non-zero.
	Repetitions int
	Seed        int64
	// Points, when set, are the sweep points to run (as the params column
	// writes them, e.g. "pes=4"); the others are left out.
	Points []string
	// Tag names the files <backend>-<tag>.csv, to add points beside an
	// earlier run.
	Tag string
	// Command is the command line, for the metadata.
	Command string
	// Adjust, when set, may change the definition before its trials are
	// made (the simulator's profile, say).
	Adjust func(def *spec.Definition) error
	Options
}

// Report says what a run wrote, per backend.
type Report struct {
	Definition *spec.Definition
	Backends   []BackendReport
}

// BackendReport is one backend's files and counts.
type BackendReport struct {
	Backend   string
	CSV, JSON string
	Rows      int
	Failures  []results.Failure
}

// Run loads the definition, runs its trials on the backends (each trial on
// every backend in turn) and writes each backend's CSV and metadata JSON.
// Failed trials are listed in the metadata and the report; the files are
// written even then, and also when ctx is cancelled midway (with the
// trials finished before; the error says so).
func Run(ctx context.Context, cfg Config, bs ...Backend) (*Report, error) {
	if len(bs) == 0 {
		return nil, fmt.Errorf("no backend")
	}
	def, err := spec.Load(cfg.DefinitionFile, cfg.WorkloadsDir)
	if err != nil {
		return nil, err
	}
	if cfg.Repetitions > 0 {
		def.Repetitions = cfg.Repetitions
	}
	if cfg.Seed != 0 {
		def.Seed = cfg.Seed
	}
	if cfg.Adjust != nil {
		if err := cfg.Adjust(def); err != nil {
			return nil, err
		}
	}
	trials, err := def.Trials(cfg.WorkloadsDir)
	if err != nil {
		return nil, err
	}
	if trials, err = SelectPoints(trials, cfg.Points); err != nil {
		return nil, err
	}
	clk := cfg.Clock
	if clk == nil {
		clk = clock.RealClock{}
		cfg.Clock = clk
	}
	start := clk.Now()
	outs, runErr := RunPaired(ctx, def, trials, bs, cfg.Options)
	if outs == nil {
		return nil, runErr
	}
	end := clk.Now()
	repo := cfg.RepoDir
	if repo == "" {
		repo = "."
	}
	commit, dirty := results.GitCommit(context.WithoutCancel(ctx), repo)
	params, _ := json.Marshal(def.Sweep)
	rep := &Report{Definition: def}
	for k, b := range bs {
		out := outs[k]
		if len(out.Rows) == 0 && len(out.Failures) == 0 && len(out.Info) == 0 {
			continue // no trial applied to this backend
		}
		file := b.Name()
		if cfg.Tag != "" {
			file += "-" + cfg.Tag
		}
		csvPath, jsonPath := results.Paths(cfg.ResultsDir, def.Name, file)
		if err := results.WriteFile(csvPath, out.Rows); err != nil {
			return nil, err
		}
		md := &results.Metadata{
			Experiment: def.Name, Backend: b.Name(), DefinitionFile: cfg.DefinitionFile,
			Definition: def.Canonical(), Parameters: params, Seed: def.Seed, Repetitions: def.Repetitions,
			Trials: len(trials), Rows: len(out.Rows), Failures: out.Failures, CSV: csvPath,
			GitCommit: commit, GitDirty: dirty, ToolVersion: results.ToolVersion(), Machine: results.ThisMachine(),
			Start: start.UTC(), End: end.UTC(), Command: cfg.Command, TrialInfo: out.Info,
		}
		if d, ok := b.(Describer); ok {
			d.Describe(md)
		}
		if err := results.WriteMetadataFile(jsonPath, md); err != nil {
			return nil, err
		}
		rep.Backends = append(rep.Backends, BackendReport{Backend: b.Name(), CSV: csvPath, JSON: jsonPath,
			Rows: len(out.Rows), Failures: out.Failures})
	}
	if runErr != nil {
		return rep, fmt.Errorf("interrupted (the rows of the finished trials are written): %w", runErr)
	}
	return rep, nil
}

// SelectPoints keeps the trials of the given sweep points (all when none
// are given); a point that matches no trial is an error.
func SelectPoints(trials []spec.Trial, points []string) ([]spec.Trial, error) {
	if len(points) == 0 {
		return trials, nil
	}
	var out []spec.Trial
	for _, p := range points {
		found := false
		for _, t := range trials {
			if t.Point.String() == p {
				out = append(out, t)
				found = true
			}
		}
		if !found {
			var have []string
			for _, t := range trials {
				if !slices.Contains(have, t.Point.String()) {
					have = append(have, t.Point.String())
				}
			}
			return nil, fmt.Errorf("no sweep point %q (have %s)", p, strings.Join(have, ", "))
		}
	}
	// Trial order and indexes as the definition makes them.
	slices.SortStableFunc(out, func(a, b spec.Trial) int { return a.Index - b.Index })
	for i := range out {
		out[i].Index, out[i].Total = i, len(out)
	}
	return out, nil
}
