package analysis

import (
	"fmt"
	"html"
	"io"
	"sort"
	"strings"

	"github.com/c10mprobe/c10mprobe/internal/units"
)

// flameNode is one frame in the merged stack tree.
type flameNode struct {
	name     string
	value    uint64
	children map[string]*flameNode
}

func flameTree(stacks []Stack) *flameNode {
	root := &flameNode{name: "all", children: map[string]*flameNode{}}
	for _, s := range stacks {
		n := root
		n.value += s.Weight
		for _, f := range strings.Split(folded(s), ";") {
			c := n.children[f]
			if c == nil {
				c = &flameNode{name: f, children: map[string]*flameNode{}}
				n.children[f] = c
			}
			c.value += s.Weight
			n = c
		}
	}
	return root
}

const (
	flameWidth  = 1200.0
	flameRow    = 17.0
	flameMargin = 10.0
)

// WriteFlameSVG renders a self-contained flamegraph: root at the bottom,
// width by weight (unit: "bytes" or "samples"), a hover title on every frame,
// click to zoom.
func WriteFlameSVG(w io.Writer, stacks []Stack, title, unit string) error {
	root := flameTree(stacks)
	depth := 0
	var measure func(n *flameNode, d int)
	measure = func(n *flameNode, d int) {
		depth = max(depth, d)
		for _, c := range n.children {
			measure(c, d+1)
		}
	}
	measure(root, 0)
	height := float64(depth+1)*flameRow + 3*flameMargin + 20
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="monospace" font-size="11">`+"\n",
		flameWidth+2*flameMargin, height, flameWidth+2*flameMargin, height)
	fmt.Fprintf(&b, `<text x="%.0f" y="18" font-size="14">%s (%s; click a frame to zoom, click "all" to reset)</text>`+"\n",
		flameMargin, html.EscapeString(title), html.EscapeString(units.Count(root.value)+" "+unit))
	id := 0
	var draw func(n *flameNode, x, width float64, d int)
	draw = func(n *flameNode, x, width float64, d int) {
		if width < 0.3 {
			return
		}
		y := height - flameMargin - float64(d+1)*flameRow
		share := 100 * float64(n.value) / float64(max(1, root.value))
		label := fmt.Sprintf("%s: %s %s (%.1f %%)", n.name, units.Count(n.value), unit, share)
		fmt.Fprintf(&b, `<g class="f" data-x="%.2f" data-w="%.2f"><title>%s</title><rect x="%.2f" y="%.1f" width="%.2f" height="%.1f" fill="%s" rx="1"/>`,
			x, width, html.EscapeString(label), x, y, width, flameRow-1, frameColor(n.name))
		if width > 40 {
			text := n.name
			if maxChars := int(width / 7); len(text) > maxChars {
				text = text[:max(0, maxChars-1)] + "…"
			}
			fmt.Fprintf(&b, `<text x="%.2f" y="%.1f">%s</text>`, x+3, y+flameRow-5, html.EscapeString(text))
		}
		b.WriteString("</g>\n")
		id++
		kids := make([]*flameNode, 0, len(n.children))
		for _, c := range n.children {
			kids = append(kids, c)
		}
		sort.Slice(kids, func(i, j int) bool { return kids[i].name < kids[j].name })
		cx := x
		for _, c := range kids {
			cw := width * float64(c.value) / float64(max(1, n.value))
			draw(c, cx, cw, d+1)
			cx += cw
		}
	}
	draw(root, flameMargin, flameWidth, 0)
	// Zoom: scale the clicked frame's span to the full width; frames outside it vanish.
	b.WriteString(`<script><![CDATA[
document.querySelectorAll("g.f").forEach(function(g){g.addEventListener("click",function(){
var x0=+g.dataset.x,w0=+g.dataset.w,m=` + fmt.Sprintf("%.0f,W=%.0f", flameMargin, flameWidth) + `;
document.querySelectorAll("g.f").forEach(function(h){var x=+h.dataset.x,w=+h.dataset.w,r=h.querySelector("rect"),t=h.querySelector("text");
var nx=m+(x-x0)*W/w0,nw=w*W/w0,vis=x+w>x0+1e-6&&x<x0+w0-1e-6;h.style.display=vis?"":"none";r.setAttribute("x",nx);r.setAttribute("width",nw);if(t){t.setAttribute("x",nx+3);t.style.display=nw>40?"":"none";}});});});
]]></script>
</svg>
`)
	_, err := io.WriteString(w, b.String())
	return err
}

// frameColor is a stable warm color per name; cache leaves are blue.
func frameColor(name string) string {
	if strings.HasPrefix(name, "[") {
		return "rgb(110,160,220)"
	}
	var h uint32 = 2166136261
	for i := 0; i < len(name); i++ {
		h = (h ^ uint32(name[i])) * 16777619
	}
	return fmt.Sprintf("rgb(%d,%d,%d)", 205+h%50, 80+(h>>8)%120, 40+(h>>16)%50)
}
