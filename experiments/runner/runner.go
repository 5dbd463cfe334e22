// Package runner runs the trials of an experiment definition on a Backend
// and writes the rows and the run's metadata under results/<experiment>/.
package runner

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sync"

	"k8s.io/utils/clock"

	"sluice.dev/sluice/experiments/results"
	"sluice.dev/sluice/experiments/spec"
)

// Backend runs one trial and returns its measurements. The runner fills
// the identity columns of the rows (experiment, backend, cluster, params,
// repetition, seed); a backend sets Metric, Subject, Value and Unit, in a
// deterministic order. Run must honour ctx and the trial's timeout.
type Backend interface {
	// Name is the backend column of the rows ("sim", "kind").
	Name() string
	Run(ctx context.Context, t spec.Trial) ([]results.Row, error)
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

// Outcome is the result of running a set of trials.
type Outcome struct {
	// Rows of every successful trial, in trial order.
	Rows     []results.Row
	Failures []results.Failure
}

// RunTrials runs trials on b. A failed trial is recorded and the run goes
// on; only a cancelled ctx stops it early (with ctx's error).
func RunTrials(ctx context.Context, def *spec.Definition, trials []spec.Trial, b Backend, opts Options) (*Outcome, error) {
	clk := opts.Clock
	if clk == nil {
		clk = clock.RealClock{}
	}
	var prog *Progress
	if opts.Progress != nil {
		prog = NewProgress(opts.Progress, opts.TTY, clk, def.Name+" ["+b.Name()+"]", len(trials))
		defer prog.Close()
	}
	workers := max(opts.Parallel, 1)
	perTrial := make([][]results.Row, len(trials))
	errs := make([]error, len(trials))
	next := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				t := trials[i]
				if prog != nil {
					prog.Started(t.String())
				}
				rows, err := b.Run(ctx, t)
				if err == nil {
					err = checkRows(rows)
				}
				errs[i] = err
				if err == nil {
					perTrial[i] = stamp(rows, def, b.Name(), t)
				}
				if prog != nil {
					prog.Finished(t.String(), err)
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
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := &Outcome{}
	for i, t := range trials {
		if errs[i] != nil {
			out.Failures = append(out.Failures, results.Failure{Params: t.Point.String(), Repetition: t.Repetition,
				Seed: t.Seed, Error: errs[i].Error()})
			continue
		}
		out.Rows = append(out.Rows, perTrial[i]...)
	}
	return out, nil
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
	// ResultsDir receives <experiment>/<backend>.csv and .json.
	ResultsDir string
	// RepoDir is where the git commit is read; empty means the working directory.
	RepoDir string
	// Repetitions and Seed override the definition's when non-zero.
	Repetitions int
	Seed        int64
	Options
}

// Report says what a run wrote.
type Report struct {
	Definition *spec.Definition
	CSV, JSON  string
	Rows       int
	Failures   []results.Failure
}

// Run loads the definition, runs all its trials on b and writes the CSV and
// the metadata JSON. Failed trials are listed in the metadata and returned
// in the report; the files are written even then.
func Run(ctx context.Context, cfg Config, b Backend) (*Report, error) {
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
	trials, err := def.Trials(cfg.WorkloadsDir)
	if err != nil {
		return nil, err
	}
	clk := cfg.Clock
	if clk == nil {
		clk = clock.RealClock{}
		cfg.Clock = clk
	}
	start := clk.Now()
	out, err := RunTrials(ctx, def, trials, b, cfg.Options)
	if err != nil {
		return nil, err
	}
	end := clk.Now()
	csvPath, jsonPath := results.Paths(cfg.ResultsDir, def.Name, b.Name())
	if err := results.WriteFile(csvPath, out.Rows); err != nil {
		return nil, err
	}
	repo := cfg.RepoDir
	if repo == "" {
		repo = "."
	}
	commit, dirty := results.GitCommit(ctx, repo)
	params, _ := json.Marshal(def.Sweep)
	md := &results.Metadata{
		Experiment: def.Name, Backend: b.Name(), DefinitionFile: cfg.DefinitionFile,
		Definition: def.Canonical(), Parameters: params, Seed: def.Seed, Repetitions: def.Repetitions,
		Trials: len(trials), Rows: len(out.Rows), Failures: out.Failures, CSV: csvPath,
		GitCommit: commit, GitDirty: dirty, ToolVersion: results.ToolVersion(), Machine: results.ThisMachine(),
		Start: start.UTC(), End: end.UTC(),
	}
	if err := results.WriteMetadataFile(jsonPath, md); err != nil {
		return nil, err
	}
	return &Report{Definition: def, CSV: csvPath, JSON: jsonPath, Rows: len(out.Rows), Failures: out.Failures}, nil
}
