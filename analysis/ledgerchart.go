package analysis

import (
	"fmt"
	"html/template"
	"math"
	"strings"
)

// ledgerChart draws every line of the ledger at the peak as a bar of bytes
// a connection, coloured by kind: the stacked chart over the connect shows
// what was sampled as it went (the probed caches, tcp_mem, the runner's
// RSS), this one all the ledger holds, the lines no sample tracks too
// (skbuff_small_head, queued data outside slab, page tables, anonymous
// memory). A negative line (a cache that shrank, the unexplained
// remainder) goes left of the axis.
func ledgerChart(lines []LedgerLine) string {
	if len(lines) == 0 {
		return `<p class="note">No ledger: the run did not reach its peak.</p>`
	}
	const barH, gap, nameW, valueW, width = 16.0, 4.0, 300.0, 90.0, 520.0
	var pos, neg float64
	for _, l := range lines {
		pos, neg = max(pos, l.BytesPerConnection), max(neg, -l.BytesPerConnection)
	}
	scale := width / math.Max(1, pos+neg)
	zero := nameW + neg*scale
	h := float64(len(lines))*(barH+gap) + 30
	var b strings.Builder
	fmt.Fprintf(&b, `<svg id="ledger-chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %.0f %.0f" width="%.0f" height="%.0f" font-size="11">`,
		nameW+width+valueW, h, nameW+width+valueW, h)
	for i, l := range lines {
		y := float64(i) * (barH + gap)
		v := l.BytesPerConnection
		x, w := zero, v*scale
		if v < 0 {
			x, w = zero+v*scale, -v*scale
		}
		name := template.HTMLEscapeString(l.Name)
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" text-anchor="end">%s</text>`, nameW-6, y+barH-4, name)
		fmt.Fprintf(&b, `<rect class="ledger-bar" x="%.1f" y="%.0f" width="%.1f" height="%.0f" fill="%s"><title>%s (%s): %s a connection, %s in all</title></rect>`,
			x, y, max(w, 0.5), barH, kindColor(l.Kind), name, l.Kind, signedBytes(int64(v)), signedBytes(l.BytesTotal))
		fmt.Fprintf(&b, `<text x="%.1f" y="%.0f">%s</text>`, max(zero, x+w)+4, y+barH-4, signedBytes(int64(v)))
	}
	fmt.Fprintf(&b, `<line x1="%.1f" y1="0" x2="%.1f" y2="%.0f" stroke="#444"/>`, zero, zero, h-30)
	x := nameW
	for _, kind := range kindOrder {
		fmt.Fprintf(&b, `<rect x="%.0f" y="%.0f" width="12" height="12" fill="%s"/><text x="%.0f" y="%.0f">%s</text>`, x, h-20, kindColors[kind], x+16, h-10, kind)
		x += 100
	}
	b.WriteString(`</svg>`)
	return b.String()
}

func kindColor(kind string) string {
	if c, ok := kindColors[kind]; ok {
		return c
	}
	return "#bab0ac"
}
