package exchange

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/runtime/wire"
)

func TestSubscribeHandshake(t *testing.T) {
	b, err := AppendSubscribe(nil, Subscribe{Version: Version, Stream: "job-ex", PE: "other-pe-0"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := ReadSubscribe(bytes.NewReader(b))
	if err != nil || got != (Subscribe{Version: Version, Stream: "job-ex", PE: "other-pe-0"}) {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	if _, err := AppendSubscribe(nil, Subscribe{Version: Version, Stream: strings.Repeat("x", MaxName+1)}); !errors.Is(err, ErrHandshake) {
		t.Errorf("oversized name encoded: %v", err)
	}
	// A PE-to-PE handshake sent to an export port is refused by its magic.
	pe := wire.AppendHandshake(nil, wire.Handshake{Version: wire.Version, Stream: 1, PE: "p"})
	if _, err := ReadSubscribe(bytes.NewReader(pe)); !errors.Is(err, ErrHandshake) {
		t.Errorf("wire handshake accepted: %v", err)
	}
	// A hostile name length is refused before anything is allocated.
	bad := append([]byte(nil), b...)
	binary.LittleEndian.PutUint16(bad[6:], 60000)
	if _, err := ReadSubscribe(bytes.NewReader(bad)); !errors.Is(err, ErrHandshake) {
		t.Errorf("name length 60000 accepted: %v", err)
	}
	// Another version: only the version is read.
	other := append([]byte(nil), b...)
	other[4] = Version + 1
	if got, err := ReadSubscribe(bytes.NewReader(other)); err != nil || got.Version != Version+1 || got.Stream != "" {
		t.Errorf("other version: %+v %v", got, err)
	}
	if _, err := ReadSubscribe(bytes.NewReader(b[:len(b)-1])); err == nil {
		t.Errorf("truncated handshake accepted")
	}
	for status, want := range map[byte]string{StatusBadVersion: "version", StatusUnknownStream: "another export", 9: "status 9"} {
		if err := ReadReply(bytes.NewReader(AppendReply(nil, status))); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("reply %d: %v, want it to say %q", status, err, want)
		}
	}
	if err := ReadReply(bytes.NewReader(AppendReply(nil, StatusOK))); err != nil {
		t.Errorf("OK reply: %v", err)
	}
}

func listen(t *testing.T, stream string, m *Metrics, queue int) *Server {
	t.Helper()
	s, err := Listen(ServerConfig{Addr: "127.0.0.1:0", Stream: stream, Operator: "ex", Metrics: m, Queue: queue})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(time.Second) })
	return s
}

func streamOf(s *Server, export string) v1alpha1.ImportedStream {
	a := s.Addr().(*net.TCPAddr)
	return v1alpha1.ImportedStream{Export: export, Host: "127.0.0.1", Port: int32(a.Port)}
}

func newTestClient(t *testing.T, m *Metrics) *Client {
	t.Helper()
	c := NewClient(ClientConfig{Operator: "imp", PE: "pe", Metrics: m, MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond})
	t.Cleanup(c.Close)
	return c
}

func frameOf(seqs ...uint64) ([]byte, int) {
	b := wire.NewBatchBuilder(0)
	for _, s := range seqs {
		b.Add(&wire.Tuple{Origin: 7, Epoch: 1, Seq: s, Key: s, Payload: []byte{byte(s)}})
	}
	return append([]byte(nil), b.Frame()...), len(seqs)
}

func waitFor(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func next(t *testing.T, c *Client) Batch {
	t.Helper()
	select {
	case b := <-c.Batches():
		return b
	case <-time.After(10 * time.Second):
		t.Fatal("no batch")
	}
	return Batch{}
}

func TestFanOutToSubscribersAndFinal(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	s := listen(t, "job-ex", m, 0)
	c1, c2 := newTestClient(t, m), newTestClient(t, m)
	c1.Update([]v1alpha1.ImportedStream{streamOf(s, "job-ex")})
	c2.Update([]v1alpha1.ImportedStream{streamOf(s, "job-ex")})
	waitFor(t, "two subscribers", func() bool { return s.Subscribers() == 2 })
	s.Publish(frameOf(0, 1, 2))
	s.Publish(frameOf(3))
	for _, c := range []*Client{c1, c2} {
		var seqs []uint64
		for len(seqs) < 4 {
			b := next(t, c)
			if b.Export != "job-ex" || b.Final {
				t.Fatalf("batch %+v", b)
			}
			for _, tu := range b.Tuples {
				if tu.Origin != 7 || tu.Key != tu.Seq || len(tu.Payload) != 1 || tu.Payload[0] != byte(tu.Seq) {
					t.Errorf("tuple %+v", tu)
				}
				seqs = append(seqs, tu.Seq)
			}
		}
		if !slicesEqual(seqs, []uint64{0, 1, 2, 3}) {
			t.Errorf("received %v", seqs)
		}
	}
	s.Final()
	for _, c := range []*Client{c1, c2} {
		if b := next(t, c); !b.Final {
			t.Errorf("expected the final, got %+v", b)
		}
	}
	// A subscriber that comes after the end is told at once.
	c3 := newTestClient(t, m)
	c3.Update([]v1alpha1.ImportedStream{streamOf(s, "job-ex")})
	if b := next(t, c3); !b.Final {
		t.Errorf("late subscriber: expected the final, got %+v", b)
	}
	if v := value(m.ExportTuples.WithLabelValues("ex")); v != 8 {
		t.Errorf("export tuples metric %v, want 8 (4 tuples to 2 subscribers)", v)
	}
	if v := value(m.ImportConnects.WithLabelValues("imp", "job-ex")); v != 3 {
		t.Errorf("import connects %v, want 3", v)
	}
}

func slicesEqual(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestWrongStreamIsRefused(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	s := listen(t, "job-ex", m, 0)
	c := newTestClient(t, m)
	c.Update([]v1alpha1.ImportedStream{streamOf(s, "job-other")})
	waitFor(t, "a refusal", func() bool {
		ls := c.Links()
		return len(ls) == 1 && strings.Contains(ls[0].LastError, "serves another export")
	})
	if ls := c.Links(); ls[0].Connected || ls[0].Connects != 0 || s.Subscribers() != 0 {
		t.Errorf("refused link: %+v, %d subscribers", ls, s.Subscribers())
	}
	if v := value(m.HandshakeRefused.WithLabelValues("ex", "stream")); v < 1 {
		t.Errorf("refusals metric %v", v)
	}
}

// A subscriber that stops reading is dropped once its queue is full; the
// exporter goes on serving the others.
func TestSlowSubscriberIsDropped(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	s := listen(t, "job-ex", m, 2)
	fast := newTestClient(t, m)
	fast.Update([]v1alpha1.ImportedStream{streamOf(s, "job-ex")})
	slow, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	hs, _ := AppendSubscribe(nil, Subscribe{Version: Version, Stream: "job-ex", PE: "slow"})
	slow.Write(hs)
	if err := ReadReply(slow); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "two subscribers", func() bool { return s.Subscribers() == 2 })
	// 256 KiB frames; the slow one never reads, so the kernel buffers and
	// then its queue of 2 fill up.
	big := wire.NewBatchBuilder(0)
	for i := range 64 {
		big.Add(&wire.Tuple{Seq: uint64(i), Payload: make([]byte, 4096)})
	}
	frame := append([]byte(nil), big.Frame()...)
	sent := 0
	for value(m.SubscriberDrops.WithLabelValues("ex")) == 0 {
		if sent > 2000 {
			t.Fatalf("slow subscriber not dropped after %d frames", sent)
		}
		s.Publish(frame, 64)
		sent++
		// The fast subscriber keeps up.
		if b := next(t, fast); len(b.Tuples) != 64 {
			t.Fatalf("fast subscriber got %+v", b)
		}
	}
	if s.Subscribers() != 1 {
		t.Errorf("%d subscribers after the drop, want the fast one", s.Subscribers())
	}
	if v := value(m.ExportTuplesDrops.WithLabelValues("ex")); v < 64 {
		t.Errorf("dropped tuples metric %v", v)
	}
	// The dropped subscriber's connection is closed.
	slow.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 1<<20)
	for {
		if _, err := slow.Read(buf); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatal("dropped subscriber's connection still open")
			}
			break
		}
	}
	s.Publish(frameOf(1))
	if b := next(t, fast); len(b.Tuples) != 1 {
		t.Errorf("after the drop the fast subscriber got %+v", b)
	}
}

func TestClientFollowsUpdatesAndRetries(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	s1, s2 := listen(t, "a", m, 0), listen(t, "b", m, 0)
	c := newTestClient(t, m)
	c.Update([]v1alpha1.ImportedStream{streamOf(s1, "a")})
	waitFor(t, "a connected", func() bool { return s1.Subscribers() == 1 })
	c.Update([]v1alpha1.ImportedStream{streamOf(s1, "a"), streamOf(s2, "b")})
	waitFor(t, "b connected", func() bool { return s2.Subscribers() == 1 })
	c.Update([]v1alpha1.ImportedStream{streamOf(s2, "b")})
	waitFor(t, "a disconnected", func() bool { return s1.Subscribers() == 0 })
	if ls := c.Links(); len(ls) != 1 || ls[0].Export != "b" || !ls[0].Connected {
		t.Errorf("links %+v", ls)
	}
	s2.Publish(frameOf(5))
	if b := next(t, c); b.Export != "b" || len(b.Tuples) != 1 || b.Tuples[0].Seq != 5 {
		t.Errorf("batch %+v", b)
	}

	// An export listed before it listens: the client retries until it is up.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	late := v1alpha1.ImportedStream{Export: "c", Host: "127.0.0.1", Port: int32(l.Addr().(*net.TCPAddr).Port)}
	c.Update([]v1alpha1.ImportedStream{streamOf(s2, "b"), late})
	waitFor(t, "failed attempts", func() bool { return value(m.ImportFails.WithLabelValues("imp", "c")) >= 2 })
	s3, err := Listen(ServerConfig{Addr: addr, Stream: "c", Operator: "ex3", Metrics: m})
	if err != nil {
		t.Skipf("port %s taken meanwhile: %v", addr, err)
	}
	defer s3.Close(time.Second)
	waitFor(t, "c connected", func() bool { return s3.Subscribers() == 1 })
}

func TestFilesWatcher(t *testing.T) {
	dir := t.TempDir()
	w, _ := Files{Dir: dir, Every: 5 * time.Millisecond}.For("job-imp")
	got := make(chan []v1alpha1.ImportedStream, 16)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go w.Watch(ctx, func(s []v1alpha1.ImportedStream) { got <- s })
	recv := func() []v1alpha1.ImportedStream {
		select {
		case s := <-got:
			return s
		case <-time.After(5 * time.Second):
			t.Fatal("no update")
		}
		return nil
	}
	if s := recv(); len(s) != 0 {
		t.Errorf("missing file gave %+v", s)
	}
	path := ImportFile(dir, "job-imp")
	write := func(doc string) {
		if err := os.WriteFile(path+".tmp", []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(path+".tmp", path); err != nil {
			t.Fatal(err)
		}
	}
	write(`{"status":{"streams":[{"export":"p-ex","jobName":"p","host":"h","port":10001}]}}`)
	if s := recv(); len(s) != 1 || s[0] != (v1alpha1.ImportedStream{Export: "p-ex", JobName: "p", Host: "h", Port: 10001}) {
		t.Errorf("streams %+v", s)
	}
	write(`not json`)
	write(`{"status":{"streams":[{"export":"p-ex","jobName":"p","host":"h","port":10001},{"export":"q-ex","host":"h2","port":10002}]}}`)
	if s := recv(); len(s) != 2 || s[1].Export != "q-ex" {
		t.Errorf("streams %+v", s)
	}
	os.Remove(path)
	if s := recv(); len(s) != 0 {
		t.Errorf("deleted file gave %+v", s)
	}
	select {
	case s := <-got:
		t.Errorf("update without a change: %+v", s)
	case <-time.After(50 * time.Millisecond):
	}
}

func value(c prometheus.Metric) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}

// An exporter restarted at the same address (a pod restart: the Import's
// status does not change) is reconnected to by the client on its own.
func TestClientReconnectsToRestartedExporter(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	s1, err := Listen(ServerConfig{Addr: "127.0.0.1:0", Stream: "a", Operator: "ex", Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	addr := s1.Addr().String()
	c := newTestClient(t, m)
	c.Update([]v1alpha1.ImportedStream{streamOf(s1, "a")})
	waitFor(t, "connected", func() bool { return s1.Subscribers() == 1 })
	s1.Publish(frameOf(0))
	next(t, c)
	s1.Close(time.Second)
	waitFor(t, "disconnected", func() bool { ls := c.Links(); return len(ls) == 1 && !ls[0].Connected })
	s2, err := Listen(ServerConfig{Addr: addr, Stream: "a", Operator: "ex", Metrics: m})
	if err != nil {
		t.Skipf("address %s taken meanwhile: %v", addr, err)
	}
	defer s2.Close(time.Second)
	waitFor(t, "reconnected", func() bool { return s2.Subscribers() == 1 })
	s2.Publish(frameOf(1))
	if b := next(t, c); len(b.Tuples) != 1 || b.Tuples[0].Seq != 1 {
		t.Errorf("after the restart: %+v", b)
	}
	if ls := c.Links(); ls[0].Connects != 2 {
		t.Errorf("links %+v, want 2 connections", ls)
	}
}
