package runner

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"k8s.io/utils/clock"
)

// Progress reports trials done out of the total, elapsed time and an
// estimate of the time left. On a terminal it redraws one bar line; else
// (CI logs, files) it prints one plain line per finished trial.
type Progress struct {
	mu      sync.Mutex
	w       io.Writer
	tty     bool
	clk     clock.PassiveClock
	label   string
	total   int
	done    int
	failed  int
	start   time.Time
	current string
}

// NewProgress starts reporting a run of total trials under label.
func NewProgress(w io.Writer, tty bool, clk clock.PassiveClock, label string, total int) *Progress {
	p := &Progress{w: w, tty: tty, clk: clk, label: label, total: total, start: clk.Now()}
	if !tty {
		fmt.Fprintf(w, "%s: %d trials\n", label, total)
	}
	return p
}

// Started notes the trial now running (shown on the bar).
func (p *Progress) Started(name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.current = name
	if p.tty {
		p.draw()
	}
}

// Finished counts one trial; err is its failure, if any.
func (p *Progress) Finished(name string, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done++
	status := "ok"
	if err != nil {
		p.failed++
		status = "FAILED: " + err.Error()
	}
	if p.tty {
		if err != nil {
			// Failures stay on screen above the bar.
			fmt.Fprintf(p.w, "\r\x1b[K%s: %s %s\n", p.label, name, status)
		}
		p.draw()
		return
	}
	fmt.Fprintf(p.w, "%s: %d/%d %s %s elapsed %s eta %s\n", p.label, p.done, p.total, name, status,
		p.elapsed(), p.eta())
}

// Close ends the report with a summary line.
func (p *Progress) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty {
		p.draw()
		fmt.Fprintln(p.w)
	}
	fmt.Fprintf(p.w, "%s: %d trials, %d failed, in %s\n", p.label, p.done, p.failed, p.elapsed())
}

const barWidth = 30

func (p *Progress) draw() {
	filled := 0
	if p.total > 0 {
		filled = barWidth * p.done / p.total
	}
	bar := strings.Repeat("=", filled)
	if filled < barWidth {
		bar += ">" + strings.Repeat(" ", barWidth-filled-1)
	}
	line := fmt.Sprintf("%s [%s] %d/%d elapsed %s eta %s", p.label, bar, p.done, p.total, p.elapsed(), p.eta())
	if p.failed > 0 {
		line += fmt.Sprintf(" (%d failed)", p.failed)
	}
	if p.current != "" && p.done < p.total {
		line += "  " + p.current
	}
	fmt.Fprintf(p.w, "\r\x1b[K%s", line)
}

func (p *Progress) elapsed() time.Duration {
	return p.clk.Since(p.start).Round(time.Second)
}

// eta extrapolates the mean time per finished trial; "?" before the first.
func (p *Progress) eta() string {
	if p.done == 0 {
		return "?"
	}
	per := p.clk.Since(p.start) / time.Duration(p.done)
	return (per * time.Duration(p.total-p.done)).Round(time.Second).String()
}
