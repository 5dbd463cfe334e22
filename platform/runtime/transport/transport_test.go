package transport

import (
	"context"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"sluice.dev/sluice/platform/runtime/metrics"
	"sluice.dev/sluice/platform/runtime/wire"
)

// recorder is a test Deliverer that keeps the sequence numbers it gets.
type recorder struct {
	mu     sync.Mutex
	seqs   []uint64
	finals int
}

func (r *recorder) Deliver(_ int32, ts []wire.Tuple) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, t := range ts {
		r.seqs = append(r.seqs, t.Seq)
	}
}

func (r *recorder) Final(int32, int32) {
	r.mu.Lock()
	r.finals++
	r.mu.Unlock()
}

func (r *recorder) count() (int, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.seqs), r.finals
}

func waitFor(t *testing.T, what string, f func() bool) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if f() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

func freeAddr(t *testing.T) (string, int) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return "127.0.0.1", l.Addr().(*net.TCPAddr).Port
}

// A writer started before its peer exists keeps retrying, connects when
// the peer appears, reconnects after the peer restarts, and delivers in
// order what it queued meanwhile.
func TestWriterReconnects(t *testing.T) {
	host, port := freeAddr(t)
	m := metrics.New()
	w := NewWriter(WriterConfig{Stream: 3, PE: "up", Addr: func() string { return net.JoinHostPort(host, itoa(port)) },
		MinBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond, Metrics: m})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go w.Run(ctx)
	time.Sleep(50 * time.Millisecond)
	if w.Connected() {
		t.Fatal("connected to nothing")
	}
	rec := &recorder{}
	newServer := func() *Server {
		s := NewServer(ServerConfig{Inputs: []Input{{Port: 0, Streams: []int32{3}}}, Host: host, Base: port, Deliver: rec, Metrics: m})
		if err := s.Start(); err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := newServer()
	waitFor(t, "connect", w.Connected)
	for i := 0; i < 1000; i++ {
		w.Add(&wire.Tuple{Seq: uint64(i)})
	}
	w.Flush()
	waitFor(t, "first 1000", func() bool { n, _ := rec.count(); return n == 1000 })
	s.Close()
	waitFor(t, "disconnect", func() bool { return !w.Connected() })
	for i := 1000; i < 1010; i++ { // queued while the peer is away
		w.Add(&wire.Tuple{Seq: uint64(i)})
	}
	w.Flush()
	s = newServer()
	defer s.Close()
	waitFor(t, "reconnect", w.Connected)
	w.Final()
	waitFor(t, "queued tuples and final", func() bool { n, f := rec.count(); return n == 1010 && f == 1 })
	for i, s := range rec.seqs {
		if s != uint64(i) {
			t.Fatalf("tuple %d has seq %d", i, s)
		}
	}
	var got float64
	var d = m.Reconnects.WithLabelValues("out", "3")
	got = counterValue(t, d)
	if got != 1 {
		t.Fatalf("reconnects = %v", got)
	}
	if len(s.Missing()) != 0 {
		t.Fatalf("server missing %v", s.Missing())
	}
	w.Close(time.Now().Add(time.Second))
}

// An unknown stream is refused at handshake.
func TestServerRefusesUnknownStream(t *testing.T) {
	host, port := freeAddr(t)
	s := NewServer(ServerConfig{Inputs: []Input{{Port: 0, Streams: []int32{1}}}, Host: host, Base: port, Deliver: &recorder{}})
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	w := NewWriter(WriterConfig{Stream: 2, Addr: func() string { return net.JoinHostPort(host, itoa(port)) }})
	if _, err := w.dial(context.Background()); err == nil {
		t.Fatal("stream 2 accepted on a port for stream 1")
	}
	if got := s.Missing(); len(got) != 1 || got[0] != 1 {
		t.Fatalf("missing %v", got)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.Counter.GetValue()
}

// Connections beyond the port's bound are closed at once and counted.
func TestServerBoundsConnections(t *testing.T) {
	host, port := freeAddr(t)
	m := metrics.New()
	in := Input{Port: 0, Streams: []int32{1}}
	s := NewServer(ServerConfig{Inputs: []Input{in}, Host: host, Base: port, Deliver: &recorder{}, Metrics: m})
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < MaxConns(in)+3; i++ {
		c, err := net.Dial("tcp", net.JoinHostPort(host, itoa(port)))
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c) // silent: each holds a slot until the handshake times out
	}
	waitFor(t, "excess connections refused", func() bool {
		return counterValue(t, m.WireErrors.WithLabelValues("too_many_connections")) == 3
	})
}
