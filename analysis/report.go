package analysis

import (
	"bytes"
	"fmt"
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
		if err := WriteFlameSVG(&cpu, r.CPUStacks, "where the run's CPU time went (connect and exchange)", "samples"); err != nil {
			return err
		}
	}
	data := map[string]any{
		"R":         r,
		"Memory":    template.HTML(memoryChart(r.Series)),
		"Conns":     template.HTML(connectionsChart(r.Series)),
		"Sockets":   template.HTML(socketChart(r.SocketMemory)),
		"Flame":     template.HTML(flame.String()),
		"CPU":       template.HTML(cpu.String()),
		"HasCPU":    len(r.CPUStacks) > 0,
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
svg text{font-family:system-ui,sans-serif}.note{color:#666}
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
<h2>Memory by kind against connections</h2>{{.Memory}}
<h2>Connections and connect rate over time</h2>{{.Conns}}
<h2>Buffer memory per socket at the peak (sock_diag)</h2>{{.Sockets}}
<h2>Kernel allocations by stack</h2>
{{if .HasStacks}}<div id="flamegraph">{{.Flame}}</div>{{else}}<p class="note">No stacks: the run had no probes.</p>{{end}}
<h2>CPU time by stack</h2>
{{if .HasCPU}}<div id="cpu-flamegraph">{{.CPU}}</div>{{else}}<p class="note">{{.R.CPUProfileNote}}</p>{{end}}
<h2>Myths, against this run</h2><ul>{{range .R.Explanation.Myths}}<li><b>{{.Claim}}</b>: {{.Measured}}.</li>{{end}}</ul>
</body></html>
`))
})

const chartW, chartH, padL, padB = 900.0, 300.0, 70.0, 30.0

var palette = []string{"#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#9c755f", "#bab0ac"}

func axes(b *strings.Builder, xLabel, yLabel string, xMax, yMax float64, yFmt func(float64) string) {
	axesTicks(b, xLabel, yLabel, xMax, yMax, yFmt, true)
}

func axesTicks(b *strings.Builder, xLabel, yLabel string, xMax, yMax float64, yFmt func(float64) string, xTicks bool) {
	fmt.Fprintf(b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-size="11">`, chartW+padL+200, chartH+padB+20)
	fmt.Fprintf(b, `<line x1="%.0f" y1="10" x2="%.0f" y2="%.0f" stroke="#888"/><line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="#888"/>`,
		padL, padL, chartH+10, padL, chartH+10, padL+chartW, chartH+10)
	for i := 0; i <= 4; i++ {
		y := chartH + 10 - chartH*float64(i)/4
		fmt.Fprintf(b, `<text x="%.0f" y="%.0f" text-anchor="end">%s</text>`, padL-4, y+4, yFmt(yMax*float64(i)/4))
		if xTicks {
			fmt.Fprintf(b, `<text x="%.0f" y="%.0f" text-anchor="middle">%s</text>`, padL+chartW*float64(i)/4, chartH+26, units.Count(uint64(xMax*float64(i)/4)))
		}
	}
	fmt.Fprintf(b, `<text x="%.0f" y="%.0f" text-anchor="middle">%s</text>`, padL+chartW/2, chartH+44, xLabel)
	fmt.Fprintf(b, `<text x="12" y="%.0f" transform="rotate(-90 12 %.0f)" text-anchor="middle">%s</text>`, chartH/2, chartH/2, yLabel)
}

func bytesAxis(v float64) string { return units.Bytes(uint64(max(0, v))) }

// memoryChart stacks the probed caches' bytes, the rest of slab, and the
// runner's RSS against the connections held.
func memoryChart(series []Sample) string {
	if len(series) < 2 {
		return `<p class="note">Too few samples for a chart.</p>`
	}
	base := series[0]
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
	if len(caches) > 6 {
		caches = caches[:6]
	}
	layers := append(append([]string(nil), caches...), "other slab", "runner RSS")
	// Growth since the idle sample: the workers' runtime baselines are not
	// the connections' cost.
	value := func(s Sample, layer string) float64 {
		switch layer {
		case "other slab":
			v := float64(int64(s.Slab) - int64(base.Slab))
			for _, c := range caches {
				v -= float64(s.CacheBytes[c])
			}
			return max(0, v)
		case "runner RSS":
			return max(0, float64(int64(s.RunnerRSS)-int64(base.RunnerRSS)))
		}
		return max(0, float64(s.CacheBytes[layer]))
	}
	// The connect phase, where the count grows: x is connections held.
	var pts []Sample
	for _, s := range series {
		if s.Phase == "connect" || s.Phase == "idle" || len(pts) == 0 {
			pts = append(pts, s)
		}
	}
	if last := series[len(series)-1]; last.Phase != "connect" {
		for _, s := range series {
			if s.Phase == "exchange" {
				pts = append(pts, s)
				break
			}
		}
	}
	xMax, yMax := 1.0, 1.0
	for _, s := range pts {
		xMax = max(xMax, float64(s.Established))
		var sum float64
		for _, l := range layers {
			sum += value(s, l)
		}
		yMax = max(yMax, sum)
	}
	var b strings.Builder
	axes(&b, "connections held", "bytes", xMax, yMax, bytesAxis)
	x := func(v float64) float64 { return padL + chartW*v/xMax }
	y := func(v float64) float64 { return chartH + 10 - chartH*v/yMax }
	lower := make([]float64, len(pts))
	for li, l := range layers {
		upper := make([]float64, len(pts))
		var poly []string
		for i, s := range pts {
			upper[i] = lower[i] + value(s, l)
			poly = append(poly, fmt.Sprintf("%.1f,%.1f", x(float64(s.Established)), y(upper[i])))
		}
		for i := len(pts) - 1; i >= 0; i-- {
			poly = append(poly, fmt.Sprintf("%.1f,%.1f", x(float64(pts[i].Established)), y(lower[i])))
		}
		color := palette[li%len(palette)]
		fmt.Fprintf(&b, `<polygon class="layer" points="%s" fill="%s" fill-opacity="0.85"><title>%s</title></polygon>`, strings.Join(poly, " "), color, l)
		fmt.Fprintf(&b, `<rect x="%.0f" y="%d" width="12" height="12" fill="%s"/><text x="%.0f" y="%d">%s</text>`, padL+chartW+14, 14+18*li, color, padL+chartW+30, 24+18*li, l)
		lower = upper
	}
	b.WriteString("</svg>")
	return b.String()
}

func connectionsChart(series []Sample) string {
	if len(series) < 2 {
		return `<p class="note">Too few samples for a chart.</p>`
	}
	tMax, nMax, rMax := 1.0, 1.0, 1.0
	for _, s := range series {
		tMax, nMax, rMax = max(tMax, s.Seconds), max(nMax, float64(s.Established)), max(rMax, s.Rate)
	}
	var b strings.Builder
	axes(&b, "seconds", "connections", tMax, nMax, func(v float64) string { return units.Count(uint64(v)) })
	line := func(get func(Sample) float64, top float64, color, name string, row int) {
		var pts []string
		for _, s := range series {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", padL+chartW*s.Seconds/tMax, chartH+10-chartH*get(s)/top))
		}
		fmt.Fprintf(&b, `<polyline class="line" points="%s" fill="none" stroke="%s" stroke-width="2"><title>%s</title></polyline>`, strings.Join(pts, " "), color, name)
		fmt.Fprintf(&b, `<rect x="%.0f" y="%d" width="12" height="12" fill="%s"/><text x="%.0f" y="%d">%s</text>`, padL+chartW+14, 14+18*row, color, padL+chartW+30, 24+18*row, name)
	}
	line(func(s Sample) float64 { return float64(s.Established) }, nMax, palette[0], "established", 0)
	line(func(s Sample) float64 { return float64(s.Verified) }, nMax, palette[4], "verified", 1)
	line(func(s Sample) float64 { return s.Rate }, rMax, palette[1], fmt.Sprintf("connect rate (max %s/s)", units.Count(uint64(rMax))), 2)
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
	axesTicks(&b, "bytes of buffer memory per socket", "sockets", float64(len(d.Log2)), float64(top), func(v float64) string { return units.Count(uint64(v)) }, false)
	bw := chartW / float64(max(1, len(d.Log2)))
	for i, v := range d.Log2 {
		h := chartH * float64(v) / float64(top)
		label := "0 B"
		if i > 0 {
			label = fmt.Sprintf("%s–%s", units.Bytes(1<<(i-1)), units.Bytes(1<<i))
		}
		fmt.Fprintf(&b, `<rect class="bar" x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s: %s sockets</title></rect>`,
			padL+float64(i)*bw+1, chartH+10-h, bw-2, h, palette[0], label, units.Count(v))
		fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" text-anchor="middle">%s</text>`, padL+(float64(i)+0.5)*bw, chartH+26, label)
	}
	fmt.Fprintf(&b, `<text x="%.0f" y="24">p50 %s, p99 %s, max %s</text><text x="%.0f" y="42">over %s sockets</text>`, padL+chartW+14,
		units.Bytes(d.P50), units.Bytes(d.P99), units.Bytes(d.Max), padL+chartW+14, units.Count(d.Count))
	b.WriteString("</svg>")
	return b.String()
}
