// Package plots draws the figure of an experiment from its result rows: one
// panel per plotted metric, the metric against the swept parameter, the
// median of the repetitions with a p10-p90 band (numeric parameter) or
// p10-p90 error bars (categorical parameter), and one series per backend
// (and per further parameter), so that simulated and measured results share
// a plot. Figures are written as PNG and SVG.
package plots

import (
	"fmt"
	"image/color"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"

	"sluice.dev/sluice/experiments/metrics"
	"sluice.dev/sluice/experiments/results"
	"sluice.dev/sluice/experiments/spec"
)

// Panel size of one metric.
const (
	panelW = 5 * vg.Inch
	panelH = 3.6 * vg.Inch
)

// Stats of one series at one X: the median and the p10-p90 range of the
// values (all repetitions, and all subjects for per-object metrics).
type Stats struct {
	X                string
	N                int
	Median, P10, P90 float64
}

// Series is one line of a panel.
type Series struct {
	// Backend and the values of the definition's series parameters.
	Backend string
	Extra   []spec.KV
	Points  []Stats
}

// Label is the legend entry.
func (s *Series) Label() string {
	parts := []string{s.Backend}
	for _, kv := range s.Extra {
		parts = append(parts, kv.Name+"="+kv.Value)
	}
	return strings.Join(parts, ", ")
}

// Summarise groups the rows of one metric by series and X, in the order of
// the definition's sweep values (backends sorted, sim first).
func Summarise(def *spec.Definition, rows []results.Row, metric string) ([]*Series, error) {
	xValues := sweepValues(def, def.Plot.X)
	type key struct{ series, x string }
	vals := map[key][]float64{}
	series := map[string]*Series{}
	for _, r := range rows {
		if r.Metric != metric || r.Experiment != def.Name {
			continue
		}
		pt, err := spec.ParsePoint(r.Params)
		if err != nil {
			return nil, err
		}
		m := pt.Map()
		s := &Series{Backend: r.Backend}
		for _, name := range def.Plot.Series {
			s.Extra = append(s.Extra, spec.KV{Name: name, Value: m[name]})
		}
		id := s.Label()
		if series[id] == nil {
			series[id] = s
		}
		vals[key{id, m[def.Plot.X]}] = append(vals[key{id, m[def.Plot.X]}], r.Value)
	}
	var out []*Series
	for id, s := range series {
		for _, x := range xValues {
			v := vals[key{id, x}]
			if len(v) == 0 {
				continue
			}
			sort.Float64s(v)
			s.Points = append(s.Points, Stats{X: x, N: len(v),
				Median: quantile(v, 0.5), P10: quantile(v, 0.1), P90: quantile(v, 0.9)})
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return seriesLess(def, out[i], out[j]) })
	return out, nil
}

// quantile of sorted values, interpolating linearly between the closest
// ranks (R's type 7, numpy's default).
func quantile(sorted []float64, p float64) float64 {
	h := float64(len(sorted)-1) * p
	lo := int(math.Floor(h))
	if lo+1 >= len(sorted) {
		return sorted[len(sorted)-1]
	}
	return sorted[lo] + (h-float64(lo))*(sorted[lo+1]-sorted[lo])
}

// seriesLess orders series by backend (sim first), then by the sweep order
// of their extra parameter values.
func seriesLess(def *spec.Definition, a, b *Series) bool {
	if a.Backend != b.Backend {
		if a.Backend == "sim" || b.Backend == "sim" {
			return a.Backend == "sim"
		}
		return a.Backend < b.Backend
	}
	for i := range a.Extra {
		vs := sweepValues(def, a.Extra[i].Name)
		ia, ib := slices.Index(vs, a.Extra[i].Value), slices.Index(vs, b.Extra[i].Value)
		if ia != ib {
			return ia < ib
		}
	}
	return false
}

func sweepValues(def *spec.Definition, name string) []string {
	for _, p := range def.Sweep {
		if p.Name == name {
			return p.Values
		}
	}
	return []string{""}
}

// numericX reports whether every value of the X parameter is a number.
func numericX(def *spec.Definition) bool {
	for _, v := range sweepValues(def, def.Plot.X) {
		if _, err := strconv.ParseFloat(v, 64); err != nil {
			return false
		}
	}
	return true
}

// Panel draws one metric of the experiment.
func Panel(def *spec.Definition, rows []results.Row, metric string) (*plot.Plot, error) {
	info, ok := metrics.Lookup(metric)
	if !ok {
		return nil, fmt.Errorf("unknown metric %q", metric)
	}
	series, err := Summarise(def, rows, metric)
	if err != nil {
		return nil, err
	}
	p := plot.New()
	p.Title.Text = fmt.Sprintf("%s: %s", def.Name, info.Label)
	p.X.Label.Text = def.Plot.XLabel
	if p.X.Label.Text == "" {
		p.X.Label.Text = "trial"
	}
	p.Y.Label.Text = fmt.Sprintf("%s (%s)", info.Label, info.Unit)
	p.Legend.Top = true
	p.Legend.Left = true
	p.Add(plotter.NewGrid())

	xs := sweepValues(def, def.Plot.X)
	numeric := numericX(def)
	xpos := func(x string, i int) float64 {
		if numeric {
			v, _ := strconv.ParseFloat(x, 64)
			return v
		}
		// Categories at 0, 1, ...; series dodge around them.
		off := 0.0
		if len(series) > 1 {
			off = (float64(i)/float64(len(series)-1) - 0.5) * 0.3
		}
		return float64(slices.Index(xs, x)) + off
	}
	// A log Y axis is drawn as log10 of the values on a linear axis with
	// decade labels: gonum's LogScale centres the axis label arithmetically,
	// which pushes it off the panel.
	logY := def.Plot.LogY && allPositive(series)
	ty := func(v float64) float64 {
		if logY {
			return math.Log10(v)
		}
		return v
	}
	ymin, ymax := math.Inf(1), math.Inf(-1)
	// Colour by the series parameters, style by backend: the simulated and
	// measured lines of one condition share a colour.
	colourOf := map[string]int{}
	backendOf := map[string]int{}
	for _, s := range series {
		k := (&Series{Extra: s.Extra}).Label()
		if _, ok := colourOf[k]; !ok {
			colourOf[k] = len(colourOf)
		}
		if _, ok := backendOf[s.Backend]; !ok {
			backendOf[s.Backend] = len(backendOf)
		}
	}
	for i, s := range series {
		col := plotutil.Color(colourOf[(&Series{Extra: s.Extra}).Label()])
		shape := plotutil.Shape(backendOf[s.Backend])
		var med plotter.XYs
		var errs plotter.YErrors
		var lo, hi plotter.XYs
		for _, st := range s.Points {
			x := xpos(st.X, i)
			st.Median, st.P10, st.P90 = ty(st.Median), ty(st.P10), ty(st.P90)
			med = append(med, plotter.XY{X: x, Y: st.Median})
			errs = append(errs, struct{ Low, High float64 }{st.Median - st.P10, st.P90 - st.Median})
			lo = append(lo, plotter.XY{X: x, Y: st.P10})
			hi = append(hi, plotter.XY{X: x, Y: st.P90})
			ymin = math.Min(ymin, st.P10)
			ymax = math.Max(ymax, st.P90)
		}
		if len(med) == 0 {
			continue
		}
		dashes := []vg.Length(nil)
		if s.Backend != "sim" {
			dashes = []vg.Length{vg.Points(5), vg.Points(3)}
		}
		if numeric {
			// Quantile band: p10 along the bottom, p90 back along the top.
			band := append(slices.Clone(lo), reverse(hi)...)
			poly, err := plotter.NewPolygon(band)
			if err != nil {
				return nil, err
			}
			poly.Color = withAlpha(col, 50)
			poly.LineStyle.Width = 0
			p.Add(poly)
			line, pts, err := plotter.NewLinePoints(med)
			if err != nil {
				return nil, err
			}
			line.Color, line.Dashes, pts.Color = col, dashes, col
			pts.Shape, pts.Radius = shape, vg.Points(3)
			p.Add(line, pts)
			p.Legend.Add(s.Label(), line, pts)
		} else {
			eb, err := plotter.NewYErrorBars(struct {
				plotter.XYs
				plotter.YErrors
			}{med, errs})
			if err != nil {
				return nil, err
			}
			eb.Color, eb.Dashes = col, dashes
			eb.CapWidth = vg.Points(6)
			pts, err := plotter.NewScatter(med)
			if err != nil {
				return nil, err
			}
			pts.Color, pts.Shape = col, shape
			pts.Radius = vg.Points(3)
			p.Add(eb, pts)
			p.Legend.Add(s.Label(), pts)
		}
	}
	if numeric {
		var ticks []plot.Tick
		lo, hi := math.Inf(1), math.Inf(-1)
		for _, x := range xs {
			v, _ := strconv.ParseFloat(x, 64)
			ticks = append(ticks, plot.Tick{Value: v, Label: x})
			lo, hi = math.Min(lo, v), math.Max(hi, v)
		}
		p.X.Tick.Marker = plot.ConstantTicks(ticks)
		// The axis spans the sweep whatever has data, with a margin.
		if def.Plot.LogX && lo > 0 {
			p.X.Scale = plot.LogScale{}
			p.X.Min, p.X.Max = lo/1.25, hi*1.25
		} else {
			pad := (hi - lo) * 0.05
			p.X.Min, p.X.Max = lo-pad, hi+pad
		}
	} else {
		var ticks []plot.Tick
		for i, x := range xs {
			ticks = append(ticks, plot.Tick{Value: float64(i), Label: x})
		}
		p.X.Tick.Marker = plot.ConstantTicks(ticks)
		p.X.Min, p.X.Max = -0.5, float64(len(xs))-0.5
	}
	p.Y.Tick.Marker = shortTicks{}
	switch {
	case len(series) == 0 || math.IsInf(ymax, -1):
		p.Title.Text += " (no data)"
		p.Y.Min, p.Y.Max = 0, 1
	case logY:
		p.Y.Tick.Marker = logTicks{}
		p.Y.Min = math.Floor(ymin)
		// Headroom for the legend.
		p.Y.Max = math.Max(math.Ceil(ymax), ymax+(ymax-p.Y.Min)*(0.1+0.09*float64(len(series))))
	case ymin >= 0:
		p.Y.Min = 0
		// Headroom for the legend in the top left corner.
		p.Y.Max = math.Max(ymax, 1e-9) * (1.1 + 0.09*float64(len(series)))
	}
	return p, nil
}

// shortTicks label about five round values (1, 2 or 5 times a power of
// ten apart) with the fewest digits, and put a minor tick between them.
type shortTicks struct{}

func (shortTicks) Ticks(lo, hi float64) []plot.Tick {
	if !(hi > lo) {
		return []plot.Tick{{Value: lo, Label: strconv.FormatFloat(lo, 'g', 6, 64)}}
	}
	raw := (hi - lo) / 5
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := 10 * mag
	for _, m := range []float64{1, 2, 5} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	var ts []plot.Tick
	for v := math.Ceil(lo/step) * step; v <= hi+step*1e-9; v += step {
		v := math.Round(v/step) * step // no drift: 0.30000000000000004
		ts = append(ts, plot.Tick{Value: v, Label: strconv.FormatFloat(v, 'g', 6, 64)})
		if m := v + step/2; m <= hi {
			ts = append(ts, plot.Tick{Value: m})
		}
	}
	return ts
}

// logTicks mark an axis of log10 values: a labelled tick at every power of
// ten, minor ticks at 2 and 5 times it.
type logTicks struct{}

func (logTicks) Ticks(lo, hi float64) []plot.Tick {
	var ts []plot.Tick
	for e := math.Floor(lo); e <= math.Ceil(hi); e++ {
		for _, m := range []float64{1, 2, 5} {
			v := e + math.Log10(m)
			if v < lo || v > hi {
				continue
			}
			t := plot.Tick{Value: v}
			if m == 1 {
				t.Label = strconv.FormatFloat(math.Pow(10, e), 'f', -1, 64)
			}
			ts = append(ts, t)
		}
	}
	return ts
}

func allPositive(series []*Series) bool {
	for _, s := range series {
		for _, p := range s.Points {
			if p.P10 <= 0 {
				return false
			}
		}
	}
	return true
}

func reverse(xy plotter.XYs) plotter.XYs {
	out := slices.Clone(xy)
	slices.Reverse(out)
	return out
}

func withAlpha(c color.Color, a uint8) color.Color {
	r, g, b, _ := c.RGBA()
	return color.NRGBA{R: uint8(r >> 8), G: uint8(g >> 8), B: uint8(b >> 8), A: a}
}

// drawPanels lays the panels out in a grid of two columns on c.
func drawPanels(panels []*plot.Plot, c draw.Canvas) {
	cols := min(len(panels), 2)
	nrows := (len(panels) + cols - 1) / cols
	grid := make([][]*plot.Plot, nrows)
	for r := range grid {
		grid[r] = make([]*plot.Plot, cols)
		for col := range cols {
			if i := r*cols + col; i < len(panels) {
				grid[r][col] = panels[i]
			}
		}
	}
	t := draw.Tiles{Rows: nrows, Cols: cols, PadX: vg.Millimeter * 4, PadY: vg.Millimeter * 4,
		PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 2}
	canvases := plot.Align(grid, t, c)
	for r := range grid {
		for col := range grid[r] {
			if grid[r][col] != nil {
				grid[r][col].Draw(canvases[r][col])
			}
		}
	}
}

// Render draws the experiment's figure and writes <dir>/<name>.png and
// <dir>/<name>.svg, returning their paths.
func Render(def *spec.Definition, rows []results.Row, dir string) (pngPath, svgPath string, err error) {
	var panels []*plot.Plot
	for _, m := range def.Plot.Metrics {
		p, err := Panel(def, rows, m)
		if err != nil {
			return "", "", err
		}
		panels = append(panels, p)
	}
	if len(panels) == 0 {
		return "", "", fmt.Errorf("%s: no metrics to plot", def.Name)
	}
	cols := min(len(panels), 2)
	w := panelW * vg.Length(cols)
	h := panelH * vg.Length((len(panels)+cols-1)/cols)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", err
	}
	pngPath = filepath.Join(dir, def.Name+".png")
	svgPath = filepath.Join(dir, def.Name+".svg")

	img := vgimg.NewWith(vgimg.UseWH(w, h), vgimg.UseDPI(120), vgimg.UseBackgroundColor(color.White))
	drawPanels(panels, draw.New(img))
	if err := writeTo(pngPath, vgimg.PngCanvas{Canvas: img}); err != nil {
		return "", "", err
	}
	svg := vgsvg.New(w, h)
	dc := draw.New(svg)
	dc.SetColor(color.White)
	dc.Fill(dc.Rectangle.Path())
	drawPanels(panels, dc)
	if err := writeTo(svgPath, svg); err != nil {
		return "", "", err
	}
	return pngPath, svgPath, nil
}

func writeTo(path string, c interface {
	WriteTo(w io.Writer) (int64, error)
}) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := c.WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
