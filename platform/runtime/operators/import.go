package operators

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sort"
	"sync"

	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/runtime/exchange"
	"sluice.dev/sluice/platform/runtime/wire"
)

// Import receives the streams its Import object's status lists, keeps
// the keys of its filter and emits them on its output port. It checks the
// sequence of every exporter origin, per export: the first tuple of an
// origin is where the import joined the stream (what went before was
// never meant for it, and is passed downstream as Skip); a gap after that,
// or a new epoch not starting at 0 (the exporter restarted while the
// import was not connected), is counted as missing.
type Import struct {
	name, pe, resource string
	out                Emitter
	x                  *ExchangeEnv
	log                *slog.Logger
	mod                uint64
	keep               map[uint64]bool
	m                  *exchange.Metrics

	mu       sync.Mutex
	client   *exchange.Client
	tracks   map[string]*Tracker
	order    []string
	owe      pending
	received uint64
	emitted  uint64
	filtered uint64
}

// NewImport makes the import operator op.
func NewImport(op *v1alpha1.Operator, p *v1alpha1.OperatorParams, env Env) (*Import, error) {
	x := env.Exchange
	if x == nil {
		return nil, fmt.Errorf("import %q: the PE gives no export/import environment", op.Name)
	}
	if x.Watch == nil {
		return nil, fmt.Errorf("import %q: the PE has no way to watch Import objects", op.Name)
	}
	res := ""
	for _, r := range x.Imports {
		if r.Operator == op.Name {
			res = r.Resource
		}
	}
	if res == "" {
		return nil, fmt.Errorf("import %q: the PE config names no Import object for it", op.Name)
	}
	i := &Import{name: op.Name, pe: env.PE, resource: res, out: env.Out, x: x, log: x.log(), m: x.Metrics,
		tracks: map[string]*Tracker{}}
	if i.m == nil {
		i.m = exchange.NewMetrics(nil)
	}
	if f := p.Filter; f != nil {
		if f.KeyModulo < 1 {
			return nil, fmt.Errorf("import %q: filter keyModulo %d, must be at least 1", op.Name, f.KeyModulo)
		}
		i.mod, i.keep = uint64(f.KeyModulo), map[uint64]bool{}
		for _, r := range f.KeyRemainders {
			if r < 0 || r >= f.KeyModulo {
				return nil, fmt.Errorf("import %q: filter remainder %d out of 0..%d", op.Name, r, f.KeyModulo-1)
			}
			i.keep[uint64(r)] = true
		}
	}
	return i, nil
}

// Keeps reports whether the import's filter lets a key through.
func (i *Import) Keeps(key uint64) bool { return i.keep == nil || i.keep[key%i.mod] }

// Process is never called: an import has no inputs.
func (i *Import) Process(int, *wire.Tuple) {}
func (i *Import) Finish()                  {}

// Run watches the Import object, keeps the connections to what it lists,
// and emits what arrives, until ctx ends.
func (i *Import) Run(ctx context.Context, do func(func()) bool, flush func()) error {
	w, err := i.x.Watch(i.resource)
	if err != nil {
		i.log.Error("import: watcher", "operator", i.name, "import", i.resource, "err", err)
		return err
	}
	c := exchange.NewClient(exchange.ClientConfig{Operator: i.name, PE: i.pe, Metrics: i.m, Log: i.log,
		MinBackoff: i.x.ImportMinBackoff, MaxBackoff: i.x.ImportMaxBackoff})
	i.mu.Lock()
	i.client = c
	i.mu.Unlock()
	wctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		w.Watch(wctx, c.Update)
	}()
	defer func() {
		cancel()
		wg.Wait()
		c.Close()
	}()
	var b exchange.Batch
	step := func() { i.process(&b) }
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case b = <-c.Batches():
			if b.Final {
				i.log.Info("import: an export ended its stream", "operator", i.name, "export", b.Export)
				continue
			}
			// Outside a region do always runs the step. Inside one, do
			// waits while the region holds its sources and then declines:
			// keep the batch and offer it again (an import cannot replay,
			// so a region does not make it exactly-once).
			for !do(step) {
				if ctx.Err() != nil {
					return ctx.Err()
				}
			}
			flush()
		}
	}
}

// process handles one batch, with the engine's lock held.
func (i *Import) process(b *exchange.Batch) {
	i.mu.Lock()
	defer i.mu.Unlock()
	tr := i.tracks[b.Export]
	if tr == nil {
		tr = NewTracker(false)
		i.tracks[b.Export] = tr
		i.order = append(i.order, b.Export)
	}
	var missing, restarts, filtered uint64
	for k := range b.Tuples {
		t := &b.Tuples[k]
		s := tr.byID[t.Origin]
		joined := s == nil
		if joined {
			tr.byID[t.Origin] = &OriginStats{ID: t.Origin, Epoch: t.Epoch, Next: t.Seq}
			tr.order = append(tr.order, tr.byID[t.Origin])
			tr.last = nil
		} else if s.Epoch != t.Epoch {
			restarts++
		}
		missing += tr.Observe(t)
		if joined && t.Seq > 0 {
			// Downstream sinks expect sequences from 0: what went before
			// the join was skipped on purpose.
			t.Skip += uint32(min(t.Seq, uint64(math.MaxUint32-t.Skip)))
		}
		i.received++
		if !i.Keeps(t.Key) {
			i.owe.drop(t)
			filtered++
			continue
		}
		i.owe.settle(t)
		i.emitted++
		i.out.Emit(0, t)
	}
	if missing > 0 {
		i.m.ImportMissing.WithLabelValues(i.name, b.Export).Add(float64(missing))
	}
	if restarts > 0 {
		i.m.ImportRestarts.WithLabelValues(i.name, b.Export).Add(float64(restarts))
	}
	i.filtered += filtered
	if filtered > 0 {
		i.m.ImportFiltered.WithLabelValues(i.name).Add(float64(filtered))
	}
}

// ImportSummary is what an import received, for tests and experiments.
type ImportSummary struct {
	Operator string `json:"operator"`
	PE       string `json:"pe"`
	Import   string `json:"import"`
	// Received counts tuples from every export; Emitted those the filter
	// kept; Filtered those it dropped.
	Received uint64 `json:"received"`
	Emitted  uint64 `json:"emitted"`
	Filtered uint64 `json:"filtered"`
	// Missing, Duplicates, Reordered and Restarts sum the exports' origins.
	Missing    uint64         `json:"missing"`
	Duplicates uint64         `json:"duplicates"`
	Reordered  uint64         `json:"reordered"`
	Restarts   uint64         `json:"restarts"`
	Streams    []ImportStream `json:"streams"`
}

// ImportStream is one export as the import knows it: listed now (with
// its connection) or only seen before.
type ImportStream struct {
	Export    string        `json:"export"`
	Listed    bool          `json:"listed"`
	Connected bool          `json:"connected"`
	Connects  int           `json:"connects"`
	LastError string        `json:"lastError,omitempty"`
	Tuples    uint64        `json:"tuples"`
	Missing   uint64        `json:"missing"`
	Restarts  uint64        `json:"restarts"`
	Origins   []OriginStats `json:"origins"`
}

// Summary returns what the import has seen so far.
func (i *Import) Summary() ImportSummary {
	i.mu.Lock()
	defer i.mu.Unlock()
	s := ImportSummary{Operator: i.name, PE: i.pe, Import: i.resource, Received: i.received, Emitted: i.emitted,
		Filtered: i.filtered}
	var links []exchange.LinkState
	if i.client != nil {
		links = i.client.Links()
	}
	names := append([]string(nil), i.order...)
	for _, l := range links {
		if i.tracks[l.Export] == nil {
			names = append(names, l.Export)
		}
	}
	sort.Strings(names)
	for _, ex := range slices.Compact(names) {
		s.Streams = append(s.Streams, ImportStream{Export: ex})
	}
	for k := range s.Streams {
		st := &s.Streams[k]
		for _, l := range links {
			if l.Export == st.Export {
				st.Listed = true
				st.Connected = st.Connected || l.Connected
				st.Connects += l.Connects
				if l.LastError != "" {
					st.LastError = l.LastError
				}
			}
		}
		if tr := i.tracks[st.Export]; tr != nil {
			st.Origins = tr.Origins()
			for k := range st.Origins {
				o := &st.Origins[k]
				o.Holes = nil // a checkpoint's concern, not a result
				st.Tuples += o.Tuples
				st.Missing += o.Missing
				st.Restarts += o.Restarts
				s.Missing += o.Missing
				s.Duplicates += o.Duplicates
				s.Reordered += o.Reordered
				s.Restarts += o.Restarts
			}
		}
	}
	return s
}

// Links are the import's connections now (nil before Run).
func (i *Import) Links() []exchange.LinkState {
	i.mu.Lock()
	c := i.client
	i.mu.Unlock()
	if c == nil {
		return nil
	}
	return c.Links()
}
