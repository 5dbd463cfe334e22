// Command kind-experiment runs experiment definitions on a real kind
// cluster, each trial on the platform (backend "kind") followed by its
// plain-Kubernetes baseline ("kind-baseline") on the same cluster, and
// writes results/<experiment>/kind.csv and kind-baseline.csv (rows of the
// shared schema; the cluster column is the kind cluster's name) with their
// metadata JSON.
//
//	go run ./experiments/kindbackend/cmd/kind-experiment -name submission -points pes=4,pes=16 -reps 3
//
// The cluster (one control plane, three workers) is created when missing
// (-create), the images of `make image` are loaded and the operator is
// deployed (-deploy).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"sluice.dev/sluice/experiments/kindbackend"
	"sluice.dev/sluice/experiments/results"
	"sluice.dev/sluice/experiments/spec"
	"sluice.dev/sluice/kindconfig"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "kind-experiment:", err)
		os.Exit(1)
	}
}

func run() error {
	name := flag.String("name", "", "experiment (experiments/defs/<name>.yaml)")
	defs := flag.String("defs", "experiments/defs", "definitions directory")
	workloads := flag.String("workloads", "workloads", "workloads directory")
	out := flag.String("out", "results", "results directory")
	clusterName := flag.String("cluster", "sluice-exp", "kind cluster name")
	create := flag.Bool("create", true, "create the cluster when it does not exist")
	deploy := flag.Bool("deploy", true, "load sluice-operator:dev and sluice-pe:dev and deploy the operator")
	reps := flag.Int("reps", 0, "repetitions (0: the definition's)")
	points := flag.String("points", "", "comma-separated sweep points to run (as in the params column, e.g. pes=4), empty: all")
	baseline := flag.Bool("baseline", true, "run each trial's plain-Kubernetes baseline after it (when the experiment has one)")
	tag := flag.String("tag", "", "write <backend>-<tag>.csv/.json instead of <backend>.csv, to add sweep points beside an earlier run")
	nodeDelay := flag.Duration("node-delay", 0, "one-way delay (tc netem) added to traffic between kind workers during every trial; the backend is then named kind-netem<delay>")
	flag.Parse()
	if *name == "" {
		return fmt.Errorf("-name is required")
	}
	ctrllog.SetLogger(logr.Discard())
	// SIGTERM too: trials clean up their namespace and restart stopped nodes.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	repo, _ := os.Getwd()
	def, err := spec.Load(filepath.Join(*defs, *name+".yaml"), *workloads)
	if err != nil {
		return err
	}
	if *reps > 0 {
		def.Repetitions = *reps
	}
	trials, err := def.Trials(*workloads)
	if err != nil {
		return err
	}
	if *points != "" {
		want := strings.Split(*points, ",")
		trials = slices.DeleteFunc(trials, func(t spec.Trial) bool { return !slices.Contains(want, t.Point.String()) })
		if len(trials) == 0 {
			return fmt.Errorf("no trial matches -points %s", *points)
		}
	}
	exists, err := kindconfig.Exists(*clusterName)
	if err != nil {
		return err
	}
	if !exists && !*create {
		return fmt.Errorf("kind cluster %s does not exist (use -create)", *clusterName)
	}
	c, err := kindconfig.Ensure(ctx, kindconfig.Options{Name: *clusterName, Shape: kindconfig.ThreeWorkers, RepoDir: repo, Log: os.Stderr})
	if err != nil {
		return err
	}
	if *deploy {
		if err := c.LoadImages(ctx, kindconfig.OperatorImage, kindconfig.PEImage); err != nil {
			return err
		}
		if err := c.DeployOperator(ctx, true); err != nil {
			return err
		}
	}
	backends := []*kindbackend.Backend{}
	for _, m := range []kindbackend.Mode{kindbackend.Platform, kindbackend.Baseline} {
		if m == kindbackend.Baseline && (!*baseline || !kindbackend.HasBaseline(trials[0].Scenario)) {
			continue
		}
		b, err := kindbackend.New(c, m, os.Stderr)
		if err != nil {
			return err
		}
		b.NodeDelay = *nodeDelay
		backends = append(backends, b)
	}
	start := time.Now()
	rows := map[string][]results.Row{}
	fails := map[string][]results.Failure{}
	interrupted := false
trials:
	for i, t := range trials {
		t.Index, t.Total = i, len(trials)
		for _, b := range backends {
			r, err := b.Run(ctx, t)
			if ctx.Err() != nil {
				// Keep the trials already done; the interrupted one is
				// listed as failed.
				interrupted = true
				fails[b.Name()] = append(fails[b.Name()], results.Failure{Params: t.Point.String(), Repetition: t.Repetition, Seed: t.Seed, Error: "interrupted"})
				break trials
			}
			if err != nil {
				fmt.Fprintf(os.Stderr, "%s: trial %s failed: %v\n", b.Name(), t, err)
				fails[b.Name()] = append(fails[b.Name()], results.Failure{Params: t.Point.String(), Repetition: t.Repetition, Seed: t.Seed, Error: err.Error()})
				continue
			}
			for _, x := range r {
				x.Experiment, x.Backend, x.Cluster = def.Name, b.Name(), b.ClusterName()
				x.Params, x.Repetition, x.Seed = t.Point.String(), t.Repetition, t.Seed
				rows[b.Name()] = append(rows[b.Name()], x)
			}
			fmt.Fprintf(os.Stderr, "%s: trial %d/%d %s: %d rows\n", b.Name(), i+1, len(trials), t, len(r))
		}
	}
	end := time.Now()
	commit, dirty := results.GitCommit(context.WithoutCancel(ctx), repo)
	params, _ := json.Marshal(def.Sweep)
	for _, b := range backends {
		file := b.Name()
		if *tag != "" {
			file += "-" + *tag
		}
		csvPath, jsonPath := results.Paths(*out, def.Name, file)
		if err := results.WriteFile(csvPath, rows[b.Name()]); err != nil {
			return err
		}
		md := &results.Metadata{Experiment: def.Name, Backend: b.Name(), DefinitionFile: filepath.Join(*defs, *name+".yaml"),
			Definition: def.Canonical(), Parameters: params, Seed: def.Seed, Repetitions: def.Repetitions,
			Trials: len(trials), Rows: len(rows[b.Name()]), Failures: fails[b.Name()], CSV: csvPath,
			GitCommit: commit, GitDirty: dirty, ToolVersion: results.ToolVersion(), Machine: results.ThisMachine(),
			Start: start.UTC(), End: end.UTC()}
		if err := results.WriteMetadataFile(jsonPath, md); err != nil {
			return err
		}
		fmt.Printf("%s [%s]: %d rows -> %s (%d failed trials)\n", def.Name, b.Name(), len(rows[b.Name()]), csvPath, len(fails[b.Name()]))
	}
	summarize(backends[0].Name(), rows)
	if interrupted {
		return fmt.Errorf("interrupted: rows of the finished trials written")
	}
	return nil
}

// summarize prints the median of each metric per point and backend, and
// the platform/baseline ratio of the medians.
func summarize(platform string, rows map[string][]results.Row) {
	type key struct{ point, metric string }
	med := map[string]map[key]float64{}
	var keys []key
	for backend, rs := range rows {
		vals := map[key][]float64{}
		for _, r := range rs {
			k := key{r.Params, r.Metric}
			vals[k] = append(vals[k], r.Value)
		}
		med[backend] = map[key]float64{}
		for k, v := range vals {
			sort.Float64s(v)
			med[backend][k] = v[len(v)/2]
			if len(v)%2 == 0 {
				med[backend][k] = (v[len(v)/2-1] + v[len(v)/2]) / 2
			}
			if !slices.Contains(keys, k) {
				keys = append(keys, k)
			}
		}
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].point != keys[j].point {
			return keys[i].point < keys[j].point
		}
		return keys[i].metric < keys[j].metric
	})
	fmt.Printf("%-28s %-24s %12s %14s %8s\n", "point", "metric", platform, "kind-baseline", "ratio")
	for _, k := range keys {
		p, okp := med[platform][k]
		bl, okb := med["kind-baseline"][k]
		ps, bs, ratio := "-", "-", "-"
		if okp {
			ps = fmt.Sprintf("%.3f", p)
		}
		if okb {
			bs = fmt.Sprintf("%.3f", bl)
		}
		if okp && okb && bl > 0 {
			ratio = fmt.Sprintf("%.2f", p/bl)
		}
		fmt.Printf("%-28s %-24s %12s %14s %8s\n", k.point, k.metric, ps, bs, ratio)
	}
}
