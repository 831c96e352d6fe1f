package analysis

import (
	"bytes"
	"fmt"
	"github.com/c10mprobe/c10mprobe/internal/phase"
	"html/template"
	"io"
	"sort"
	"strings"
	"sync"

	"github.com/c10mprobe/c10mprobe/internal/units"
)

// Report is what report.html shows.
type Report struct {
	Title          string
	Facts          []Fact
	Explanation    Explanation
	Series         []Sample
	Stacks         []Stack
	CPUStacks      []Stack
	SocketMemory   Distribution
	CPUProfileNote string
	PageSize       uint64 // of /proc/net/sockstat's tcp_mem pages
	// Covers are, by slab cache, the caches the run allocated from that it
	// serves (SLUB merging): the chart labels each by them.
	Covers map[string][]string
	// Machine is a --machine-mem run's machine and what it predicted.
	Machine *MachineRun
}

// Fact is one line of the report's header.
type Fact struct{ Name, Value string }

// WriteReport renders one self-contained HTML file: no scripts or styles
// fetched from anywhere, charts as inline SVG.
func WriteReport(w io.Writer, r Report) error {
	var flame, cpu bytes.Buffer
	if len(r.Stacks) > 0 {
		if err := WriteFlameSVG(&flame, r.Stacks, "kernel memory allocated by the run, by stack", "bytes"); err != nil {
			return err
		}
	}
	if len(r.CPUStacks) > 0 {
		if err := WriteFlameSVG(&cpu, r.CPUStacks, "where the run's CPU time went, by phase", "samples"); err != nil {
			return err
		}
	}
	data := map[string]any{
		"R":         r,
		"Memory":    template.HTML(memoryChart(r.Series, max(1, r.PageSize), r.Covers)),
		"Ledger":    template.HTML(ledgerChart(r.Explanation.Ledger)),
		"Conns":     template.HTML(connectionsChart(r.Series)),
		"Sockets":   template.HTML(socketChart(r.SocketMemory)),
		"Swap":      template.HTML(swapChart(r.Series, r.Machine)),
		"Flame":     template.HTML(flame.String()),
		"CPU":       template.HTML(cpu.String()),
		"HasCPU":    len(r.CPUStacks) > 0,
		"Phases":    ratePhases,
		"HasStacks": len(r.Stacks) > 0,
	}
	return reportTemplate().Execute(w, data)
}

// reportTemplate is parsed on first use: the workers are this binary too,
// and every package-level allocation is paid once per worker.
var reportTemplate = sync.OnceValue(func() *template.Template {
	return template.Must(template.New("report").Funcs(template.FuncMap{
		"bytes": func(v int64) string {
			if v < 0 {
				return "-" + units.Bytes(uint64(-v))
			}
			return units.Bytes(uint64(v))
		},
		"binds": func(p *uint64) string {
			if p == nil {
				return "never"
			}
			return units.Count(*p)
		},
		"pct": func(f float64) string { return fmt.Sprintf("%.1f %%", 100*f) },
		"f0":  func(f float64) string { return fmt.Sprintf("%.0f", f) },
	}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{.R.Title}}</title>
<style>
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1260px;color:#222}
h1{font-size:20px}h2{font-size:16px;margin-top:28px;border-bottom:1px solid #ddd}
.verdict{background:#fff6e0;border-left:4px solid #e0a000;padding:10px 14px;font-size:15px}
table{border-collapse:collapse}td,th{padding:3px 10px;border-bottom:1px solid #eee;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}.facts td:first-child{color:#666}
svg text{font-family:system-ui,sans-serif}.note{color:#666}svg{max-width:100%;height:auto}
</style></head><body>
<h1>{{.R.Title}}</h1>
<table class="facts">{{range .R.Facts}}<tr><td>{{.Name}}</td><td>{{.Value}}</td></tr>{{end}}</table>
<h2>Verdict</h2><p class="verdict" id="verdict">{{.R.Explanation.Verdict}}.</p>
<h2>Limits, first to bind first</h2>
<table id="limits"><tr><th>limit</th><th>binds at</th><th>value</th><th>used</th><th>why</th></tr>
{{range .R.Explanation.Limits}}<tr><td>{{.Name}}</td><td class="n">{{binds .BindsAt}}</td><td>{{.Value}}</td><td>{{.Used}}</td><td>{{.Detail}}</td></tr>{{end}}</table>
<h2>Where the memory went</h2>
<p>{{.R.Explanation.Connections}} connections, {{bytes .R.Explanation.GrowthBytes}} of growth, {{pct .R.Explanation.UnexplainedFraction}} unexplained.</p>
<table id="ledger"><tr><th>kind</th><th>name</th><th>B/conn</th><th>total</th><th>source</th><th>note</th></tr>
{{range .R.Explanation.Ledger}}<tr><td>{{.Kind}}</td><td>{{.Name}}</td><td class="n">{{f0 .BytesPerConnection}}</td><td class="n">{{bytes .BytesTotal}}</td><td class="note">{{.Source}}</td><td class="note">{{.Note}}</td></tr>{{end}}</table>
<h2>The ledger at the peak, line by line: bytes a connection</h2>{{.Ledger}}
<h2>Memory against connections, as sampled during the connect</h2>{{.Memory}}
<h2>Connections and connect rate over time</h2>{{.Conns}}
{{with .R.Explanation.Rate}}<div id="rate"><p>Connects a second by tenth of the connections held: {{range $i, $v := .ConnectByDecile}}{{if $i}}, {{end}}{{f0 $v}}{{end}}.</p>
{{range .Causes}}<p class="verdict">{{.Kind}}: {{.Detail}}; would change it: {{.Change}}.</p>{{end}}
{{if .CPUShare}}<table id="cpu-share"><tr><th>kernel function on the stack</th>{{range $.Phases}}<th>{{.}}</th>{{end}}</tr>
{{range $fn, $by := .CPUShare}}<tr><td>{{$fn}}</td>{{range $.Phases}}<td class="n">{{pct (index $by .)}}</td>{{end}}</tr>{{end}}</table>
<p class="note">Share of each phase's CPU samples (99 Hz a CPU, the run's processes) with the function on the stack.</p>{{end}}</div>{{end}}
<h2>Buffer memory per socket at the peak (sock_diag)</h2>{{.Sockets}}
<h2>A smaller machine going into swap: slab, swap and the ballast against connections, with the prediction</h2>{{.Swap}}
{{with .R.Explanation.Swap}}<p>{{.Verdict}}.</p>{{end}}
<h2>Kernel allocations by stack</h2>
{{if .HasStacks}}<div id="flamegraph">{{.Flame}}</div>{{else}}<p class="note">No stacks: the run had no probes.</p>{{end}}
<h2>CPU time by stack</h2>
{{if .HasCPU}}<div id="cpu-flamegraph">{{.CPU}}</div>{{else}}<p class="note">{{.R.CPUProfileNote}}</p>{{end}}
<h2>Myths, against this run</h2><ul>{{range .R.Explanation.Myths}}<li><b>{{.Claim}}</b>: {{.Measured}}.</li>{{end}}</ul>
</body></html>
`))
})

const chartW, chartH, padL, padB, legendW = 860.0, 300.0, 96.0, 30.0, 280.0

var palette = []string{"#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#9c755f", "#bab0ac", "#ff9da7", "#17becf", "#8c564b"}

// niceTicks are round values (1, 2 or 5 × 10^k) from 0 up to at least top,
// about five of them: the axis's top becomes the last.
func niceTicks(top float64) []float64 {
	if top <= 0 {
		top = 1
	}
	raw := top / 5
	mag := 1.0
	for mag*10 <= raw {
		mag *= 10
	}
	for mag > raw {
		mag /= 10
	}
	step := mag
	for _, m := range []float64{1, 2, 5, 10} {
		if mag*m >= raw {
			step = mag * m
			break
		}
	}
	var out []float64
	for v := 0.0; ; v += step {
		out = append(out, v)
		if v >= top {
			return out
		}
	}
}

// niceBytes are tick values for a byte axis: round in MiB or GiB units.
func niceBytes(top float64) []float64 {
	unit := 1.0
	for _, u := range []float64{1 << 10, 1 << 20, 1 << 30} {
		if top >= 4*u {
			unit = u
		}
	}
	ticks := niceTicks(top / unit)
	for i := range ticks {
		ticks[i] *= unit
	}
	return ticks
}

// chart opens an SVG with axes: x ticks (nil for none), y ticks, labels
// set clear of the tick labels. It returns the scale functions.
func chart(b *strings.Builder, xLabel, yLabel string, xTicks, yTicks []float64, xFmt, yFmt func(float64) string) (x, y func(float64) float64) {
	w, h := chartW+padL+legendW, chartH+padB+40
	fmt.Fprintf(b, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %.0f %.0f" width="%.0f" height="%.0f" font-size="11">`, w, h, w, h)
	fmt.Fprintf(b, `<line x1="%.0f" y1="10" x2="%.0f" y2="%.0f" stroke="#888"/><line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="#888"/>`,
		padL, padL, chartH+10, padL, chartH+10, padL+chartW, chartH+10)
	xMax, yMax := 1.0, yTicks[len(yTicks)-1]
	if len(xTicks) > 0 {
		xMax = xTicks[len(xTicks)-1]
	}
	x = func(v float64) float64 { return padL + chartW*v/xMax }
	y = func(v float64) float64 { return chartH + 10 - chartH*v/yMax }
	for _, t := range yTicks {
		fmt.Fprintf(b, `<text x="%.0f" y="%.0f" text-anchor="end">%s</text><line x1="%.0f" x2="%.0f" y1="%.1f" y2="%.1f" stroke="#eee"/>`,
			padL-6, y(t)+4, yFmt(t), padL, padL+chartW, y(t), y(t))
	}
	for _, t := range xTicks {
		fmt.Fprintf(b, `<text x="%.1f" y="%.0f" text-anchor="middle">%s</text>`, x(t), chartH+26, xFmt(t))
	}
	fmt.Fprintf(b, `<text x="%.0f" y="%.0f" text-anchor="middle">%s</text>`, padL+chartW/2, chartH+56, xLabel)
	fmt.Fprintf(b, `<text x="14" y="%.0f" transform="rotate(-90 14 %.0f)" text-anchor="middle">%s</text>`, chartH/2+10, chartH/2+10, yLabel)
	return x, y
}

// legend writes one row of a chart's legend.
func legend(b *strings.Builder, row int, color, name string) {
	fmt.Fprintf(b, `<rect x="%.0f" y="%d" width="12" height="12" fill="%s"/><text x="%.0f" y="%d">%s</text>`, padL+chartW+14, 14+18*row, color, padL+chartW+30, 24+18*row, template.HTMLEscapeString(name))
}

func count(v float64) string {
	if v != float64(uint64(v)) {
		return fmt.Sprintf("%.1f", v) // ticks of a short run's seconds
	}
	return units.Count(uint64(max(0, v)))
}

func bytesAxis(v float64) string { return units.Bytes(uint64(max(0, v))) }

// topCaches are the n slab caches that grew most over the series.
func topCaches(series []Sample, n int) []string {
	totals := map[string]int64{}
	for _, s := range series {
		for c, v := range s.CacheBytes {
			totals[c] = max(totals[c], v)
		}
	}
	var caches []string
	for c, v := range totals {
		if v > 0 {
			caches = append(caches, c)
		}
	}
	sort.Slice(caches, func(i, j int) bool { return totals[caches[i]] > totals[caches[j]] })
	return caches[:min(n, len(caches))]
}

// connectPoints are the samples of the connect phase, where the count
// grows (x is connections held), and the peak: the exchange's last sample.
func connectPoints(series []Sample) []Sample {
	var pts []Sample
	var peak *Sample
	for i, s := range series {
		if s.Phase == phase.Connect || s.Phase == phase.Idle || len(pts) == 0 {
			pts = append(pts, s)
		}
		if s.Phase == phase.Exchange {
			peak = &series[i]
		}
	}
	if peak != nil {
		pts = append(pts, *peak)
	}
	return pts
}

// memoryLayer is one band of the memory chart: its label and its bytes at
// each point.
type memoryLayer struct {
	name   string
	values []float64
}

// memoryStack is the memory chart's data: the probed caches' bytes (the
// eight largest, labelled by what the run allocated from them), the rest
// of slab, socket buffers (what tcp_mem counts) and the runner's RSS,
// each as growth since the idle sample (the workers' runtime baselines
// are not the connections' cost), at each point of the connect phase and
// at the peak, the exchange's last sample: what the payload queued comes
// in the exchange, after the last connect.
func memoryStack(series []Sample, pageSize uint64, covers map[string][]string) ([]Sample, []memoryLayer) {
	base := series[0]
	caches := topCaches(series, 8)
	pts := connectPoints(series)
	var layers []memoryLayer
	add := func(name string, v func(Sample) float64) {
		l := memoryLayer{name: name}
		for _, s := range pts {
			l.values = append(l.values, max(0, v(s)))
		}
		layers = append(layers, l)
	}
	for _, c := range caches {
		add(SlabLabel(c, covers[c]), func(s Sample) float64 { return float64(s.CacheBytes[c]) })
	}
	add("other slab", func(s Sample) float64 {
		v := float64(int64(s.Slab) - int64(base.Slab))
		for _, c := range caches {
			v -= float64(s.CacheBytes[c])
		}
		return v
	})
	add("socket buffers (tcp_mem pages)", func(s Sample) float64 { return float64((s.TCPMemPages - base.TCPMemPages) * int64(pageSize)) })
	add("runner RSS", func(s Sample) float64 { return float64(int64(s.RunnerRSS) - int64(base.RunnerRSS)) })
	return pts, layers
}

// memoryChart stacks memoryStack's layers against the connections held.
func memoryChart(series []Sample, pageSize uint64, covers map[string][]string) string {
	if len(series) < 2 {
		return `<p class="note">Too few samples for a chart.</p>`
	}
	pts, layers := memoryStack(series, pageSize, covers)
	xMax, yMax := 1.0, 1.0
	xs := make([]float64, len(pts))
	for i, s := range pts {
		xs[i] = float64(s.Established)
		xMax = max(xMax, xs[i])
		var sum float64
		for _, l := range layers {
			sum += l.values[i]
		}
		yMax = max(yMax, sum)
	}
	// The peak holds no more connections than the connect's end: it gets
	// a column of its own past the axis' last count, or its rise would be
	// a vertical line of no width.
	ticks := niceTicks(xMax)
	peakX := -1.0
	if n := len(pts); n > 1 && pts[n-1].Phase == phase.Exchange {
		peakX = ticks[len(ticks)-1] * 1.12
		xs[n-1] = peakX
		ticks = append(ticks, peakX)
	}
	xFmt := func(v float64) string {
		if v == peakX {
			return "after the exchange"
		}
		return count(v)
	}
	var b strings.Builder
	x, y := chart(&b, "connections held", "bytes", ticks, niceBytes(yMax), xFmt, bytesAxis)
	lower := make([]float64, len(pts))
	for li, l := range layers {
		upper := make([]float64, len(pts))
		var poly []string
		for i := range pts {
			upper[i] = lower[i] + l.values[i]
			poly = append(poly, fmt.Sprintf("%.1f,%.1f", x(xs[i]), y(upper[i])))
		}
		for i := len(pts) - 1; i >= 0; i-- {
			poly = append(poly, fmt.Sprintf("%.1f,%.1f", x(xs[i]), y(lower[i])))
		}
		color := palette[li%len(palette)]
		fmt.Fprintf(&b, `<polygon class="layer" points="%s" fill="%s" fill-opacity="0.85"><title>%s</title></polygon>`, strings.Join(poly, " "), color, template.HTMLEscapeString(l.name))
		legend(&b, li, color, l.name)
		lower = upper
	}
	b.WriteString("</svg>")
	return b.String()
}

// connectionsChart draws connections established and verified over time
// on the left axis, and the connect rate, from the counts between samples,
// on a right axis of its own.
func connectionsChart(series []Sample) string {
	if len(series) < 2 {
		return `<p class="note">Too few samples for a chart.</p>`
	}
	rates := make([]float64, len(series))
	tMax, nMax, rMax := 1.0, 1.0, 1.0
	for i, s := range series {
		if i > 0 {
			if dt := s.Seconds - series[i-1].Seconds; dt > 0 {
				rates[i] = max(0, float64(s.Established)-float64(series[i-1].Established)) / dt
			}
		}
		tMax, nMax, rMax = max(tMax, s.Seconds), max(nMax, float64(s.Established)), max(rMax, rates[i])
	}
	var b strings.Builder
	nTicks, rTicks := niceTicks(nMax), niceTicks(rMax)
	x, y := chart(&b, "seconds", "connections", niceTicks(tMax), nTicks, count, count)
	rTop := rTicks[len(rTicks)-1]
	yRate := func(v float64) float64 { return chartH + 10 - chartH*v/rTop }
	for _, t := range rTicks {
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" fill="%s">%s/s</text>`, padL+chartW+4, yRate(t)+4, palette[1], count(t))
	}
	line := func(get func(int) float64, scale func(float64) float64, color, name string, row int) {
		var pts []string
		for i, s := range series {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(s.Seconds), scale(get(i))))
		}
		fmt.Fprintf(&b, `<polyline class="line" points="%s" fill="none" stroke="%s" stroke-width="2"><title>%s</title></polyline>`, strings.Join(pts, " "), color, name)
		fmt.Fprintf(&b, `<rect x="%.0f" y="%d" width="12" height="12" fill="%s"/><text x="%.0f" y="%d">%s</text>`, padL+chartW+64, 14+18*row, color, padL+chartW+80, 24+18*row, name)
	}
	line(func(i int) float64 { return float64(series[i].Established) }, y, palette[0], "established", 0)
	line(func(i int) float64 { return float64(series[i].Verified) }, y, palette[4], "verified", 1)
	line(func(i int) float64 { return rates[i] }, yRate, palette[1], "connect rate (right axis)", 2)
	b.WriteString("</svg>")
	return b.String()
}

func socketChart(d Distribution) string {
	if d.Count == 0 {
		return `<p class="note">No sockets were read.</p>`
	}
	var b strings.Builder
	var top uint64 = 1
	for _, v := range d.Log2 {
		top = max(top, v)
	}
	chart(&b, "bytes of buffer memory per socket (each bar: up to the size under it)", "sockets", nil, niceTicks(float64(top)), count, count)
	yTop := niceTicks(float64(top))
	yMax := yTop[len(yTop)-1]
	bw := chartW / float64(max(1, len(d.Log2)))
	for i, v := range d.Log2 {
		h := chartH * float64(v) / yMax
		label, short := "0 B", "0"
		if i > 0 {
			label = fmt.Sprintf("%s–%s", units.Bytes(1<<(i-1)), units.Bytes(1<<i))
			short = shortBytes(1 << i)
		}
		fmt.Fprintf(&b, `<rect class="bar" x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s: %s sockets</title></rect>`,
			padL+float64(i)*bw+1, chartH+10-h, bw-2, h, palette[0], label, units.Count(v))
		// Short labels, turned, so that twenty of them do not overlap.
		fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" text-anchor="end" transform="rotate(-35 %.1f %.0f)">%s</text>`,
			padL+(float64(i)+0.5)*bw, chartH+24, padL+(float64(i)+0.5)*bw, chartH+24, short)
	}
	for i, line := range []string{"p50 " + units.Bytes(d.P50), "p99 " + units.Bytes(d.P99), "max " + units.Bytes(d.Max), "over " + units.Count(d.Count) + " sockets"} {
		fmt.Fprintf(&b, `<text x="%.0f" y="%d">%s</text>`, padL+chartW+14, 24+18*i, line)
	}
	b.WriteString("</svg>")
	return b.String()
}

// shortBytes is a power of two in few characters: 512, 4K, 16M.
func shortBytes(v uint64) string {
	for _, u := range []struct {
		n uint64
		s string
	}{{1 << 30, "G"}, {1 << 20, "M"}, {1 << 10, "K"}} {
		if v >= u.n {
			return fmt.Sprintf("%d%s", v/u.n, u.s)
		}
	}
	return fmt.Sprint(v)
}
