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

func TestCPUTimeGrows(t *testing.T) {
	a, err := CPUTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// Spin until the kernel has charged us 30ms more (the machine may be
	// busy, so no bound on how long that takes in wall time but 10s).
	b := a
	for start := time.Now(); b < a+30*time.Millisecond && time.Since(start) < 10*time.Second; {
		for x := 0; x < 1e6; x++ {
			_ = x * x
		}
		b, _ = CPUTime(os.Getpid())
	}
	if b < a+30*time.Millisecond || b > a+time.Minute {
		t.Fatalf("CPU time %v -> %v after spinning", a, b)
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
