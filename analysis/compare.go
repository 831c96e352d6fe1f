package analysis

import (
	"fmt"
	"html/template"
	"io"
	"math"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"

	"github.com/c10mprobe/c10mprobe/internal/units"
)

// Compared is one run in a comparison.
type Compared struct {
	Name        string
	Explanation Explanation
	Metrics     map[string]float64 // rates and per-connection figures the run directory holds
	Settings    []string           // what was set for the run: sysctls, payload
}

// Row is one compared quantity: its values per run, and each run's
// difference from the first.
type Row struct {
	Name   string     `json:"name"`
	Label  string     `json:"label"` // the quantity in words
	Unit   string     `json:"unit"`
	Values []float64  `json:"values"`
	Diff   []float64  `json:"diff"`     // absolute, against the first run
	Pct    []*float64 `json:"diff_pct"` // null where the first run is 0
	// Noise says, for each run, that its difference is within what two
	// runs of one command differ by (noiseFloor).
	Noise []bool `json:"within_noise"`
}

// Comparison is runs side by side.
type Comparison struct {
	Runs     []string   `json:"runs"`
	Settings [][]string `json:"settings"`
	Rows     []Row      `json:"rows"`
	Binding  []string   `json:"binding_limits"`
	Verdicts []string   `json:"verdicts"`
	// Changes says, for each run after the first, in words, what was set
	// differently and what changed beyond run-to-run noise.
	Changes []string `json:"changes"`
	// ByKind is each run's bytes a connection by ledger kind (slab,
	// buffers, pages, user, unexplained), for the chart.
	ByKind []map[string]float64 `json:"bytes_per_connection_by_kind"`
}

// metricRows are the run-level quantities compared, in order, with what
// they are in words.
var metricRows = []struct{ key, unit, label string }{
	{"connections", "conns", "connections held"}, {"verified", "conns", "verified"},
	{"connect_rate", "conns/s", "connects a second"}, {"verified_rate", "conns/s", "verified a second"},
	{"kernel_per_conn", "B/conn", "kernel memory a connection"}, {"user_per_conn", "B/conn", "user space a connection"},
	{"runner_pss_per_conn", "B/conn", "the runner's PSS a connection"},
	{"queued_per_conn", "B/conn", "data queued in sockets a connection (sock_diag)"}, {"tcp_mem_per_conn", "B/conn", "charged to tcp_mem a connection"},
	{"socket_p50", "B", "socket memory, median socket (sock_diag)"}, {"socket_p99", "B", "socket memory, 99th percentile"},
	{"socket_max", "B", "socket memory, largest socket"}, {"binds_at", "conns", "first limit binds at"},
}

// Compare lines runs up against the first.
func Compare(runs []Compared) Comparison {
	c := Comparison{}
	for _, r := range runs {
		c.Runs = append(c.Runs, r.Name)
		c.Settings = append(c.Settings, r.Settings)
		c.Binding = append(c.Binding, r.Explanation.BindingLimit)
		c.Verdicts = append(c.Verdicts, r.Explanation.Verdict)
	}
	addRow := func(name, label, unit string, get func(Compared) float64) {
		row := Row{Name: name, Label: label, Unit: unit}
		for _, r := range runs {
			row.Values = append(row.Values, get(r))
		}
		floor := noiseFloor(name)
		for _, v := range row.Values {
			d := v - row.Values[0]
			row.Diff = append(row.Diff, d)
			var pct *float64
			if row.Values[0] != 0 {
				p := 100 * d / math.Abs(row.Values[0])
				pct = &p
			}
			row.Pct = append(row.Pct, pct)
			row.Noise = append(row.Noise, math.Abs(d) <= max(floor.rel*math.Abs(row.Values[0]), floor.abs))
		}
		c.Rows = append(c.Rows, row)
	}
	for _, m := range metricRows {
		addRow(m.key, m.label, m.unit, func(r Compared) float64 { return r.Metrics[m.key] })
	}
	// Ledger lines, by kind and name, that matter in any run.
	type key struct{ kind, name string }
	seen := map[key]bool{}
	var keys []key
	for _, r := range runs {
		for _, l := range r.Explanation.Ledger {
			k := key{l.Kind, l.Name}
			if !seen[k] && math.Abs(l.BytesPerConnection) >= minLine {
				seen[k] = true
				keys = append(keys, k)
			}
		}
	}
	sort.SliceStable(keys, func(i, j int) bool { return keys[i].kind < keys[j].kind })
	for _, k := range keys {
		addRow(k.kind+": "+k.name, k.kind+": "+k.name, "B/conn", func(r Compared) float64 {
			for _, l := range r.Explanation.Ledger {
				if l.Kind == k.kind && l.Name == k.name {
					return l.BytesPerConnection
				}
			}
			return 0
		})
	}
	for _, r := range runs {
		kinds := map[string]float64{}
		for _, l := range r.Explanation.Ledger {
			kinds[l.Kind] += l.BytesPerConnection
		}
		c.ByKind = append(c.ByKind, kinds)
	}
	for i := 1; i < len(runs); i++ {
		c.Changes = append(c.Changes, c.changes(i))
	}
	return c
}

func cell(v float64) string {
	if math.Abs(v) >= 100 || v == math.Trunc(v) {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f", v)
}

func diffCell(d float64, pct *float64) string {
	if d == 0 {
		return "="
	}
	if pct == nil {
		return fmt.Sprintf("%+.0f", d)
	}
	return fmt.Sprintf("%+.0f (%+.0f %%)", d, *pct)
}

// WriteComparisonText renders a comparison for a terminal.
func WriteComparisonText(w io.Writer, c Comparison) {
	for i, r := range c.Runs {
		fmt.Fprintf(w, "run %d: %s  [%s]\n", i+1, r, strings.Join(c.Settings[i], ", "))
	}
	for _, ch := range c.Changes {
		fmt.Fprintf(w, "\n%s\n", ch)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	header := "\nquantity\tunit"
	for i := range c.Runs {
		header += fmt.Sprintf("\trun %d", i+1)
		if i > 0 {
			header += fmt.Sprintf("\tΔ run %d", i+1)
		}
	}
	fmt.Fprintln(tw, header)
	for _, r := range c.Rows {
		line := r.Label + "\t" + r.Unit
		for i, v := range r.Values {
			line += "\t" + cell(v)
			if i > 0 {
				line += "\t" + diffCell(r.Diff[i], r.Pct[i])
				if r.Noise[i] && r.Diff[i] != 0 {
					line += " noise"
				}
			}
		}
		fmt.Fprintln(tw, line)
	}
	tw.Flush()
	fmt.Fprintln(w, "\n(noise: within what two runs of one command differed by here; docs/measurements.md, \"Run-to-run noise\")")
	for _, v := range c.verdicts() {
		fmt.Fprintf(w, "\n%s.\n", v)
	}
}

// verdicts are the runs' verdicts, said once where every run binds on
// the same limit.
func (c Comparison) verdicts() []string {
	same := len(c.Runs) > 1
	for _, b := range c.Binding {
		same = same && b == c.Binding[0]
	}
	if same {
		var at []string
		for _, r := range c.Rows {
			if r.Name == "binds_at" {
				for _, v := range r.Values {
					at = append(at, units.Count(uint64(max(0, v))))
				}
			}
		}
		return []string{fmt.Sprintf("every run binds on %s first, at %s connections; run 1: %s", c.Binding[0], strings.Join(at, ", then "), c.Verdicts[0])}
	}
	var out []string
	for i := range c.Runs {
		out = append(out, fmt.Sprintf("run %d binds on %s: %s", i+1, c.Binding[i], c.Verdicts[i]))
	}
	return out
}

// WriteComparisonHTML renders a comparison as one self-contained page.
func WriteComparisonHTML(w io.Writer, c Comparison) error {
	return compareTemplate().Execute(w, c)
}

// kindOrder and kindColors draw the bytes-a-connection chart.
var kindOrder = []string{"slab", "buffers", "pages", "user", "unexplained"}
var kindColors = map[string]string{"slab": "#4e79a7", "buffers": "#f28e2b", "pages": "#59a14f", "user": "#b07aa1", "unexplained": "#bab0ac"}

// kindBars is one stacked bar a run: its bytes a connection by ledger kind
// (a kind's negative remainder is left out of the bar, not subtracted).
func kindBars(c Comparison) template.HTML {
	const barH, gap, padL, width = 26.0, 12.0, 70.0, 760.0
	top := 1.0
	for _, k := range c.ByKind {
		sum := 0.0
		for _, kind := range kindOrder {
			sum += max(0, k[kind])
		}
		top = max(top, sum)
	}
	h := float64(len(c.ByKind))*(barH+gap) + 40
	var b strings.Builder
	fmt.Fprintf(&b, `<svg id="bykind" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %.0f %.0f" width="%.0f" height="%.0f" font-size="11">`, padL+width+90, h, padL+width+90, h)
	for i, k := range c.ByKind {
		y, x := float64(i)*(barH+gap), padL
		fmt.Fprintf(&b, `<text x="0" y="%.0f">run %d</text>`, y+barH/2+4, i+1)
		for _, kind := range kindOrder {
			w := width * max(0, k[kind]) / top
			if w > 0 {
				fmt.Fprintf(&b, `<rect x="%.1f" y="%.0f" width="%.1f" height="%.0f" fill="%s"><title>%s: %s a connection</title></rect>`,
					x, y, w, barH, kindColors[kind], kind, units.Bytes(uint64(k[kind])))
			}
			x += w
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%.0f">%s</text>`, x+4, y+barH/2+4, units.Bytes(uint64((x-padL)/width*top)))
	}
	x := padL
	for _, kind := range kindOrder {
		fmt.Fprintf(&b, `<rect x="%.0f" y="%.0f" width="12" height="12" fill="%s"/><text x="%.0f" y="%.0f">%s</text>`, x, h-24, kindColors[kind], x+16, h-14, kind)
		x += 110
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// compareTemplate is parsed on first use (see reportTemplate).
var compareTemplate = sync.OnceValue(func() *template.Template {
	return template.Must(template.New("compare").Funcs(template.FuncMap{
		"cell": cell, "diff": diffCell, "inc": func(i int) int { return i + 1 }, "bars": kindBars,
		"join": func(s []string) string { return strings.Join(s, ", ") },
	}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>c10mprobe compare</title>
<style>body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1260px}
table{border-collapse:collapse}td,th{padding:3px 10px;border-bottom:1px solid #eee;text-align:right}
td:first-child,th:first-child{text-align:left}.up{color:#b00}.down{color:#070}.noise{color:#aaa}.note{color:#666}</style></head><body>
<h1>c10mprobe: {{len .Runs}} runs compared</h1>
<ol>{{range $i, $r := .Runs}}<li><code>{{$r}}</code> {{join (index $.Settings $i)}}</li>{{end}}</ol>
<h2>What changed</h2><div id="changes">{{range .Changes}}<p>{{.}}</p>{{end}}</div>
<h2>Bytes a connection, by kind</h2>{{bars .}}
<table id="compare"><tr><th>quantity</th><th>unit</th>{{range $i, $r := .Runs}}<th>run {{inc $i}}</th>{{if $i}}<th>Δ</th>{{end}}{{end}}</tr>
{{range .Rows}}<tr><td>{{.Label}}</td><td>{{.Unit}}</td>{{$row := .}}{{range $i, $v := .Values}}<td>{{cell $v}}</td>{{if $i}}<td{{if index $row.Noise $i}} class="noise" title="within run-to-run noise"{{end}}>{{diff (index $row.Diff $i) (index $row.Pct $i)}}</td>{{end}}{{end}}</tr>
{{end}}</table>
<p class="note">Grey differences are within what two runs of one command differed by (docs/measurements.md, "Run-to-run noise").</p>
<h2>Verdicts</h2><ol>{{range .Verdicts}}<li>{{.}}.</li>{{end}}</ol>
</body></html>
`))
})
