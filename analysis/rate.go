package analysis

import (
	"fmt"
	"strings"

	"github.com/c10mprobe/c10mprobe/internal/units"
)

// Rate is how fast the run connected as it filled, and what the kernel
// walked for it: the explanation's rate section.
type Rate struct {
	// ConnectByDecile[i] is the connect rate while the connections held went
	// from i/10 to (i+1)/10 of the peak, from the time series.
	ConnectByDecile []float64 `json:"connect_per_second_by_decile"`
	// EhashEntries are the established hash's buckets; every packet's
	// lookup walks a chain of EhashChainMean sockets on average at the peak
	// (both ends of every connection are in it).
	EhashEntries   uint64  `json:"ehash_entries"`
	EhashChainMean float64 `json:"ehash_chain_mean"`
}

// rateOf is the rate section of a run, or nil without a time series.
func rateOf(r Run) *Rate {
	if len(r.Series) < 2 || r.Connections < 10 {
		return nil
	}
	rt := &Rate{EhashEntries: r.EhashEntries}
	if r.EhashEntries > 0 {
		rt.EhashChainMean = float64(2*r.Connections) / float64(r.EhashEntries)
	}
	// When the count crossed each tenth, linearly between samples.
	crossed := func(target float64) (float64, bool) {
		for i := 1; i < len(r.Series); i++ {
			a, b := r.Series[i-1], r.Series[i]
			if float64(b.Established) >= target && float64(a.Established) < target {
				f := (target - float64(a.Established)) / float64(b.Established-a.Established)
				return a.Seconds + f*(b.Seconds-a.Seconds), true
			}
		}
		return 0, false
	}
	n := float64(r.Connections)
	start, ok := crossed(1) // the first connection
	if !ok {
		return rt
	}
	for d := 1; d <= 10; d++ {
		end, ok := crossed(n * float64(d) / 10)
		if !ok || end <= start {
			break
		}
		rt.ConnectByDecile = append(rt.ConnectByDecile, n/10/(end-start))
		start = end
	}
	return rt
}

// rateText is the rate section for a terminal.
func rateText(rt *Rate) string {
	var parts []string
	for _, v := range rt.ConnectByDecile {
		parts = append(parts, units.Approx(uint64(v)))
	}
	s := fmt.Sprintf("connects a second, by tenth of the connections held: %s", strings.Join(parts, ", "))
	if rt.EhashEntries > 0 {
		s += fmt.Sprintf("; the established hash has %s buckets, so at the peak each packet's lookup walks chains of %.1f sockets on average (thash_entries= at boot sizes it)",
			units.Count(rt.EhashEntries), rt.EhashChainMean)
	}
	return s
}
