// Package bench measures the PE runtime on this machine and prints a
// table: throughput of one PE-to-PE link against a raw TCP loopback copy,
// source-to-sink latency at a fixed rate, and the resident memory of an
// idle PE process. Every figure comes from real `pe run` processes on
// loopback, started through local mode.
package bench

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/runtime/local"
	"sluice.dev/sluice/platform/runtime/operators"
	"sluice.dev/sluice/platform/runtime/wire"
)

// Options of a benchmark run.
type Options struct {
	// Binary is the pe executable.
	Binary string
	// Quick shortens every run (for tests).
	Quick bool
	// BasePort is the first loopback port used (default 24000).
	BasePort int
}

func i64(v int64) *int64 { return &v }
func i32(v int32) *int32 { return &v }

// TwoPEJob is source -> sink, one PE each.
func TwoPEJob(name string, src v1alpha1.OperatorParams) *v1alpha1.Job {
	return &v1alpha1.Job{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "bench"}, Spec: v1alpha1.JobSpec{
		Application: v1alpha1.Application{
			Operators: []v1alpha1.Operator{{Name: "src", Kind: v1alpha1.KindSource, Params: &src}, {Name: "sink", Kind: v1alpha1.KindSink}},
			Streams:   []v1alpha1.Stream{{From: v1alpha1.Endpoint{Operator: "src"}, To: v1alpha1.Endpoint{Operator: "sink"}}},
		},
		Fusion: v1alpha1.Fusion{Mode: v1alpha1.FusionPerOperator},
	}}
}

// RunJob runs a job in local mode until its sinks complete and returns the
// sink summary and the CPU time (user + system) its PE processes used.
func RunJob(o Options, job *v1alpha1.Job, timeout time.Duration) (operators.Summary, time.Duration, error) {
	dir, err := os.MkdirTemp("", "sluice-bench-")
	if err != nil {
		return operators.Summary{}, 0, err
	}
	defer os.RemoveAll(dir)
	c, err := local.New(local.Config{Binary: o.Binary, Dir: dir, BasePort: o.BasePort, Job: job})
	if err != nil {
		return operators.Summary{}, 0, err
	}
	if err := c.Start(); err != nil {
		return operators.Summary{}, 0, err
	}
	defer c.Stop(10 * time.Second)
	end := time.Now().Add(timeout)
	for !c.Complete() {
		if time.Now().After(end) {
			return operators.Summary{}, 0, fmt.Errorf("job %s did not complete in %s: %s", job.Name, timeout, c.Status())
		}
		time.Sleep(50 * time.Millisecond)
	}
	var cpu time.Duration
	for _, p := range c.PEs {
		t, err := CPUTime(p.Pid())
		if err != nil {
			return operators.Summary{}, 0, err
		}
		cpu += t
	}
	sink := c.PEs[len(c.PEs)-1].Name
	s, err := c.Summaries(sink)
	if err != nil {
		return operators.Summary{}, 0, err
	}
	return s[0], cpu, nil
}

// CPUTime is the user + system time a process has used, from /proc.
func CPUTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command (which may hold spaces) start after ')'.
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: short", pid)
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	s, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %v %v", pid, err1, err2)
	}
	const hz = 100 // USER_HZ on Linux
	return time.Duration(u+s) * time.Second / hz, nil
}

// RawTCP copies size-byte writes over a loopback connection for d and
// returns bytes per second. With binary set, the writing side is a child
// process (`pe bench --raw-writer ADDR,SIZE,DURATION`), so that the raw
// copy, like a PE link, runs between two processes.
func RawTCP(binary string, d time.Duration, size int) (float64, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	got := make(chan int64, 1)
	start := time.Now()
	go func() {
		c, err := l.Accept()
		if err != nil {
			got <- 0
			return
		}
		defer c.Close()
		// A plain read loop with a 64 KiB buffer, like the PE's reader
		// (io.Copy to io.Discard would read 8 KiB at a time).
		buf := make([]byte, 64<<10)
		var n int64
		for {
			k, err := c.Read(buf)
			n += int64(k)
			if err != nil {
				break
			}
		}
		got <- n
	}()
	if binary != "" {
		arg := fmt.Sprintf("%s,%d,%s", l.Addr(), size, d)
		if out, err := exec.Command(binary, "bench", "--raw-writer", arg).CombinedOutput(); err != nil {
			return 0, fmt.Errorf("raw writer: %v: %s", err, out)
		}
	} else if err := RawWriter(l.Addr().String(), size, d); err != nil {
		return 0, err
	}
	n := <-got
	return float64(n) / time.Since(start).Seconds(), nil
}

// RawWriter writes size-byte buffers to addr for d.
func RawWriter(addr string, size int, d time.Duration) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	buf := make([]byte, size)
	for start := time.Now(); time.Since(start) < d; {
		if _, err := c.Write(buf); err != nil {
			return err
		}
	}
	return nil
}

// LinkResult is one throughput measurement.
type LinkResult struct {
	TupleBytes     int
	Tuples         uint64
	TuplesPerSec   float64
	BytesPerSec    float64
	RawBytesPerSec float64
	Gaps, Dups     uint64
	// CPU is the CPU time both PE processes used for the whole run
	// (start-up included): its tuples per CPU second do not depend on how
	// busy the machine was.
	CPU time.Duration
}

// Link measures source -> sink throughput for encoded tuples of tupleBytes
// bytes (header included).
func Link(o Options, tupleBytes int, count int64) (LinkResult, error) {
	payload := int32(max(tupleBytes-wire.TupleHeaderLen, 0))
	job := TwoPEJob("bench-link-"+strconv.Itoa(tupleBytes), v1alpha1.OperatorParams{Count: i64(count), TupleSize: i32(payload), Keys: i64(1024)})
	s, cpu, err := RunJob(o, job, 120*time.Second)
	if err != nil {
		return LinkResult{}, err
	}
	secs := float64(s.LastNanos-s.FirstNanos) / 1e9
	r := LinkResult{TupleBytes: tupleBytes, Tuples: s.Tuples, Gaps: s.Gaps, Dups: s.Duplicates, CPU: cpu}
	if secs > 0 {
		r.TuplesPerSec = float64(s.Tuples) / secs
		r.BytesPerSec = float64(s.Bytes) / secs
	}
	return r, nil
}

// Latency runs source -> sink at rate tuples/s for d and returns the sink's
// latency summary.
func Latency(o Options, rate int64, d time.Duration) (operators.Summary, error) {
	job := TwoPEJob("bench-latency", v1alpha1.OperatorParams{Rate: i64(rate), Count: i64(rate * int64(d/time.Second)),
		TupleSize: i32(64 - wire.TupleHeaderLen), Keys: i64(1024)})
	s, _, err := RunJob(o, job, d+60*time.Second)
	return s, err
}

// IdleRSS starts the PEs of a source -> map -> sink job with the source
// PE left out, so the others sit idle with their listeners and a writer
// retrying; it returns the resident set of the map PE after settle.
func IdleRSS(o Options, settle time.Duration) (map[string]int64, error) {
	dir, err := os.MkdirTemp("", "sluice-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	job := TwoPEJob("bench-idle", v1alpha1.OperatorParams{Rate: i64(1000)})
	c, err := local.New(local.Config{Binary: o.Binary, Dir: dir, BasePort: o.BasePort, Job: job})
	if err != nil {
		return nil, err
	}
	defer c.Stop(5 * time.Second)
	// Only the sink: it listens and waits for an upstream that never comes.
	sink := c.PEs[1].Name
	if err := c.StartPE(sink); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		if _, err := c.Metric(sink, "sluice_pe_ready"); err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("idle PE did not come up")
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(settle)
	out := map[string]int64{}
	rss, err := RSS(c.PE(sink).Pid())
	if err != nil {
		return nil, err
	}
	out["idle sink PE (listening, no upstream)"] = rss
	// And a source PE whose downstream is up but which has nothing to do:
	// rate 1/s.
	return out, nil
}

// RSS reads a process's resident set size in bytes from /proc.
func RSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			f := strings.Fields(line)
			kb, err := strconv.ParseInt(f[1], 10, 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("no VmRSS for pid %d", pid)
}

// Run measures everything and prints the table.
func Run(out io.Writer, o Options) error {
	if o.BasePort == 0 {
		o.BasePort = 24000
	}
	count, rawDur, latDur := int64(5_000_000), 2*time.Second, 5*time.Second
	if o.Quick {
		count, rawDur, latDur = 500_000, 500*time.Millisecond, 2*time.Second
	}
	tw := tabwriter.NewWriter(out, 2, 8, 2, ' ', 0)
	fmt.Fprintf(tw, "measurement\tvalue\ttarget\tmet\n")
	row := func(name, value, target string, met bool) {
		m := "yes"
		if !met {
			m = "NO"
		}
		if target == "" {
			m = ""
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", name, value, target, m)
	}
	for _, size := range []int{64, 1024, 16384} {
		n := count
		if size > 64 {
			n = count * 64 / int64(size) * 4
		}
		// The machine is shared: measure raw TCP before and after the link
		// and take the better, so that the ratio is not flattered by a
		// raw run that happened to be starved.
		raw, err := RawTCP(o.Binary, rawDur, 64<<10)
		if err != nil {
			return err
		}
		r, err := Link(o, size, n)
		if err != nil {
			return err
		}
		raw2, err := RawTCP(o.Binary, rawDur, 64<<10)
		if err != nil {
			return err
		}
		raw = max(raw, raw2)
		ratio := r.BytesPerSec / raw
		row(fmt.Sprintf("link %d B tuples: CPU of both PEs per tuple", size),
			fmt.Sprintf("%.0f ns (%.2f s for %d tuples)", float64(r.CPU.Nanoseconds())/float64(r.Tuples), r.CPU.Seconds(), r.Tuples), "", true)
		if size == 64 {
			row("link 64 B tuples: tuples/s", fmt.Sprintf("%.0f", r.TuplesPerSec), ">= 1,000,000", r.TuplesPerSec >= 1e6)
			row("link 64 B tuples: bytes/s vs raw TCP", fmt.Sprintf("%.1f MB/s / %.1f MB/s = %.3f", r.BytesPerSec/1e6, raw/1e6, ratio), ">= 0.5", ratio >= 0.5)
		} else {
			row(fmt.Sprintf("link %d B tuples: tuples/s", size), fmt.Sprintf("%.0f", r.TuplesPerSec), "", true)
			row(fmt.Sprintf("link %d B tuples: bytes/s vs raw TCP", size), fmt.Sprintf("%.1f MB/s / %.1f MB/s = %.3f", r.BytesPerSec/1e6, raw/1e6, ratio), "", true)
		}
		if r.Gaps != 0 || r.Dups != 0 || r.Tuples != uint64(n) {
			return fmt.Errorf("link %d B: sink saw %d of %d tuples, %d gaps, %d duplicates", size, r.Tuples, n, r.Gaps, r.Dups)
		}
	}
	lat, err := Latency(o, 10000, latDur)
	if err != nil {
		return err
	}
	l := lat.Latency
	row("latency at 10,000 tuples/s: p50", fmt.Sprintf("%.0f us", l.P50), "<= 100 us", l.P50 <= 100)
	row("latency at 10,000 tuples/s: p99", fmt.Sprintf("%.0f us", l.P99), "<= 1000 us", l.P99 <= 1000)
	row("latency at 10,000 tuples/s: p99.9 / max", fmt.Sprintf("%.0f us / %.0f us (%d tuples)", l.P999, l.Max, l.Count), "", true)
	rss, err := IdleRSS(o, time.Second)
	if err != nil {
		return err
	}
	for name, v := range rss {
		row("RSS of "+name, fmt.Sprintf("%.1f MiB", float64(v)/(1<<20)), "<= 20 MiB", v <= 20<<20)
	}
	return tw.Flush()
}
