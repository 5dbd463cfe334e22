package exchange

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"sluice.dev/sluice/platform/runtime/wire"
)

// ServerConfig configures an export server.
type ServerConfig struct {
	// Addr to listen on (host:port).
	Addr string
	// Stream is the Export object's name; a subscriber asking for another
	// is refused. Empty accepts any.
	Stream string
	// Operator labels metrics and logs.
	Operator string
	// Queue is how many frames may wait for one subscriber (default 64);
	// a subscriber whose queue is full is dropped.
	Queue int
	// WriteTimeout bounds one frame write (default 5s): a subscriber that
	// does not read is dropped.
	WriteTimeout time.Duration
	// HandshakeTimeout bounds the subscribe handshake (default 5s).
	HandshakeTimeout time.Duration
	Metrics          *Metrics
	Log              *slog.Logger
}

// Server serves one export: every subscriber gets every frame published
// after it subscribed, through its own bounded queue, so that a slow or
// dead subscriber is dropped and never holds up the exporting job.
type Server struct {
	cfg ServerConfig
	ln  net.Listener
	wg  sync.WaitGroup

	subs                   prometheus.Gauge
	accepted, drops, sent  prometheus.Counter
	lost                   prometheus.Counter
	refusedVer, refusedStr prometheus.Counter

	mu     sync.Mutex
	set    map[*subscriber]struct{}
	ended  bool
	closed bool
}

type subscriber struct {
	conn net.Conn
	ch   chan frame
	done chan struct{}
	once sync.Once
}

// frame is an encoded wire frame shared, read-only, by every subscriber.
type frame struct {
	b      []byte
	tuples int
}

func (s *subscriber) stop() {
	s.once.Do(func() {
		close(s.done)
		s.conn.Close()
	})
}

// Listen starts the export server.
func Listen(cfg ServerConfig) (*Server, error) {
	if cfg.Queue <= 0 {
		cfg.Queue = 64
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 5 * time.Second
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = 5 * time.Second
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil)
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, err
	}
	m, op := cfg.Metrics, cfg.Operator
	s := &Server{cfg: cfg, ln: ln, set: map[*subscriber]struct{}{},
		subs: m.Subscribers.WithLabelValues(op), accepted: m.SubscribersTotal.WithLabelValues(op),
		drops: m.SubscriberDrops.WithLabelValues(op), sent: m.ExportTuples.WithLabelValues(op),
		lost: m.ExportTuplesDrops.WithLabelValues(op), refusedVer: m.HandshakeRefused.WithLabelValues(op, "version"),
		refusedStr: m.HandshakeRefused.WithLabelValues(op, "stream")}
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

// Addr is the listening address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.cfg.Log.Warn("export: accept", "operator", s.cfg.Operator, "err", err)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		s.wg.Add(1)
		go s.serve(c)
	}
}

// serve runs the handshake and then writes the subscriber's queue.
func (s *Server) serve(c net.Conn) {
	defer s.wg.Done()
	c.SetDeadline(time.Now().Add(s.cfg.HandshakeTimeout))
	sub, err := ReadSubscribe(bufio.NewReaderSize(c, 512))
	if err != nil {
		s.cfg.Log.Warn("export: bad subscribe handshake", "operator", s.cfg.Operator, "remote", c.RemoteAddr(), "err", err)
		c.Close()
		return
	}
	status := StatusOK
	switch {
	case sub.Version != Version:
		status = StatusBadVersion
		s.refusedVer.Inc()
	case s.cfg.Stream != "" && sub.Stream != s.cfg.Stream:
		status = StatusUnknownStream
		s.refusedStr.Inc()
	}
	if _, err := c.Write(AppendReply(nil, status)); err != nil || status != StatusOK {
		if status != StatusOK {
			s.cfg.Log.Warn("export: refused subscriber", "operator", s.cfg.Operator, "stream", sub.Stream,
				"serving", s.cfg.Stream, "version", sub.Version, "pe", sub.PE)
		}
		c.Close()
		return
	}
	c.SetDeadline(time.Time{})
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	x := &subscriber{conn: c, ch: make(chan frame, s.cfg.Queue), done: make(chan struct{})}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		c.Close()
		return
	}
	if s.ended {
		// The stream is over: tell the late subscriber so.
		x.ch <- frame{b: wire.AppendFinal(nil)}
	}
	s.set[x] = struct{}{}
	s.subs.Inc()
	s.mu.Unlock()
	s.accepted.Inc()
	s.cfg.Log.Info("export: subscriber connected", "operator", s.cfg.Operator, "pe", sub.PE, "remote", c.RemoteAddr())
	// A subscriber sends nothing after its handshake: reading tells us at
	// once when it goes away.
	go func() {
		io.Copy(io.Discard, c)
		s.remove(x, false)
	}()
	for {
		select {
		case <-x.done:
			return
		case f := <-x.ch:
			c.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
			if _, err := c.Write(f.b); err != nil {
				s.cfg.Log.Warn("export: dropping subscriber", "operator", s.cfg.Operator, "pe", sub.PE, "err", err)
				s.lost.Add(float64(f.tuples))
				s.remove(x, true)
				return
			}
			s.sent.Add(float64(f.tuples))
		}
	}
}

// remove forgets a subscriber; dropped says the export gave up on it
// (rather than the subscriber leaving).
func (s *Server) remove(x *subscriber, dropped bool) {
	s.mu.Lock()
	_, ok := s.set[x]
	delete(s.set, x)
	s.mu.Unlock()
	x.stop()
	if ok {
		s.subs.Dec()
		if dropped {
			s.drops.Inc()
		}
	}
}

// Publish queues one frame (read-only from now on) for every subscriber.
// It never blocks: a subscriber whose queue is full is dropped.
func (s *Server) Publish(b []byte, tuples int) {
	f := frame{b: b, tuples: tuples}
	var full []*subscriber
	s.mu.Lock()
	for x := range s.set {
		select {
		case x.ch <- f:
		default:
			full = append(full, x)
		}
	}
	s.mu.Unlock()
	for _, x := range full {
		s.cfg.Log.Warn("export: dropping slow subscriber", "operator", s.cfg.Operator, "remote", x.conn.RemoteAddr())
		s.lost.Add(float64(tuples + queuedTuples(x)))
		s.remove(x, true)
	}
}

func queuedTuples(x *subscriber) int {
	n := 0
	for {
		select {
		case f := <-x.ch:
			n += f.tuples
		default:
			return n
		}
	}
}

// Final ends the stream: subscribers get a final frame, and so does any
// that subscribes later.
func (s *Server) Final() {
	s.mu.Lock()
	s.ended = true
	s.mu.Unlock()
	s.Publish(wire.AppendFinal(nil), 0)
}

// Subscribers is the number of connected subscribers.
func (s *Server) Subscribers() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.set)
}

// Close stops listening and disconnects every subscriber, after letting
// each write what it has queued for up to grace.
func (s *Server) Close(grace time.Duration) {
	s.mu.Lock()
	s.closed = true
	subs := make([]*subscriber, 0, len(s.set))
	for x := range s.set {
		subs = append(subs, x)
	}
	s.mu.Unlock()
	s.ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	for _, x := range subs {
		for len(x.ch) > 0 && ctx.Err() == nil {
			time.Sleep(5 * time.Millisecond)
		}
		s.remove(x, false)
	}
	s.wg.Wait()
}

// queueLen is the longest subscriber queue (for tests).
func (s *Server) queueLen() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for x := range s.set {
		n = max(n, len(x.ch))
	}
	return n
}
