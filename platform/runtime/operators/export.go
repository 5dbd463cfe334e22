package operators

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/peconfig"
	"sluice.dev/sluice/platform/runtime/exchange"
	"sluice.dev/sluice/platform/runtime/wire"
)

// ExchangeEnv is what export and import operators need from their PE.
type ExchangeEnv struct {
	// Job owning the PE: an export serves the Export object named
	// app.ExportResourceName(Job, operator).
	Job string
	// ListenHost and ListenBase: export port p listens on
	// ListenHost:ListenBase+p (the PE's input ports' convention).
	ListenHost string
	ListenBase int
	Exports    []peconfig.ExportPort
	Imports    []peconfig.ImportRef
	// Watch gives the watcher of an Import object (kube or file).
	Watch   exchange.WatchFunc
	Metrics *exchange.Metrics
	Log     *slog.Logger
	// BatchBytes is the size at which an export sends a frame (64 KiB);
	// FlushEvery is how often it sends a partial one (2ms).
	BatchBytes int
	FlushEvery time.Duration
	// ImportBackoff bounds an import's reconnection waits (100ms to 5s
	// when zero).
	ImportMinBackoff, ImportMaxBackoff time.Duration
}

func (x *ExchangeEnv) log() *slog.Logger {
	if x.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return x.Log
}

// Export sends the tuples it receives to every importer subscribed to its
// PE export port. It batches them itself, into frames shared by all
// subscribers, and sends a partial frame every FlushEvery.
type Export struct {
	name  string
	cfg   exchange.ServerConfig
	limit int
	every time.Duration
	log   *slog.Logger

	mu    sync.Mutex
	srv   *exchange.Server
	b     *wire.BatchBuilder
	ended bool
	ready chan struct{}
}

// NewExport makes the export operator op; it listens once Run starts.
func NewExport(op *v1alpha1.Operator, env Env) (*Export, error) {
	x := env.Exchange
	if x == nil {
		return nil, fmt.Errorf("export %q: the PE gives no export/import environment", op.Name)
	}
	port := int32(-1)
	for _, p := range x.Exports {
		if p.Operator == op.Name {
			port = p.Port
		}
	}
	if port < 0 {
		return nil, fmt.Errorf("export %q: the PE config has no export port for it", op.Name)
	}
	base := x.ListenBase
	if base == 0 {
		base = int(v1alpha1.PEInputPortBase)
	}
	limit := x.BatchBytes
	if limit <= 0 {
		limit = 64 << 10
	}
	every := x.FlushEvery
	if every <= 0 {
		every = 2 * time.Millisecond
	}
	stream := ""
	if x.Job != "" {
		stream = x.Job + "-" + op.Name // app.ExportResourceName
	}
	m := x.Metrics
	if m == nil {
		m = exchange.NewMetrics(nil)
	}
	return &Export{name: op.Name, limit: limit, every: every, log: x.log(), b: wire.NewBatchBuilder(limit + 4096),
		ready: make(chan struct{}),
		cfg: exchange.ServerConfig{Addr: net.JoinHostPort(x.ListenHost, strconv.Itoa(base+int(port))), Stream: stream,
			Operator: op.Name, Metrics: m, Log: x.log()}}, nil
}

func (e *Export) Process(_ int, t *wire.Tuple) {
	e.mu.Lock()
	e.b.Add(t)
	if e.b.Len() >= e.limit {
		e.publish()
	}
	e.mu.Unlock()
}

// ProcessBatch takes a whole input batch under one hold of the lock.
func (e *Export) ProcessBatch(_ int, ts []wire.Tuple) {
	e.mu.Lock()
	for i := range ts {
		e.b.Add(&ts[i])
		if e.b.Len() >= e.limit {
			e.publish()
		}
	}
	e.mu.Unlock()
}

// publish hands the pending frame to the subscribers. Called with mu held.
// Before the server listens there is nobody to send to.
func (e *Export) publish() {
	n := e.b.Count()
	if n == 0 {
		return
	}
	if e.srv != nil {
		e.srv.Publish(append([]byte(nil), e.b.Frame()...), n)
	}
	e.b.Reset()
}

// Finish sends what is pending and ends the stream for every subscriber.
func (e *Export) Finish() {
	e.mu.Lock()
	e.publish()
	e.ended = true
	if e.srv != nil {
		e.srv.Final()
	}
	e.mu.Unlock()
}

// Run listens on the export port and sends partial frames every
// FlushEvery until ctx ends.
func (e *Export) Run(ctx context.Context, _ func(func()) bool, _ func()) error {
	// A port that is busy now may be free soon (a previous incarnation
	// closing): retry rather than leave the export unserved.
	var srv *exchange.Server
	for wait := 50 * time.Millisecond; ; wait = min(2*wait, 2*time.Second) {
		var err error
		if srv, err = exchange.Listen(e.cfg); err == nil {
			break
		}
		e.log.Error("export: listen", "operator", e.name, "addr", e.cfg.Addr, "err", err, "retryIn", wait)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
	e.mu.Lock()
	e.srv = srv
	if e.ended {
		srv.Final()
	}
	e.mu.Unlock()
	close(e.ready)
	e.log.Info("export: serving", "operator", e.name, "addr", srv.Addr(), "stream", e.cfg.Stream)
	t := time.NewTicker(e.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			e.mu.Lock()
			e.publish()
			e.mu.Unlock()
			srv.Close(time.Second)
			return ctx.Err()
		case <-t.C:
			e.mu.Lock()
			e.publish()
			e.mu.Unlock()
		}
	}
}

// Addr is the listening address once Run has started listening (it
// waits for that or ctx).
func (e *Export) Addr(ctx context.Context) (net.Addr, error) {
	select {
	case <-e.ready:
		return e.srv.Addr(), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Subscribers is the number of importers connected now.
func (e *Export) Subscribers() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.srv == nil {
		return 0
	}
	return e.srv.Subscribers()
}
