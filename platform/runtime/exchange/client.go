package exchange

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"strconv"
	"sync"
	"time"

	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/runtime/wire"
)

// Batch is what an import client received from one export: tuples (their
// payloads owned by the batch) or, with Final set, the end of the stream.
type Batch struct {
	Export string
	Tuples []wire.Tuple
	Final  bool
}

// ClientConfig configures an import client.
type ClientConfig struct {
	// Operator and PE name the importer in metrics and handshakes.
	Operator, PE string
	// Queue is how many batches may wait for the operator (default 64);
	// beyond that the connections stop reading, and the exporter drops
	// them if it lasts.
	Queue int
	// MinBackoff and MaxBackoff bound the wait between connection
	// attempts to one export (defaults 100ms and 5s).
	MinBackoff, MaxBackoff time.Duration
	// DialTimeout bounds a connection attempt and its handshake (5s).
	DialTimeout time.Duration
	Metrics     *Metrics
	Log         *slog.Logger
}

// Client keeps one connection per export its Import lists: Update starts
// connecting to new exports and disconnects from gone ones.
type Client struct {
	cfg   ClientConfig
	out   chan Batch
	ctx   context.Context
	stop  context.CancelFunc
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[string]*link // by key()
}

type link struct {
	stream v1alpha1.ImportedStream
	cancel context.CancelFunc
	mu     sync.Mutex
	up     bool
	n      int // successful connections
	err    string
}

// LinkState is what a client knows of one export.
type LinkState struct {
	Export    string `json:"export"`
	JobName   string `json:"jobName"`
	Addr      string `json:"addr"`
	Connected bool   `json:"connected"`
	Connects  int    `json:"connects"`
	LastError string `json:"lastError,omitempty"`
}

// NewClient makes a client; it connects to nothing until Update.
func NewClient(cfg ClientConfig) *Client {
	if cfg.Queue <= 0 {
		cfg.Queue = 64
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 100 * time.Millisecond
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(5*time.Second, cfg.MinBackoff)
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 5 * time.Second
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil)
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	ctx, stop := context.WithCancel(context.Background())
	return &Client{cfg: cfg, out: make(chan Batch, cfg.Queue), ctx: ctx, stop: stop, conns: map[string]*link{}}
}

// Batches delivers what every connection receives.
func (c *Client) Batches() <-chan Batch { return c.out }

func addr(s v1alpha1.ImportedStream) string {
	return net.JoinHostPort(s.Host, strconv.Itoa(int(s.Port)))
}

// key identifies a connection: the same export at another address is
// another connection.
func key(s v1alpha1.ImportedStream) string { return s.Export + "\x00" + addr(s) }

// Update makes the connections those of streams.
func (c *Client) Update(streams []v1alpha1.ImportedStream) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ctx.Err() != nil {
		return
	}
	want := map[string]v1alpha1.ImportedStream{}
	for _, s := range streams {
		want[key(s)] = s
	}
	for k, l := range c.conns {
		if _, ok := want[k]; !ok {
			c.cfg.Log.Info("import: export gone, disconnecting", "operator", c.cfg.Operator, "export", l.stream.Export, "addr", addr(l.stream))
			l.cancel()
			delete(c.conns, k)
		}
	}
	for k, s := range want {
		if _, ok := c.conns[k]; ok {
			continue
		}
		ctx, cancel := context.WithCancel(c.ctx)
		l := &link{stream: s, cancel: cancel}
		c.conns[k] = l
		c.cfg.Log.Info("import: connecting to export", "operator", c.cfg.Operator, "export", s.Export, "addr", addr(s))
		c.wg.Add(1)
		go c.run(ctx, l)
	}
}

// Links describes the current connections, by export name.
func (c *Client) Links() []LinkState {
	c.mu.Lock()
	out := make([]LinkState, 0, len(c.conns))
	for _, l := range c.conns {
		l.mu.Lock()
		out = append(out, LinkState{Export: l.stream.Export, JobName: l.stream.JobName, Addr: addr(l.stream),
			Connected: l.up, Connects: l.n, LastError: l.err})
		l.mu.Unlock()
	}
	c.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].Export != out[j].Export {
			return out[i].Export < out[j].Export
		}
		return out[i].Addr < out[j].Addr
	})
	return out
}

// Close disconnects everything and waits for the connections to end.
func (c *Client) Close() {
	c.mu.Lock()
	c.stop()
	c.conns = map[string]*link{}
	c.mu.Unlock()
	c.wg.Wait()
}

// run connects to one export again and again, with back-off, until ctx
// ends. The back-off is reset only by a connection that delivered data,
// so that an export that accepts and closes at once is not hammered.
func (c *Client) run(ctx context.Context, l *link) {
	defer c.wg.Done()
	m, op, ex := c.cfg.Metrics, c.cfg.Operator, l.stream.Export
	connected, connects, fails := m.ImportConnected.WithLabelValues(op, ex), m.ImportConnects.WithLabelValues(op, ex),
		m.ImportFails.WithLabelValues(op, ex)
	tuples := m.ImportTuples.WithLabelValues(op, ex)
	wait := time.Duration(0)
	for {
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		if ctx.Err() != nil {
			return
		}
		conn, err := c.dial(ctx, l.stream)
		if err != nil {
			fails.Inc()
			l.setErr(err)
			c.cfg.Log.Warn("import: connecting", "operator", op, "export", ex, "addr", addr(l.stream), "err", err)
			wait = c.next(wait)
			continue
		}
		connects.Inc()
		connected.Set(1)
		l.mu.Lock()
		l.up, l.n, l.err = true, l.n+1, ""
		l.mu.Unlock()
		got, err := c.receive(ctx, conn, ex, tuples)
		conn.Close()
		connected.Set(0)
		l.mu.Lock()
		l.up = false
		l.mu.Unlock()
		if ctx.Err() != nil {
			return
		}
		l.setErr(err)
		c.cfg.Log.Warn("import: connection ended", "operator", op, "export", ex, "err", err)
		if got {
			wait = 0
		}
		wait = c.next(wait)
	}
}

func (l *link) setErr(err error) {
	l.mu.Lock()
	if err != nil {
		l.err = err.Error()
	}
	l.mu.Unlock()
}

func (c *Client) next(wait time.Duration) time.Duration {
	if wait == 0 {
		return c.cfg.MinBackoff
	}
	return min(2*wait, c.cfg.MaxBackoff)
}

func (c *Client) dial(ctx context.Context, s v1alpha1.ImportedStream) (net.Conn, error) {
	d := net.Dialer{Timeout: c.cfg.DialTimeout}
	conn, err := d.DialContext(ctx, "tcp", addr(s))
	if err != nil {
		return nil, err
	}
	hs, err := AppendSubscribe(nil, Subscribe{Version: Version, Stream: s.Export, PE: c.cfg.PE})
	if err == nil {
		conn.SetDeadline(time.Now().Add(c.cfg.DialTimeout))
		if _, err = conn.Write(hs); err == nil {
			err = ReadReply(conn)
		}
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("subscribe to %s at %s: %w", s.Export, addr(s), err)
	}
	conn.SetDeadline(time.Time{})
	return conn, nil
}

// receive reads frames until the connection or ctx ends; got reports
// whether any batch arrived.
func (c *Client) receive(ctx context.Context, conn net.Conn, export string, tuples interface{ Add(float64) }) (got bool, err error) {
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	r := wire.NewReader(bufio.NewReaderSize(conn, 64<<10))
	for {
		typ, body, err := r.Next()
		if err != nil {
			return got, err
		}
		b := Batch{Export: export}
		switch typ {
		case wire.FrameBatch:
			// The reader reuses its buffer: the batch gets its own copy,
			// which its tuples' payloads alias.
			own := append([]byte(nil), body...)
			if b.Tuples, err = wire.DecodeBatch(own, nil); err != nil {
				return got, fmt.Errorf("export %s: %w", export, err)
			}
			got = true
			tuples.Add(float64(len(b.Tuples)))
		case wire.FrameFinal:
			b.Final = true
		default:
			continue // markers mean nothing across Jobs
		}
		select {
		case c.out <- b:
		case <-ctx.Done():
			return got, ctx.Err()
		}
	}
}
