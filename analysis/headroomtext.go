package analysis

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/c10mprobe/c10mprobe/internal/units"
)

// WriteText writes the headroom for a terminal: the verdict, the cost of a
// connection more, and the limits, the first to bind first.
func (h Headroom) WriteText(w io.Writer) {
	fmt.Fprintln(w, "Verdict:", h.Verdict)
	for _, u := range h.Unread {
		fmt.Fprintln(w, "Not read:", u)
	}
	c := h.PerConn
	fmt.Fprintf(w, "\nA connection more costs ≈ %s: kernel %s (%.2f sockets here; %s), buffers %s, user %s (%s).\n",
		units.Bytes(uint64(c.Total())), units.Bytes(uint64(c.Kernel)), c.Sockets, c.KernelWhy, units.Bytes(uint64(c.Buffers)), units.Bytes(uint64(c.User)), c.UserNote)
	if b := h.Buffers; b.Total > 0 || b.Grown > 0 {
		fmt.Fprintf(w, "Socket buffers now: p50 %s, p99 %s, max %s, total %s; %d receive buffers grown past tcp_rmem's default",
			units.Bytes(b.P50), units.Bytes(b.P99), units.Bytes(b.Max), units.Bytes(b.Total), b.Grown)
		for i, g := range b.Largest {
			sep := ", "
			if i == 0 {
				sep = ", the largest: "
			}
			fmt.Fprintf(w, "%s%s's %s (%s held)", sep, g.Peer, units.Bytes(g.RcvBuf), units.Bytes(g.Buffered))
		}
		fmt.Fprintln(w, ".")
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

// WriteWatchLine writes one --watch sample as a line: the connections now
// and their rate since prev, the first limit to bind and, at that rate,
// when; and what the server's memory grew by a connection between the two
// samples, a better measure of its user memory than one sample's whole.
func WriteWatchLine(w io.Writer, prev *Headroom, cur Headroom, dt time.Duration, at time.Time) {
	line := fmt.Sprintf("%s  %s connections", at.Format("15:04:05"), units.Count(cur.Now))
	rate := 0.0
	if prev != nil && dt > 0 {
		rate = float64(cur.Now-prev.Now) / dt.Seconds()
		line += fmt.Sprintf(" (%+.0f/s)", rate)
	}
	if len(cur.Limits) > 0 && cur.Limits[0].BindsAt != nil {
		l := cur.Limits[0]
		line += fmt.Sprintf("  %s binds first at %s, %s more", l.Name, units.Count(*l.BindsAt), units.Count(*l.More))
		if rate > 0 {
			line += fmt.Sprintf(": in %s at this rate", (time.Duration(float64(*l.More)/rate) * time.Second).Round(time.Second))
		}
	}
	if prev != nil && cur.Now != prev.Now {
		per := (float64(cur.ServerPss) - float64(prev.ServerPss)) / float64(cur.Now-prev.Now)
		line += fmt.Sprintf("  server memory %+.0f B a connection since the last sample", per)
	}
	fmt.Fprintln(w, line)
}
