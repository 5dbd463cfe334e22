// Package transport carries cross-PE streams over TCP: a Writer per
// outgoing stream (dial, handshake, batching queue, reconnect with backoff)
// and a Server per PE that listens on the PE's input ports.
package transport

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"sluice.dev/sluice/platform/runtime/metrics"
	"sluice.dev/sluice/platform/runtime/wire"
)

// WriterConfig configures one outgoing stream.
type WriterConfig struct {
	Stream int32
	// PE is the name of this PE, sent in the handshake.
	PE string
	// Addr returns the peer's host:port; it is called before every dial so
	// that a peer that moved is found again.
	Addr func() string
	// BatchBytes is the frame size at which a batch is sent without waiting
	// for a flush (default 64 KiB).
	BatchBytes int
	// Queue is the number of batch buffers; when all are queued the
	// producer blocks (backpressure). Default 8.
	Queue                  int
	MinBackoff, MaxBackoff time.Duration
	Metrics                *metrics.Metrics
	Log                    *slog.Logger
	// Epoch is the consistent-region epoch announced in the handshake (0
	// outside a region); Reset changes it.
	Epoch uint64
}

type item struct {
	bb     *wire.BatchBuilder
	final  bool
	close  bool
	marker bool
	seq    uint64 // of a marker
	// epoch the item was produced in; Run drops items of an older epoch.
	epoch uint64
}

// liveConn is the connection Run holds and the epoch it announced.
type liveConn struct {
	c     net.Conn
	epoch uint64
}

// gate releases a producer blocked in Add when the writer is about to be
// reset (closed once; Reset installs a new one).
type gate struct {
	ch   chan struct{}
	once sync.Once
}

// wrongEpochBackoff caps the retry delay after a peer refused our epoch:
// that lasts only until both sides have applied the same reset.
const wrongEpochBackoff = 200 * time.Millisecond

// errWrongEpoch is a handshake refused because the peer is at another
// epoch.
var errWrongEpoch = errors.New("peer input is at another epoch")

// Writer sends one stream's tuples to the PE that consumes them. Add,
// Flush, Final, Marker and Reset are called by the engine (one goroutine at
// a time); Run owns the connection.
type Writer struct {
	cfg   WriterConfig
	cur   *wire.BatchBuilder
	free  chan *wire.BatchBuilder
	queue chan item
	// stopped is closed when Run returns, so that a producer blocked on
	// backpressure is released.
	stopped chan struct{}
	// kill aborts Run (a drain that ran out of time).
	kill     chan struct{}
	killOnce sync.Once
	// closing is closed by Close: a writer that is not connected then
	// gives up instead of retrying.
	closing   chan struct{}
	closeOnce sync.Once
	up        atomic.Bool
	finalOut  bool

	// Flush writes a batch itself, skipping the hop to Run's goroutine,
	// when nothing is queued or being written (inflight == 0) and the
	// connection is up: that is the low-latency path at low rates. wmu
	// orders those writes with Run's.
	wmu      sync.Mutex
	conn     atomic.Pointer[liveConn]
	broken   atomic.Bool
	inflight atomic.Int32

	// epoch is written by Reset (producer side) and read by Run.
	epoch   atomic.Uint64
	unblock atomic.Pointer[gate]
	// wake tells Run that Reset happened.
	wake chan struct{}

	tuplesOut, bytesOut, dropped, reconnects, fails prometheus.Counter
	upGauge                                         prometheus.Gauge
}

// NewWriter makes a writer; call Run to connect it.
func NewWriter(cfg WriterConfig) *Writer {
	if cfg.BatchBytes <= 0 {
		cfg.BatchBytes = 64 << 10
	}
	if cfg.Queue <= 0 {
		cfg.Queue = 8
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 50 * time.Millisecond
	}
	if cfg.MaxBackoff <= 0 {
		// A restarted peer is found on the next retry, so this cap adds
		// up to itself (plus jitter) to every recovery; a dial to a peer
		// that is down costs one refused connection, so retry often.
		cfg.MaxBackoff = 500 * time.Millisecond
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.New()
	}
	// The queue holds every buffer plus the few control items (final,
	// close, markers) a stream can have outstanding, so enqueue never
	// blocks: one final and one close per epoch, and one marker per
	// checkpoint, of which at most two (one stale, one current) are
	// outstanding since a region takes one checkpoint at a time.
	w := &Writer{cfg: cfg, free: make(chan *wire.BatchBuilder, cfg.Queue), queue: make(chan item, cfg.Queue+16),
		stopped: make(chan struct{}), kill: make(chan struct{}), closing: make(chan struct{}), wake: make(chan struct{}, 1)}
	w.epoch.Store(cfg.Epoch)
	w.unblock.Store(&gate{ch: make(chan struct{})})
	for i := 0; i < cfg.Queue; i++ {
		w.free <- wire.NewBatchBuilder(cfg.BatchBytes + cfg.BatchBytes/4)
	}
	s := strconv.Itoa(int(cfg.Stream))
	m := cfg.Metrics
	w.tuplesOut, w.bytesOut, w.dropped = m.TuplesOut.WithLabelValues(s), m.BytesOut.WithLabelValues(s), m.TuplesDropped.WithLabelValues(s)
	w.reconnects, w.fails = m.Reconnects.WithLabelValues("out", s), m.ConnectFails.WithLabelValues(s)
	w.upGauge = m.ConnectionUp.WithLabelValues("out", s)
	m.QueueDepth.WithLabelValues(s) // exists from the start, at 0
	return w
}

// Stream is the stream ID this writer carries.
func (w *Writer) Stream() int32 { return w.cfg.Stream }

// Connected reports whether the connection is established at the
// writer's current epoch.
func (w *Writer) Connected() bool {
	lc := w.conn.Load()
	return w.up.Load() && lc != nil && lc.epoch == w.epoch.Load()
}

// Epoch is the epoch the writer announces.
func (w *Writer) Epoch() uint64 { return w.epoch.Load() }

// QueueLen is the number of batches waiting to be written.
func (w *Writer) QueueLen() int { return len(w.queue) }

// Add appends t to the current batch. It blocks while every buffer is
// queued (the peer is slow or away) and returns false once the writer has
// stopped.
func (w *Writer) Add(t *wire.Tuple) bool {
	if w.cur == nil {
		select {
		case w.cur = <-w.free:
		default:
			select {
			case w.cur = <-w.free:
			case <-w.stopped:
				return false
			case <-w.unblock.Load().ch:
				return false // a reset is coming; the tuple is not wanted
			}
		}
	}
	w.cur.Add(t)
	if w.cur.Len() >= w.cfg.BatchBytes {
		w.Flush()
	}
	return true
}

// Flush hands the current batch to the connection.
func (w *Writer) Flush() {
	if w.cur == nil || w.cur.Count() == 0 {
		return
	}
	if w.inflight.Load() == 0 && w.wmu.TryLock() {
		if lc := w.conn.Load(); lc != nil && !w.broken.Load() && lc.epoch == w.epoch.Load() {
			w.write(lc.c, w.cur.Frame(), w.cur.Count())
			w.wmu.Unlock()
			w.cur.Reset()
			return
		}
		w.wmu.Unlock()
	}
	w.enqueue(item{bb: w.cur})
	w.cur = nil
}

func (w *Writer) enqueue(it item) {
	it.epoch = w.epoch.Load()
	w.inflight.Add(1)
	w.queue <- it // never blocks: the queue holds every buffer and the markers
}

// write writes one frame with wmu held; on failure the tuples are lost
// (at most once) and the connection is marked broken for Run to replace.
func (w *Writer) write(c net.Conn, b []byte, tuples int) bool {
	if _, err := c.Write(b); err != nil {
		w.dropped.Add(float64(tuples))
		if !w.broken.Swap(true) {
			w.cfg.Log.Warn("write failed; reconnecting", "stream", w.cfg.Stream, "err", err, "droppedTuples", tuples)
		}
		c.Close()
		return false
	}
	w.tuplesOut.Add(float64(tuples))
	w.bytesOut.Add(float64(len(b)))
	return true
}

// Final flushes and then ends the stream.
func (w *Writer) Final() {
	if w.finalOut {
		return
	}
	w.finalOut = true
	w.Flush()
	w.enqueue(item{final: true})
}

// Marker flushes and then sends checkpoint marker seq, so that it follows
// every tuple added before it.
func (w *Writer) Marker(seq uint64) {
	w.Flush()
	w.enqueue(item{marker: true, seq: seq})
}

// Interrupt releases a producer blocked in Add (backpressure from a peer
// that is gone or stuck), making Add drop tuples until Reset. Any
// goroutine may call it; the engine does just before it takes its lock to
// reset, so that a source blocked on this writer cannot hold the lock
// forever.
func (w *Writer) Interrupt() {
	g := w.unblock.Load()
	g.once.Do(func() { close(g.ch) })
}

// Reset drops what the writer holds (the current batch and everything
// queued for an older epoch), forgets that the stream ended, and makes Run
// reconnect announcing epoch. Tuples added after Reset belong to the new
// epoch and are sent only on a connection of that epoch.
func (w *Writer) Reset(epoch uint64) {
	if w.cur != nil && w.cur.Count() > 0 {
		w.dropped.Add(float64(w.cur.Count()))
		w.cur.Reset()
	}
	w.finalOut = false
	w.unblock.Store(&gate{ch: make(chan struct{})})
	w.epoch.Store(epoch)
	// Closing the old connection unblocks a write stuck on it; Run then
	// sees the epoch change and reconnects.
	if lc := w.conn.Load(); lc != nil && lc.epoch != epoch {
		lc.c.Close()
	}
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// Close flushes, lets Run write what is queued and close the connection,
// and waits for that until deadline; then it aborts.
func (w *Writer) Close(deadline time.Time) {
	w.Flush()
	w.closeOnce.Do(func() {
		close(w.closing)
		w.enqueue(item{close: true})
	})
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-w.stopped:
	case <-t.C:
		w.Abort()
		<-w.stopped
	}
}

// Abort stops Run at once.
func (w *Writer) Abort() { w.killOnce.Do(func() { close(w.kill) }) }

func (w *Writer) setUp(up bool) {
	w.up.Store(up)
	if up {
		w.upGauge.Set(1)
	} else {
		w.upGauge.Set(0)
	}
}

// Run connects, writes queued batches, and reconnects with backoff when
// the peer goes away, until ctx ends, Close finishes or Abort.
func (w *Writer) Run(ctx context.Context) {
	defer close(w.stopped)
	defer w.setUp(false)
	var (
		conn      net.Conn
		connEpoch uint64
		dead      chan struct{}
		everUp    bool
		backoff   = w.cfg.MinBackoff
		bufs      net.Buffers
		items     []item
		// carry holds items taken from the queue that wait for a
		// connection of their epoch; they go before anything queued.
		carry     []item
		depth     = w.cfg.Metrics.QueueDepth.WithLabelValues(strconv.Itoa(int(w.cfg.Stream)))
		finalBuf  = wire.AppendFinal(nil)
		closeConn = func() {
			// Not under wmu: closing is what unblocks a write stuck on a
			// peer that stopped reading.
			w.conn.Store(nil)
			if conn != nil {
				conn.Close()
				conn = nil
			}
			w.setUp(false)
		}
		// release gives back what an item holds; dropped items count as
		// dropped tuples.
		release = func(its []item, dropped bool) {
			for _, it := range its {
				if it.bb != nil {
					if dropped {
						w.dropped.Add(float64(it.bb.Count()))
					}
					it.bb.Reset()
					w.free <- it.bb
				}
			}
			w.inflight.Add(-int32(len(its)))
		}
		// purge moves what is queued into carry, dropping the items of
		// epochs older than the current one (a reset discarded them).
		purge = func() {
			cur := w.epoch.Load()
			kept := carry[:0]
			for _, it := range carry {
				if it.epoch < cur && !it.close {
					release([]item{it}, true)
				} else {
					kept = append(kept, it)
				}
			}
			carry = kept
			for {
				select {
				case it := <-w.queue:
					if it.epoch < cur && !it.close {
						release([]item{it}, true)
					} else {
						carry = append(carry, it)
					}
				default:
					return
				}
			}
		}
	)
	defer closeConn()
	for {
		cur := w.epoch.Load()
		if conn != nil && connEpoch != cur {
			closeConn()
			purge()
		}
		if conn == nil {
			c, err := w.dial(ctx, cur)
			if err == nil && w.epoch.Load() != cur {
				c.Close() // reset while dialling: announce the new epoch
				continue
			}
			if err != nil {
				w.fails.Inc()
				w.cfg.Log.Debug("connect failed", "stream", w.cfg.Stream, "err", err, "retry", backoff)
				wait := backoff
				if errors.Is(err, errWrongEpoch) {
					wait = min(wait, wrongEpochBackoff)
				}
				jitter := time.Duration(rand.Int64N(int64(wait)/5 + 1))
				t := time.NewTimer(wait + jitter)
				select {
				case <-ctx.Done():
					t.Stop()
					return
				case <-w.kill:
					t.Stop()
					return
				case <-w.closing:
					// Nobody to drain to: what is queued is lost.
					t.Stop()
					return
				case <-w.wake:
					// A reset: drop what it discarded (freeing buffers for
					// the producer) and retry at once with the new epoch.
					t.Stop()
					purge()
					continue
				case <-t.C:
				}
				backoff = min(2*backoff, w.cfg.MaxBackoff)
				continue
			}
			conn, connEpoch, backoff = c, cur, w.cfg.MinBackoff
			w.broken.Store(false)
			w.conn.Store(&liveConn{c: c, epoch: cur})
			if everUp {
				w.reconnects.Inc()
				w.cfg.Log.Info("reconnected", "stream", w.cfg.Stream, "peer", c.RemoteAddr().String(), "epoch", cur)
			}
			everUp = true
			dead = make(chan struct{})
			// The peer never writes after the handshake: a read that
			// returns means it closed or died, even while we are idle.
			go func(c net.Conn, dead chan struct{}) {
				var b [1]byte
				c.Read(b[:])
				close(dead)
			}(c, dead)
			w.setUp(true)
		}
		if w.broken.Load() {
			// An inline write failed: reconnect before taking more from
			// the queue, so that what is queued goes to the new connection.
			closeConn()
			continue
		}
		items = items[:0]
		if len(carry) > 0 {
			items = append(items, carry...)
			carry = carry[:0]
		} else {
			select {
			case <-ctx.Done():
				return
			case <-w.kill:
				return
			case <-dead:
				w.cfg.Log.Warn("peer closed the connection", "stream", w.cfg.Stream)
				closeConn()
				continue
			case <-w.wake:
				purge()
				continue
			case it := <-w.queue:
				items = append(items, it)
			}
		}
		// Gather what else is queued into one writev.
	gather:
		for len(items) < 16 && !items[len(items)-1].close {
			select {
			case it := <-w.queue:
				items = append(items, it)
			default:
				break gather
			}
		}
		// Items of an older epoch were discarded by a reset; items of a
		// newer one than the connection's wait for a new connection.
		cur = w.epoch.Load()
		kept := items[:0]
		for _, it := range items {
			if it.epoch < cur && !it.close {
				release([]item{it}, true)
			} else {
				kept = append(kept, it)
			}
		}
		items = kept
		if connEpoch != cur {
			carry = append(carry, items...)
			continue
		}
		bufs = bufs[:0]
		closing := false
		var tuples int
		for _, it := range items {
			switch {
			case it.close:
				closing = true
			case it.final:
				bufs = append(bufs, finalBuf)
			case it.marker:
				bufs = append(bufs, wire.AppendMarker(nil, it.seq))
			default:
				bufs = append(bufs, it.bb.Frame())
				tuples += it.bb.Count()
			}
		}
		depth.Set(float64(len(w.queue)))
		if len(bufs) > 0 {
			w.wmu.Lock()
			if w.broken.Load() {
				w.dropped.Add(float64(tuples))
				closeConn()
			} else {
				size := 0
				for _, b := range bufs {
					size += len(b)
				}
				wb := bufs // WriteTo consumes the slice header
				if _, err := wb.WriteTo(conn); err != nil {
					// At most once: what was in this write is gone.
					w.dropped.Add(float64(tuples))
					w.cfg.Log.Warn("write failed; reconnecting", "stream", w.cfg.Stream, "err", err, "droppedTuples", tuples)
					closeConn()
				} else {
					w.tuplesOut.Add(float64(tuples))
					w.bytesOut.Add(float64(size))
				}
			}
			w.wmu.Unlock()
		}
		release(items, false)
		if closing {
			return
		}
	}
}

// dial connects and does the handshake.
func (w *Writer) dial(ctx context.Context, epoch uint64) (net.Conn, error) {
	addr := w.cfg.Addr()
	d := net.Dialer{Timeout: 2 * time.Second, KeepAlive: 5 * time.Second}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write(wire.AppendHandshake(nil, wire.Handshake{Version: wire.Version, Stream: w.cfg.Stream, Epoch: epoch, PE: w.cfg.PE})); err != nil {
		c.Close()
		return nil, err
	}
	v, status, err := wire.ReadReply(bufio.NewReaderSize(c, 16))
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("handshake with %s: %w", addr, err)
	}
	if status == wire.StatusWrongEpoch {
		c.Close()
		return nil, fmt.Errorf("%s: stream %d epoch %d: %w", addr, w.cfg.Stream, epoch, errWrongEpoch)
	}
	if status != wire.StatusOK {
		c.Close()
		return nil, fmt.Errorf("%s refused stream %d: status %d (peer wire version %d)", addr, w.cfg.Stream, status, v)
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

// isClosed tells a normal end of a connection from a real error.
func isClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed)
}
