package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"sluice.dev/sluice/platform/runtime/metrics"
	"sluice.dev/sluice/platform/runtime/wire"
)

// recorder is a test Deliverer that keeps the sequence numbers it gets,
// and everything in arrival order in events ("t<seq>@<epoch>",
// "m<seq>@<epoch>", "final@<epoch>").
type recorder struct {
	mu     sync.Mutex
	seqs   []uint64
	finals int
	events []string
}

func (r *recorder) Deliver(l Link, ts []wire.Tuple) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, t := range ts {
		r.seqs = append(r.seqs, t.Seq)
		r.events = append(r.events, fmt.Sprintf("t%d@%d", t.Seq, l.Epoch))
	}
}

func (r *recorder) Final(l Link) {
	r.mu.Lock()
	r.finals++
	r.events = append(r.events, fmt.Sprintf("final@%d", l.Epoch))
	r.mu.Unlock()
}

func (r *recorder) Marker(l Link, seq uint64) {
	r.mu.Lock()
	r.events = append(r.events, fmt.Sprintf("m%d@%d", seq, l.Epoch))
	r.mu.Unlock()
}

func (r *recorder) log() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
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
	if _, err := w.dial(context.Background(), 0); err == nil {
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

// Markers arrive in stream order between the tuples around them, and a
// final after them.
func TestMarkersInStreamOrder(t *testing.T) {
	host, port := freeAddr(t)
	rec := &recorder{}
	s := NewServer(ServerConfig{Inputs: []Input{{Port: 0, Streams: []int32{1}}}, Host: host, Base: port, Deliver: rec})
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	w := NewWriter(WriterConfig{Stream: 1, Addr: func() string { return net.JoinHostPort(host, itoa(port)) }, BatchBytes: 256})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go w.Run(ctx)
	var want []string
	for i := 0; i < 40; i++ {
		w.Add(&wire.Tuple{Seq: uint64(i)})
		want = append(want, fmt.Sprintf("t%d@0", i))
		if i%13 == 12 {
			w.Marker(uint64(i))
			want = append(want, fmt.Sprintf("m%d@0", i))
		}
	}
	w.Final()
	want = append(want, "final@0")
	waitFor(t, "final", func() bool { _, f := rec.count(); return f == 1 })
	if got := rec.log(); !slices.Equal(got, want) {
		t.Fatalf("arrival order\n got %v\nwant %v", got, want)
	}
}

// An input accepts only its own epoch. Moving it to a new epoch closes the
// old connection; the writer, reset to the same epoch, drops what it held
// for the old one and delivers only what was produced after the reset.
func TestEpochChangeDropsOldTuples(t *testing.T) {
	host, port := freeAddr(t)
	rec := &recorder{}
	s := NewServer(ServerConfig{Inputs: []Input{{Port: 0, Streams: []int32{1}}}, Host: host, Base: port, Deliver: rec, Epoch: 1})
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	addr := func() string { return net.JoinHostPort(host, itoa(port)) }
	stale := NewWriter(WriterConfig{Stream: 1, Addr: addr, Epoch: 7})
	if _, err := stale.dial(context.Background(), 7); !errors.Is(err, errWrongEpoch) {
		t.Fatalf("epoch 7 on an epoch-1 input: %v", err)
	}
	w := NewWriter(WriterConfig{Stream: 1, Addr: addr, Epoch: 1, MinBackoff: 5 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go w.Run(ctx)
	waitFor(t, "connect at epoch 1", w.Connected)
	w.Add(&wire.Tuple{Seq: 1})
	w.Marker(1)
	w.Final()
	waitFor(t, "epoch 1 final", func() bool { _, f := rec.count(); return f == 1 })

	s.SetEpoch(2)
	waitFor(t, "old connection closed", func() bool { return len(s.Missing()) == 1 && !w.Connected() })
	// Produced at epoch 1 after the input moved on: never delivered.
	w.Add(&wire.Tuple{Seq: 100})
	w.Flush()
	w.Add(&wire.Tuple{Seq: 101}) // still in the current batch at the reset
	time.Sleep(50 * time.Millisecond)
	if w.Connected() {
		t.Fatal("epoch-1 writer connected to an epoch-2 input")
	}
	w.Reset(2)
	w.Add(&wire.Tuple{Seq: 2})
	w.Marker(2)
	w.Final() // the stream may end again in the new epoch
	waitFor(t, "epoch 2 final", func() bool { _, f := rec.count(); return f == 2 })
	want := []string{"t1@1", "m1@1", "final@1", "t2@2", "m2@2", "final@2"}
	if got := rec.log(); !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if !w.Connected() || w.Epoch() != 2 || s.Epoch() != 2 {
		t.Fatalf("connected %v epoch %d input epoch %d", w.Connected(), w.Epoch(), s.Epoch())
	}
}

// A producer blocked on a full queue (peer away) is released by
// Interrupt, and after Reset the writer takes tuples again.
func TestInterruptReleasesBlockedAdd(t *testing.T) {
	host, port := freeAddr(t)
	w := NewWriter(WriterConfig{Stream: 1, Addr: func() string { return net.JoinHostPort(host, itoa(port)) },
		BatchBytes: 64, Queue: 2, MinBackoff: 5 * time.Millisecond, MaxBackoff: 10 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go w.Run(ctx)
	blocked := make(chan int)
	go func() {
		n := 0
		for w.Add(&wire.Tuple{Seq: uint64(n)}) {
			n++
		}
		blocked <- n
	}()
	time.Sleep(50 * time.Millisecond)
	select {
	case n := <-blocked:
		t.Fatalf("Add returned after %d tuples with no peer", n)
	default:
	}
	w.Interrupt()
	select {
	case <-blocked:
	case <-time.After(5 * time.Second):
		t.Fatal("Interrupt did not release Add")
	}
	w.Reset(1)
	// The reset dropped the queued buffers: Add has room again.
	done := make(chan bool)
	go func() { done <- w.Add(&wire.Tuple{Seq: 9}) }()
	select {
	case ok := <-done:
		if !ok {
			t.Fatal("Add refused after Reset")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Add still blocked after Reset")
	}
}

// An input outside any region takes a stream that leaves a region,
// whatever epoch its writer announces.
func TestAnyEpochInput(t *testing.T) {
	host, port := freeAddr(t)
	rec := &recorder{}
	s := NewServer(ServerConfig{Inputs: []Input{{Port: 0, Streams: []int32{1}}}, Host: host, Base: port, Deliver: rec, AnyEpoch: true})
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	w := NewWriter(WriterConfig{Stream: 1, Addr: func() string { return net.JoinHostPort(host, itoa(port)) }, Epoch: 5})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go w.Run(ctx)
	w.Add(&wire.Tuple{Seq: 1})
	w.Flush()
	w.Reset(6)
	w.Add(&wire.Tuple{Seq: 2})
	w.Final()
	waitFor(t, "final", func() bool { _, f := rec.count(); return f == 1 })
	if got := rec.log(); !slices.Equal(got[len(got)-2:], []string{"t2@0", "final@0"}) {
		t.Fatalf("got %v", got)
	}
}

// Inside a region a stream connects once per epoch: after its connection
// breaks (what was in flight may be lost) it stays down until the input
// moves to a new epoch.
func TestOncePerEpoch(t *testing.T) {
	host, port := freeAddr(t)
	rec := &recorder{}
	s := NewServer(ServerConfig{Inputs: []Input{{Port: 0, Streams: []int32{1}}}, Host: host, Base: port, Deliver: rec,
		Epoch: 3, OncePerEpoch: true})
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	w := NewWriter(WriterConfig{Stream: 1, Addr: func() string { return net.JoinHostPort(host, itoa(port)) }, Epoch: 3,
		MinBackoff: 5 * time.Millisecond})
	if _, err := w.dial(context.Background(), 3); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "registered", func() bool { return len(s.Missing()) == 0 })
	s.mu.Lock()
	s.conns[1].c.Close() // the connection breaks
	s.mu.Unlock()
	waitFor(t, "gone", func() bool { return len(s.Missing()) == 1 })
	if _, err := w.dial(context.Background(), 3); !errors.Is(err, errWrongEpoch) {
		t.Fatalf("second connection in epoch 3: %v", err)
	}
	s.SetEpoch(4)
	c, err := w.dial(context.Background(), 4)
	if err != nil {
		t.Fatalf("first connection in epoch 4: %v", err)
	}
	c.Close()
}
