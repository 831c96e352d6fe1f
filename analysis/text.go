package analysis

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/c10mprobe/c10mprobe/internal/units"
)

// WriteText renders an explanation for a terminal.
func WriteText(w io.Writer, e Explanation) {
	fmt.Fprintf(w, "Verdict: %s.\n\n", e.Verdict)
	fmt.Fprintf(w, "Where the memory went (%s connections, %s of growth; %.1f %% unexplained):\n",
		units.Count(e.Connections), units.Bytes(uint64(max(0, e.GrowthBytes))), 100*e.UnexplainedFraction)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "  B/conn\tclient B/sock\tserver B/sock\ttotal\t \tkind\tname\t")
	assumed := false
	for _, l := range e.Ledger {
		if l.BytesTotal == 0 {
			continue
		}
		mark := ""
		if !l.SplitMeasured {
			mark, assumed = "*", true
		}
		fmt.Fprintf(tw, "  %.0f\t%.0f%s\t%.0f%s\t%s\t \t%s\t%s\t\n", l.BytesPerConnection, l.BytesPerClientSocket, mark, l.BytesPerServerSocket, mark,
			signedBytes(l.BytesTotal), l.Kind, l.Name)
	}
	tw.Flush()
	if assumed {
		fmt.Fprintln(w, "    * split evenly between the ends by assumption (each holds one sock, inode, dentry, file and epoll item); user space (PSS by role) and buffers (sock_diag) are measured by end")
	}
	for _, l := range e.Ledger {
		if l.Note != "" && l.BytesTotal != 0 {
			fmt.Fprintf(w, "    %s: %s\n", l.Name, l.Note)
		}
	}
	fmt.Fprintln(w, "\nLimits, first to bind first:")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  LIMIT\tBINDS AT\tVALUE\tUSED")
	for _, l := range e.Limits {
		at := "never"
		if l.BindsAt != nil {
			at = units.Count(*l.BindsAt)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", l.Name, at, l.Value, l.Used)
	}
	tw.Flush()
	if e.Swap != nil {
		fmt.Fprintf(w, "\nSwap: %s.\n", e.Swap.Verdict)
	}
	if e.Rate != nil && len(e.Rate.ConnectByDecile) > 0 {
		fmt.Fprintf(w, "\nRate: %s.\n", rateText(e.Rate))
	}
	if len(e.Myths) > 0 {
		fmt.Fprintln(w, "\nMyths, against this run:")
		for _, m := range e.Myths {
			fmt.Fprintf(w, "  \"%s\": %s.\n", m.Claim, m.Measured)
		}
	}
}

func signedBytes(b int64) string {
	if b < 0 {
		return "-" + units.Bytes(uint64(-b))
	}
	return units.Bytes(uint64(b))
}
