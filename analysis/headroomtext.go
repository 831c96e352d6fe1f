package analysis

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/c10mprobe/c10mprobe/internal/units"
)

// WriteText writes the headroom for a terminal: the verdict, the cost of a
// connection more, and the limits, the first to bind first.
func (h Headroom) WriteText(w io.Writer) {
	fmt.Fprintln(w, "Verdict:", h.Verdict)
	c := h.PerConn
	fmt.Fprintf(w, "\nA connection more costs ≈ %s: kernel %s (%.2f sockets here; %s), buffers %s, user %s (%s).\n",
		units.Bytes(uint64(c.Total())), units.Bytes(uint64(c.Kernel)), c.Sockets, c.KernelWhy, units.Bytes(uint64(c.Buffers)), units.Bytes(uint64(c.User)), c.UserNote)
	if b := h.Buffers; b.Total > 0 || b.Grown > 0 {
		fmt.Fprintf(w, "Socket buffers now: p50 %s, p99 %s, max %s, total %s; %d receive buffers grown past tcp_rmem's default.\n",
			units.Bytes(b.P50), units.Bytes(b.P99), units.Bytes(b.Max), units.Bytes(b.Total), b.Grown)
	}
	fmt.Fprintln(w, "\nLimits, the first to bind first:")
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	for _, l := range h.Limits {
		at, more := "never", ""
		if l.BindsAt != nil {
			at, more = units.Count(*l.BindsAt), "+"+units.Count(*l.More)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", l.Name, at, more, l.Value)
	}
	tw.Flush()
}
