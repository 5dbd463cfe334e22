package bench

import (
	"os"
	"testing"
	"time"
)

func TestRSSOfThisProcess(t *testing.T) {
	rss, err := RSS(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// A Go test binary is resident for at least a megabyte and far less
	// than a gigabyte.
	if rss < 1<<20 || rss > 1<<30 {
		t.Fatalf("RSS %d bytes", rss)
	}
	if _, err := RSS(0x7ffffff0); err == nil {
		t.Fatal("RSS of a process that does not exist")
	}
}

func TestRawTCPMovesBytes(t *testing.T) {
	bps, err := RawTCP("", 100*time.Millisecond, 64<<10)
	if err != nil {
		t.Fatal(err)
	}
	if bps <= 0 {
		t.Fatalf("raw TCP copied %v bytes/s", bps)
	}
}

func BenchmarkRawTCP64K(b *testing.B) {
	bps, err := RawTCP("", time.Second, 64<<10)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(bps/1e6, "MB/s")
}
