// Command experiment runs experiment definitions on a backend and draws
// their figures.
//
//	experiment -name recovery                          # the simulator; results/ and plots/
//	experiment -all                                    # every definition under experiments/defs
//	experiment -name submission -backend kind -baseline -points pes=8,pes=32 -reps 5
//	experiment -all -plots-only -compare results/COMPARISON.md   # redraw figures from results/
//
// Results go to <out>/<experiment>/<backend>[-<tag>].csv (rows of one
// schema) and .json (metadata); figures to <plots>/<experiment>.png and
// .svg, drawn from every backend's CSV of the experiment. With -baseline a
// kind trial is followed by its plain-Kubernetes baseline on the same
// cluster (kind-baseline.csv), and the medians and their ratio are printed.
// A kind run waits for a quiet host and refuses a busy one (-force-busy
// runs anyway and flags every row).
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
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/term"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"sluice.dev/sluice/experiments/results"
	"sluice.dev/sluice/experiments/runner"
	"sluice.dev/sluice/experiments/spec"
	"sluice.dev/sluice/plots"
)

func main() {
	// The kind backends' clients log through controller-runtime; the
	// runner reports on its own.
	ctrllog.SetLogger(logr.Discard())
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
	points, tag                                                      string
	// Real clusters.
	baseline, forceBusy  bool
	quietWait, nodeDelay time.Duration
	command              string
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
	fs.StringVar(&o.points, "points", "", "comma-separated sweep points to run, as the params column writes them (pes=8,pes=32; a;-joined point for several parameters); empty: all")
	fs.StringVar(&o.tag, "tag", "", "write <backend>-<tag>.csv/.json instead of <backend>.csv, beside an earlier run")
	fs.BoolVar(&o.baseline, "baseline", false, "kind: follow each trial with its plain-Kubernetes baseline on the same cluster (kind-baseline rows)")
	fs.BoolVar(&o.forceBusy, "force-busy", false, "kind: run although the host is busy with other work; every row is flagged forced")
	fs.DurationVar(&o.quietWait, "quiet-wait", 3*time.Minute, "kind: how long to wait for a quiet host before refusing")
	fs.DurationVar(&o.nodeDelay, "node-delay", 0, "kind: one-way delay (tc netem) between workers during every trial; the rows are then kind-netem<delay>")
	if err := fs.Parse(args); err != nil {
		return err
	}
	o.command = strings.Join(append([]string{"experiment"}, args...), " ")
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

	var bs []runner.Backend
	if !o.plotsOnly {
		mk, ok := backends[o.backend]
		if !ok {
			return fmt.Errorf("unknown backend %q (have %s)", o.backend, strings.Join(backendNames(), ", "))
		}
		var err error
		if bs, err = mk(ctx, o, stderr); err != nil {
			return fmt.Errorf("backend %s: %w", o.backend, err)
		}
	}
	var points []string
	if o.points != "" {
		points = strings.Split(o.points, ",")
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
				ResultsDir: o.out, Repetitions: o.reps, Seed: o.seed, Points: points, Tag: o.tag,
				Command: o.command, Options: progressOptions(o, stderr)}, bs...)
			if rep != nil {
				for _, br := range rep.Backends {
					fmt.Fprintf(stdout, "%s [%s]: %d rows -> %s, metadata %s\n", name, br.Backend, br.Rows, br.CSV, br.JSON)
					for _, f := range br.Failures {
						fmt.Fprintf(stderr, "%s [%s]: trial %s rep=%d seed=%d failed: %s\n", name, br.Backend, f.Params, f.Repetition, f.Seed, f.Error)
					}
					if len(br.Failures) > 0 {
						failed = append(failed, fmt.Sprintf("%s [%s] (%d trials)", name, br.Backend, len(br.Failures)))
					}
				}
				if len(rep.Backends) > 1 {
					if err := summarize(stdout, rep); err != nil {
						return err
					}
				}
			}
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
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
