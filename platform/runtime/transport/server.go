package transport

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"sluice.dev/sluice/platform/runtime/metrics"
	"sluice.dev/sluice/platform/runtime/wire"
)

// Input is one PE input port and the streams that may connect to it.
type Input struct {
	Port    int32
	Streams []int32
}

// Link names the connection something arrived on: the PE input port, the
// stream, and the input's epoch when the connection was accepted. A
// receiver that changes epoch drops what still arrives from an older link.
type Link struct {
	Port   int32
	Stream int32
	Epoch  uint64
}

// Deliverer takes what arrives, in stream order per link. Deliver's tuples
// (and their payloads) are valid only during the call.
type Deliverer interface {
	Deliver(l Link, ts []wire.Tuple)
	// Final: the stream has ended.
	Final(l Link)
	// Marker: checkpoint marker seq; everything the stream carried before
	// it has been delivered.
	Marker(l Link, seq uint64)
}

// ServerConfig configures a PE's listeners.
type ServerConfig struct {
	Inputs []Input
	// Host to listen on ("" for all interfaces) and the TCP port of PE
	// input port 0; port i listens on Base+i.
	Host    string
	Base    int
	Deliver Deliverer
	Metrics *metrics.Metrics
	Log     *slog.Logger
	// HandshakeTimeout bounds how long a new connection may take to say
	// which stream it carries (default 5s).
	HandshakeTimeout time.Duration
	// Epoch is the consistent-region epoch the inputs start at (0 outside
	// a region); only connections announcing it are accepted.
	Epoch uint64
	// AnyEpoch accepts connections of every epoch (a PE outside any region
	// fed by a stream that leaves one); what arrives is delivered as of
	// the server's epoch.
	AnyEpoch bool
	// OncePerEpoch accepts one connection per stream per epoch (inside a
	// region). A stream whose connection broke has lost what was in
	// flight; refusing its reconnection keeps the stream visibly down (the
	// PE not ready) until the region resets, instead of going on with a
	// silent gap.
	OncePerEpoch bool
}

// Server accepts the connections of a PE's incoming streams.
type Server struct {
	cfg       ServerConfig
	listeners []net.Listener
	mu        sync.Mutex
	conns     map[int32]*sconn // current connection per stream
	seen      map[int32]bool   // streams that have connected at least once
	used      map[int32]bool   // streams that have connected in this epoch
	epoch     uint64
	closed    bool
	wg        sync.WaitGroup
}

type sconn struct {
	c     net.Conn
	epoch uint64
	up    prometheus.Gauge
}

func NewServer(cfg ServerConfig) *Server {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.New()
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = 5 * time.Second
	}
	s := &Server{cfg: cfg, conns: map[int32]*sconn{}, seen: map[int32]bool{}, used: map[int32]bool{},
		epoch: cfg.Epoch}
	for _, in := range cfg.Inputs {
		for _, st := range in.Streams {
			cfg.Metrics.ConnectionUp.WithLabelValues("in", strconv.Itoa(int(st))).Set(0)
		}
	}
	return s
}

// Start listens on every input port.
func (s *Server) Start() error {
	for _, in := range s.cfg.Inputs {
		addr := net.JoinHostPort(s.cfg.Host, strconv.Itoa(s.cfg.Base+int(in.Port)))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			s.Close()
			return fmt.Errorf("input port %d: %w", in.Port, err)
		}
		s.listeners = append(s.listeners, l)
		s.wg.Add(1)
		go s.accept(l, in)
	}
	return nil
}

// Addrs are the listening addresses, by input.
func (s *Server) Addrs() []net.Addr {
	out := make([]net.Addr, len(s.listeners))
	for i, l := range s.listeners {
		out[i] = l.Addr()
	}
	return out
}

// Missing lists the streams expected on an input that have no live
// connection.
func (s *Server) Missing() []int32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []int32
	for _, in := range s.cfg.Inputs {
		for _, st := range in.Streams {
			if s.conns[st] == nil {
				out = append(out, st)
			}
		}
	}
	return out
}

// Close stops listening and closes every connection.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	for _, l := range s.listeners {
		l.Close()
	}
	s.mu.Lock()
	for _, sc := range s.conns {
		sc.c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// Epoch is the epoch the inputs accept.
func (s *Server) Epoch() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.epoch
}

// SetEpoch makes the inputs accept connections of epoch e only and closes
// the connections of any other epoch, so that what an upstream sent before
// it applied the same reset is dropped with its connection.
func (s *Server) SetEpoch(e uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.epoch = e
	clear(s.used)
	for st, sc := range s.conns {
		if sc.epoch != e {
			sc.c.Close()
			sc.up.Set(0)
			delete(s.conns, st)
		}
	}
}

// MaxConns bounds the connections one input port serves at once: its
// expected streams twice over (an old and a replacing connection each),
// plus a few for stragglers. More are closed at once, so a flood of
// connections cannot grow the PE's memory without bound.
func MaxConns(in Input) int { return 2*len(in.Streams) + 8 }

func (s *Server) accept(l net.Listener, in Input) {
	defer s.wg.Done()
	slots := make(chan struct{}, MaxConns(in))
	for {
		c, err := l.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				s.cfg.Log.Error("accept", "port", in.Port, "err", err)
			}
			return
		}
		select {
		case slots <- struct{}{}:
		default:
			s.cfg.Metrics.WireErrors.WithLabelValues("too_many_connections").Inc()
			s.cfg.Log.Warn("closing connection: too many on this port", "port", in.Port, "peer", c.RemoteAddr().String())
			c.Close()
			continue
		}
		s.wg.Add(1)
		go func() {
			defer func() { <-slots }()
			s.serve(c, in)
		}()
	}
}

func (s *Server) wireError(c net.Conn, in Input, stream int32, err error) {
	s.cfg.Metrics.WireErrors.WithLabelValues(wire.Reason(err)).Inc()
	s.cfg.Log.Warn("closing connection: malformed input", "port", in.Port, "stream", stream,
		"peer", c.RemoteAddr().String(), "err", err)
}

func (s *Server) serve(c net.Conn, in Input) {
	defer s.wg.Done()
	defer c.Close()
	c.SetDeadline(time.Now().Add(s.cfg.HandshakeTimeout))
	br := bufio.NewReaderSize(c, 64<<10)
	h, err := wire.ReadHandshake(br)
	if err != nil {
		if !isClosed(err) {
			s.wireError(c, in, -1, err)
		}
		return
	}
	st := strconv.Itoa(int(h.Stream))
	sc := &sconn{c: c, epoch: h.Epoch, up: s.cfg.Metrics.ConnectionUp.WithLabelValues("in", st)}
	status := wire.StatusOK
	// The epoch is checked and the connection registered in one hold of
	// the lock, so that SetEpoch either refuses it or closes it.
	s.mu.Lock()
	switch {
	case s.closed:
		s.mu.Unlock()
		return
	case h.Version != wire.Version:
		status = wire.StatusBadVersion
	case !slices.Contains(in.Streams, h.Stream):
		status = wire.StatusUnknownStream
	case h.Epoch != s.epoch && !s.cfg.AnyEpoch:
		status = wire.StatusWrongEpoch
	case s.cfg.OncePerEpoch && s.used[h.Stream]:
		status = wire.StatusWrongEpoch
		s.cfg.Log.Warn("refusing a second connection of a stream in one epoch; the region must reset",
			"stream", h.Stream, "from", h.PE, "epoch", h.Epoch)
	default:
		// A new connection for a stream replaces the old one: the upstream
		// restarted or reconnected before we saw the old one die.
		if old := s.conns[h.Stream]; old != nil {
			old.c.Close()
		}
		if s.seen[h.Stream] {
			s.cfg.Metrics.Reconnects.WithLabelValues("in", st).Inc()
		}
		s.conns[h.Stream], s.seen[h.Stream], s.used[h.Stream] = sc, true, true
		sc.up.Set(1)
	}
	epoch := s.epoch
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		if s.conns[h.Stream] == sc {
			delete(s.conns, h.Stream)
			sc.up.Set(0)
		}
		s.mu.Unlock()
	}()
	if _, err := c.Write(wire.AppendReply(nil, status)); err != nil || status != wire.StatusOK {
		switch status {
		case wire.StatusOK:
		case wire.StatusWrongEpoch:
			// Normal while a reset is being applied: one side is ahead.
			s.cfg.Log.Debug("refused connection of another epoch", "stream", h.Stream, "from", h.PE,
				"epoch", h.Epoch, "inputEpoch", epoch)
		default:
			s.wireError(c, in, h.Stream, fmt.Errorf("%w: stream %d version %d from %s refused (status %d)",
				wire.ErrHandshake, h.Stream, h.Version, h.PE, status))
		}
		return
	}
	c.SetDeadline(time.Time{})
	s.cfg.Log.Info("stream connected", "port", in.Port, "stream", h.Stream, "from", h.PE, "epoch", h.Epoch)
	link := Link{Port: in.Port, Stream: h.Stream, Epoch: epoch}

	p := strconv.Itoa(int(in.Port))
	tuplesIn, bytesIn := s.cfg.Metrics.TuplesIn.WithLabelValues(p), s.cfg.Metrics.BytesIn.WithLabelValues(p)
	r := wire.NewReader(br)
	var ts []wire.Tuple
	for {
		typ, body, err := r.Next()
		if err != nil {
			if !isClosed(err) {
				var ne net.Error
				// A peer that dies mid-frame looks like a truncated frame;
				// count only frames that arrived whole and were bad.
				if errors.As(err, &ne) || errors.Is(err, io.ErrUnexpectedEOF) {
					s.cfg.Log.Info("stream connection lost", "stream", h.Stream, "err", err)
				} else {
					s.wireError(c, in, h.Stream, err)
				}
			} else {
				s.cfg.Log.Info("stream disconnected", "stream", h.Stream)
			}
			return
		}
		switch typ {
		case wire.FrameFinal:
			s.cfg.Deliver.Final(link)
		case wire.FrameMarker:
			s.cfg.Deliver.Marker(link, wire.MarkerSeq(body))
		case wire.FrameBatch:
			ts, err = wire.DecodeBatch(body, ts)
			if err != nil {
				s.wireError(c, in, h.Stream, err)
				return
			}
			tuplesIn.Add(float64(len(ts)))
			bytesIn.Add(float64(len(body) + wire.FrameHeaderLen))
			s.cfg.Deliver.Deliver(link, ts)
		}
	}
}
