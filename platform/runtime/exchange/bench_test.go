package exchange

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/runtime/wire"
)

// BenchmarkExportToImport sends 64 KiB frames of 64-byte-payload tuples
// from an export server to one import client over loopback; b.N counts
// tuples.
func BenchmarkExportToImport(b *testing.B) {
	m := NewMetrics(prometheus.NewRegistry())
	s, err := Listen(ServerConfig{Addr: "127.0.0.1:0", Stream: "a", Operator: "ex", Metrics: m, Queue: 256})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close(0)
	c := NewClient(ClientConfig{Operator: "imp", Metrics: m, Queue: 256})
	defer c.Close()
	c.Update([]v1alpha1.ImportedStream{streamOf(s, "a")})
	for s.Subscribers() == 0 {
		time.Sleep(time.Millisecond)
	}
	bb := wire.NewBatchBuilder(0)
	payload := make([]byte, 64)
	for bb.Len() < 64<<10 {
		bb.Add(&wire.Tuple{Payload: payload})
	}
	frame, per := append([]byte(nil), bb.Frame()...), bb.Count()
	b.SetBytes(int64(len(frame) / per))
	b.ResetTimer()
	got := 0
	done := make(chan struct{})
	go func() {
		for got < b.N {
			bt := <-c.Batches()
			got += len(bt.Tuples)
		}
		close(done)
	}()
	for sent := 0; sent < b.N; sent += per {
		for s.queueLen() > 200 {
			time.Sleep(100 * time.Microsecond)
		}
		s.Publish(frame, per)
	}
	<-done
	if s.Subscribers() != 1 {
		b.Fatal("subscriber dropped")
	}
}
