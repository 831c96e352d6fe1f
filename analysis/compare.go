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
	Unit   string     `json:"unit"`
	Values []float64  `json:"values"`
	Diff   []float64  `json:"diff"`     // absolute, against the first run
	Pct    []*float64 `json:"diff_pct"` // null where the first run is 0
}

// Comparison is runs side by side.
type Comparison struct {
	Runs     []string   `json:"runs"`
	Settings [][]string `json:"settings"`
	Rows     []Row      `json:"rows"`
	Binding  []string   `json:"binding_limits"`
	Verdicts []string   `json:"verdicts"`
}

// metricRows are the run-level quantities compared, in order.
var metricRows = []struct{ key, unit string }{
	{"connections", "conns"}, {"verified", "conns"}, {"connect_rate", "conns/s"}, {"verified_rate", "conns/s"},
	{"kernel_per_conn", "B/conn"}, {"user_per_conn", "B/conn"}, {"runner_pss_per_conn", "B/conn"},
	{"queued_per_conn", "B/conn"}, {"tcp_mem_per_conn", "B/conn"},
	{"socket_p50", "B"}, {"socket_p99", "B"}, {"socket_max", "B"}, {"binds_at", "conns"},
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
	addRow := func(name, unit string, get func(Compared) float64) {
		row := Row{Name: name, Unit: unit}
		for _, r := range runs {
			row.Values = append(row.Values, get(r))
		}
		for _, v := range row.Values {
			row.Diff = append(row.Diff, v-row.Values[0])
			var pct *float64
			if row.Values[0] != 0 {
				p := 100 * (v - row.Values[0]) / math.Abs(row.Values[0])
				pct = &p
			}
			row.Pct = append(row.Pct, pct)
		}
		c.Rows = append(c.Rows, row)
	}
	for _, m := range metricRows {
		addRow(m.key, m.unit, func(r Compared) float64 { return r.Metrics[m.key] })
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
		addRow(k.kind+": "+k.name, "B/conn", func(r Compared) float64 {
			for _, l := range r.Explanation.Ledger {
				if l.Kind == k.kind && l.Name == k.name {
					return l.BytesPerConnection
				}
			}
			return 0
		})
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
		line := r.Name + "\t" + r.Unit
		for i, v := range r.Values {
			line += "\t" + cell(v)
			if i > 0 {
				line += "\t" + diffCell(r.Diff[i], r.Pct[i])
			}
		}
		fmt.Fprintln(tw, line)
	}
	tw.Flush()
	for i := range c.Runs {
		fmt.Fprintf(w, "\nrun %d binds on %s: %s.\n", i+1, c.Binding[i], c.Verdicts[i])
	}
}

// WriteComparisonHTML renders a comparison as one self-contained page.
func WriteComparisonHTML(w io.Writer, c Comparison) error {
	return compareTemplate().Execute(w, c)
}

// compareTemplate is parsed on first use (see reportTemplate).
var compareTemplate = sync.OnceValue(func() *template.Template {
	return template.Must(template.New("compare").Funcs(template.FuncMap{
		"cell": cell, "diff": diffCell, "inc": func(i int) int { return i + 1 },
		"join": func(s []string) string { return strings.Join(s, ", ") },
	}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>c10mprobe compare</title>
<style>body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1260px}
table{border-collapse:collapse}td,th{padding:3px 10px;border-bottom:1px solid #eee;text-align:right}
td:first-child,th:first-child{text-align:left}.up{color:#b00}.down{color:#070}</style></head><body>
<h1>c10mprobe: {{len .Runs}} runs compared</h1>
<ol>{{range $i, $r := .Runs}}<li><code>{{$r}}</code> {{join (index $.Settings $i)}}</li>{{end}}</ol>
<table id="compare"><tr><th>quantity</th><th>unit</th>{{range $i, $r := .Runs}}<th>run {{inc $i}}</th>{{if $i}}<th>Δ</th>{{end}}{{end}}</tr>
{{range .Rows}}<tr><td>{{.Name}}</td><td>{{.Unit}}</td>{{$row := .}}{{range $i, $v := .Values}}<td>{{cell $v}}</td>{{if $i}}<td>{{diff (index $row.Diff $i) (index $row.Pct $i)}}</td>{{end}}{{end}}</tr>
{{end}}</table>
<h2>Verdicts</h2><ol>{{range .Verdicts}}<li>{{.}}.</li>{{end}}</ol>
</body></html>
`))
})
