// Package bench measures the PE runtime: link throughput against raw TCP,
// latency at a fixed rate, and idle memory.
package bench

import (
	"fmt"
	"io"
)

// Options of a benchmark run.
type Options struct {
	Binary string
	Quick  bool
}

// Run prints the benchmark table.
func Run(out io.Writer, o Options) error {
	return fmt.Errorf("not yet")
}
