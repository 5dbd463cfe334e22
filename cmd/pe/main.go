// Command pe is the Sluice processing-element runtime.
//
//	pe run   --config /etc/sluice/pe/pe.json --ports /etc/sluice/job/ports.json
//	pe local --job workloads/pipeline.yaml [--dir DIR] [--base-port N] [--duration D] [--restart] [--job-store] [--exchange-dir DIR]
//	pe bench [--quick]
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/peconfig"
	"sluice.dev/sluice/platform/runtime/bench"
	"sluice.dev/sluice/platform/runtime/engine"
	"sluice.dev/sluice/platform/runtime/health"
	"sluice.dev/sluice/platform/runtime/local"
	"sluice.dev/sluice/platform/runtime/metrics"
)

func usage() {
	fmt.Fprintln(os.Stderr, `usage:
  pe run   --config FILE --ports FILE [--listen-host H] [--listen-base N] [--health-addr ADDR]
           [--resolve service|local:FILE|local:pe=port,...] [--summary FILE] [--grace D] [--region-dir DIR]
  pe local --job FILE [--dir DIR] [--base-port N] [--duration D] [--restart] [--job-store] [--exchange-dir DIR]
  pe bench [--quick]
  pe prepare-store --path DIR --owner UID:GID`)
	os.Exit(2)
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "run":
		err = runCmd(os.Args[2:])
	case "local":
		err = localCmd(os.Args[2:])
	case "bench":
		err = benchCmd(os.Args[2:])
	case "prepare-store":
		err = prepareStoreCmd(os.Args[2:])
	default:
		usage()
	}
	var stopped stoppedBySignal
	if errors.As(err, &stopped) {
		// A PE never ends on its own; one stopped by a signal did not
		// finish, so it exits like a process killed by that signal. A
		// liveness-probe kill then makes the pod Failed (relaunched under
		// restartFailed), not Succeeded.
		os.Exit(128 + int(stopped.sig))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "pe:", err)
		os.Exit(1)
	}
}

// stoppedBySignal is how runCmd reports a graceful stop on a signal.
type stoppedBySignal struct{ sig syscall.Signal }

func (s stoppedBySignal) Error() string { return "stopped by " + s.sig.String() }

func runCmd(args []string) error {
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	cfgPath := fs.String("config", filepath.Join(v1alpha1.ConfigMountPath, v1alpha1.PEConfigKey), "PE configuration (pe.json)")
	portsPath := fs.String("ports", filepath.Join(v1alpha1.PortTableMountPath, v1alpha1.PortTableKey), "job port table (ports.json)")
	host := fs.String("listen-host", "", "address to listen on for input ports (empty: all)")
	base := fs.Int("listen-base", v1alpha1.PEInputPortBase, "TCP port of PE input port 0")
	healthAddr := fs.String("health-addr", ":"+strconv.Itoa(v1alpha1.PEHealthPort), "HTTP address of /healthz, /readyz, /metrics, /summary")
	resolve := fs.String("resolve", "service", "how PE names resolve: service (<pe>.<ns>.svc:10000+i), local:FILE (resolve.json), local:pe=base,...")
	summary := fs.String("summary", "", "file the sinks' summary is written to on completion, SIGUSR1 and exit")
	grace := fs.Duration("grace", 8*time.Second, "time allowed for a graceful stop on SIGTERM")
	batch := fs.Int("batch-bytes", 64<<10, "frame size at which a batch is sent")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	regionDir := fs.String("region-dir", "", "local mode: directory of the consistent-region files (region-<name>.json, progress-<pe>.json); empty: watch the ConsistentRegion in the cluster")
	importDir := fs.String("import-dir", "", "local mode: directory of the Import files (import-<resource>.json); empty: watch the Import objects in the cluster")
	importSummary := fs.String("import-summary", "", "file the import operators' summary (received, missed per export) is written to with the sinks' summary")
	fs.Parse(args)

	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*level)); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lv}))
	b, err := os.ReadFile(*cfgPath)
	if err != nil {
		return err
	}
	pe, err := peconfig.ParsePE(b)
	if err != nil {
		return err
	}
	if b, err = os.ReadFile(*portsPath); err != nil {
		return err
	}
	ports, err := peconfig.ParsePortTable(b)
	if err != nil {
		return err
	}
	ns := pe.Namespace
	if ns == "" {
		ns = os.Getenv("POD_NAMESPACE")
	}
	res, err := resolver(*resolve, ns)
	if err != nil {
		return err
	}
	log = log.With("pe", pe.Name)
	if pod := os.Getenv("POD_NAME"); pod != "" {
		log = log.With("pod", pod)
	}
	ctl, err := regionControl(pe, *regionDir, ns, 0, log)
	if err != nil {
		return err
	}
	watch, err := importWatch(pe, *importDir, ns, log)
	if err != nil {
		return err
	}
	var store engine.CheckpointStore
	if ctl != nil {
		st, err := openStore(pe.Store)
		if err != nil {
			return err
		}
		if st == nil {
			return fmt.Errorf("PE %s is in region %s but has no checkpoint store", pe.Name, pe.Region.Name)
		}
		store = st
		log.Info("consistent region", "region", pe.Region.Name, "resource", pe.Region.Resource, "store", pe.Store.Type, "local", *regionDir != "")
	}
	m := metrics.New()
	epoch := uint32(time.Now().UnixNano()>>10) ^ uint32(os.Getpid())<<20
	var e *engine.Engine
	writeSummary := func() {
		if err := writeImportSummary(*importSummary, pe.Name, e); err != nil {
			log.Error("writing import summary", "err", err)
		}
		if *summary == "" || e == nil {
			return
		}
		if err := writeSummaryFile(*summary, local.SummaryFile{PE: pe.Name, Sinks: e.Summaries()}); err != nil {
			log.Error("writing summary", "err", err)
		}
	}
	e, err = engine.New(engine.Options{PE: pe, Ports: ports, ListenHost: *host, ListenBase: *base, Resolve: res,
		Metrics: m, Log: log, Epoch: epoch, BatchBytes: *batch, Region: ctl, Store: store, ImportWatch: watch, OnComplete: func() {
			log.Info("all sinks complete")
			writeSummary()
		}})
	if err != nil {
		return err
	}
	hl, err := net.Listen("tcp", *healthAddr)
	if err != nil {
		return fmt.Errorf("health: %w", err)
	}
	srv := &http.Server{Handler: health.Handler(m.Registry, e.Ready, func() any { return e.Summaries() }),
		ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(hl)
	if err := e.Start(context.Background()); err != nil {
		return err
	}
	log.Info("running", "operators", len(pe.Operators), "inputs", len(pe.Inputs), "listenBase", *base, "health", hl.Addr().String())

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGUSR1)
	for sig := range sigs {
		if sig == syscall.SIGUSR1 {
			writeSummary()
			continue
		}
		log.Info("stopping", "signal", sig.String(), "grace", *grace)
		start := time.Now()
		e.Shutdown(*grace)
		writeSummary()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		srv.Shutdown(ctx)
		cancel()
		log.Info("stopped", "took", time.Since(start).Round(time.Millisecond))
		if s, ok := sig.(syscall.Signal); ok {
			return stoppedBySignal{sig: s}
		}
		return nil
	}
	return nil
}

func resolver(spec, ns string) (engine.Resolver, error) {
	switch {
	case spec == "service" || spec == "":
		return engine.ServiceResolver(ns), nil
	case strings.HasPrefix(spec, "local:"):
		arg := strings.TrimPrefix(spec, "local:")
		if strings.Contains(arg, "=") {
			rf := &local.ResolveFile{PEs: map[string]local.Endpoint{}}
			for _, kv := range strings.Split(arg, ",") {
				k, v, _ := strings.Cut(kv, "=")
				p, err := strconv.Atoi(v)
				if err != nil {
					return nil, fmt.Errorf("--resolve: %q: %w", kv, err)
				}
				rf.PEs[k] = local.Endpoint{Base: p}
			}
			return rf.Resolve, nil
		}
		rf, err := local.LoadResolveFile(arg)
		if err != nil {
			return nil, err
		}
		return rf.Resolve, nil
	}
	return nil, fmt.Errorf("--resolve %q: want service or local:...", spec)
}

func writeSummaryFile(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func localCmd(args []string) error {
	fs := flag.NewFlagSet("local", flag.ExitOnError)
	jobPath := fs.String("job", "", "Job YAML")
	dir := fs.String("dir", "", "directory for configuration files, logs and summaries (default: a new temporary one)")
	basePort := fs.Int("base-port", 20000, "first loopback port to use")
	duration := fs.Duration("duration", 0, "stop after this long (0: when every sink completes, or on Ctrl-C)")
	restart := fs.Bool("restart", false, "restart PE processes that die (always on for a Job with consistent regions)")
	jobStore := fs.Bool("job-store", false, "consistent regions use the Job's checkpointStore instead of a filesystem store in DIR/checkpoints")
	exchangeDir := fs.String("exchange-dir", filepath.Join(os.TempDir(), "sluice-exchange"),
		"where local runs of Jobs with exports and imports find each other (one folder per namespace)")
	fs.Parse(args)
	if *jobPath == "" {
		return errors.New("local: --job is required")
	}
	job, err := local.LoadJob(*jobPath)
	if err != nil {
		return err
	}
	if *dir == "" {
		if *dir, err = os.MkdirTemp("", "sluice-local-"); err != nil {
			return err
		}
	}
	bin, err := os.Executable()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return local.Run(ctx, local.Config{Binary: bin, Dir: *dir, BasePort: *basePort, Job: job, Supervise: *restart, JobStore: *jobStore,
		ExchangeDir: *exchangeDir},
		*duration, os.Stdout)
}

func benchCmd(args []string) error {
	fs := flag.NewFlagSet("bench", flag.ExitOnError)
	quick := fs.Bool("quick", false, "shorter runs")
	rawWriter := fs.String("raw-writer", "", "internal: ADDR,SIZE,DURATION: write to ADDR for the raw TCP baseline")
	fs.Parse(args)
	if *rawWriter != "" {
		f := strings.Split(*rawWriter, ",")
		if len(f) != 3 {
			return fmt.Errorf("--raw-writer %q", *rawWriter)
		}
		size, err := strconv.Atoi(f[1])
		if err != nil {
			return err
		}
		d, err := time.ParseDuration(f[2])
		if err != nil {
			return err
		}
		return bench.RawWriter(f[0], size, d)
	}
	bin, err := os.Executable()
	if err != nil {
		return err
	}
	return bench.Run(os.Stdout, bench.Options{Binary: bin, Quick: *quick})
}
