// Command experiment runs experiment definitions on a backend and draws
// their figures.
//
//	experiment -name recovery                 # run on the simulator, write results/ and plots/
//	experiment -all                           # every definition under experiments/defs
//	experiment -name gc -backend kind         # a real kind cluster (own issue)
//	experiment -all -plots-only               # redraw figures from the CSVs in results/
//
// Results go to <out>/<experiment>/<backend>.csv (rows of one schema) and
// <backend>.json (metadata); figures to <plots>/<experiment>.png and .svg,
// drawn from every backend's CSV of the experiment.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/term"

	"sluice.dev/sluice/experiments/results"
	"sluice.dev/sluice/experiments/runner"
	"sluice.dev/sluice/experiments/spec"
	"sluice.dev/sluice/plots"
)

// backends are the runnable backends by name.
var backends = map[string]func() (runner.Backend, error){}

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "experiment:", err)
		os.Exit(1)
	}
}

type options struct {
	name, backend, defs, workloads, out, plotsDir, progress, compare string
	all, plotsOnly                                                   bool
	reps, parallel                                                   int
	seed                                                             int64
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o options
	fs := flag.NewFlagSet("experiment", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.name, "name", "", "experiment to run (a file experiments/defs/<name>.yaml)")
	fs.BoolVar(&o.all, "all", false, "run every experiment under -defs")
	fs.StringVar(&o.backend, "backend", "sim", "backend: "+strings.Join(backendNames(), ", "))
	fs.StringVar(&o.defs, "defs", "experiments/defs", "directory of experiment definitions")
	fs.StringVar(&o.workloads, "workloads", "workloads", "directory of workload Job files")
	fs.StringVar(&o.out, "out", "results", "results directory")
	fs.StringVar(&o.plotsDir, "plots", "plots", "figure directory; empty to draw none")
	fs.StringVar(&o.compare, "compare", "", "write a markdown table of simulated vs measured medians and p99s of the experiments to this file")
	fs.BoolVar(&o.plotsOnly, "plots-only", false, "do not run; redraw figures from existing results")
	fs.IntVar(&o.reps, "reps", 0, "repetitions per sweep point (0: the definition's)")
	fs.Int64Var(&o.seed, "seed", 0, "seed (0: the definition's)")
	fs.IntVar(&o.parallel, "parallel", 1, "trials run at once")
	fs.StringVar(&o.progress, "progress", "auto", "progress on stderr: auto (bar on a terminal, else lines), bar, lines, none")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if (o.name == "") == !o.all {
		return errors.New("give exactly one of -name <experiment> and -all")
	}
	names := []string{o.name}
	if o.all {
		var err error
		if names, err = spec.Names(o.defs); err != nil {
			return err
		}
		if len(names) == 0 {
			return fmt.Errorf("no definitions in %s", o.defs)
		}
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt)
	defer stop()

	var b runner.Backend
	if !o.plotsOnly {
		mk, ok := backends[o.backend]
		if !ok {
			return fmt.Errorf("unknown backend %q (have %s)", o.backend, strings.Join(backendNames(), ", "))
		}
		var err error
		if b, err = mk(); err != nil {
			return fmt.Errorf("backend %s: %w", o.backend, err)
		}
	}
	var failed []string
	for _, name := range names {
		defPath := filepath.Join(o.defs, name+".yaml")
		def, err := spec.Load(defPath, o.workloads)
		if err != nil {
			return err
		}
		if !o.plotsOnly {
			rep, err := runner.Run(ctx, runner.Config{DefinitionFile: defPath, WorkloadsDir: o.workloads,
				ResultsDir: o.out, Repetitions: o.reps, Seed: o.seed, Options: progressOptions(o, stderr)}, b)
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			fmt.Fprintf(stdout, "%s: %d rows -> %s, metadata %s\n", name, rep.Rows, rep.CSV, rep.JSON)
			for _, f := range rep.Failures {
				fmt.Fprintf(stderr, "%s: trial %s rep=%d seed=%d failed: %s\n", name, f.Params, f.Repetition, f.Seed, f.Error)
			}
			if len(rep.Failures) > 0 {
				failed = append(failed, fmt.Sprintf("%s (%d trials)", name, len(rep.Failures)))
			}
		}
		if o.plotsDir != "" {
			rows, err := results.ReadExperiment(o.out, name)
			if err != nil {
				return err
			}
			if len(rows) == 0 {
				// Not fatal: the backend may not measure this experiment's
				// metrics yet; the other experiments still get figures.
				fmt.Fprintf(stderr, "%s: no rows under %s; no figure drawn\n", name, filepath.Join(o.out, name))
				continue
			}
			png, svg, err := plots.Render(def, rows, o.plotsDir)
			if err != nil {
				return fmt.Errorf("%s: plotting: %w", name, err)
			}
			fmt.Fprintf(stdout, "%s: figure %s, %s\n", name, png, svg)
		}
	}
	if o.compare != "" {
		if err := writeComparison(o.out, names, o.compare); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "comparison of simulated and measured results -> %s\n", o.compare)
	}
	if len(failed) > 0 {
		return fmt.Errorf("failed trials in %s (see the metadata JSON)", strings.Join(failed, ", "))
	}
	return nil
}

func progressOptions(o options, stderr io.Writer) runner.Options {
	opts := runner.Options{Parallel: o.parallel, Progress: stderr}
	switch o.progress {
	case "bar":
		opts.TTY = true
	case "lines":
	case "none":
		opts.Progress = nil
	default:
		if f, ok := stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			opts.TTY = true
		}
	}
	return opts
}

func backendNames() []string {
	var out []string
	for n := range backends {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// writeComparison tabulates the simulator against every measured backend.
func writeComparison(dir string, names []string, path string) error {
	var rows []results.Row
	for _, name := range names {
		r, err := results.ReadExperiment(dir, name)
		if err != nil {
			return err
		}
		rows = append(rows, r...)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := results.WriteComparison(f, results.Compare(rows)); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}
