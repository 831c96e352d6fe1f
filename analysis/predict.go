package analysis

import (
	"fmt"

	"github.com/c10mprobe/c10mprobe/internal/units"
)

// Machine is the machine to predict for.
type Machine struct {
	Mem      uint64 `json:"mem"`
	Swap     uint64 `json:"swap"`
	Baseline uint64 `json:"baseline"` // memory the system and other programs use at idle
	Reserve  uint64 `json:"reserve"`  // what the run would keep free
}

// Costs are per-connection costs, both ends.
type Costs struct {
	Kernel float64 `json:"kernel"` // unswappable: slab, page tables
	User   float64 `json:"user"`   // swappable
	// UserUnknown says there was no run to measure user space from.
	UserUnknown bool   `json:"user_unknown,omitempty"`
	Source      string `json:"source"` // where they come from
	// MeasuredOver is how many connections the source run held; 0 when
	// the costs were not measured.
	MeasuredOver uint64 `json:"measured_over"`
	Lines        []LedgerLine
}

// CostsOf takes per-connection costs from an explanation.
func CostsOf(e Explanation, source string) Costs {
	c := Costs{Kernel: e.KernelPerConnection, User: e.UserPerConnection, Source: source, MeasuredOver: e.Connections}
	for _, l := range e.Ledger {
		if l.Kind != "unexplained" && l.BytesPerConnection != 0 {
			c.Lines = append(c.Lines, l)
		}
	}
	return c
}

// Predict says how many connections a machine holds and what gives first.
// Kernel memory cannot be swapped; user pages can, so with swap the machine
// first swaps the programs out (the article's mouse lag) and then runs out
// of RAM for slab.
func Predict(m Machine, c Costs) Explanation {
	var e Explanation
	avail := float64(m.Mem) - float64(m.Baseline) - float64(m.Reserve)
	per := c.Kernel + c.User
	if avail <= 0 || per <= 0 {
		e.Verdict = fmt.Sprintf("nothing fits: %s of memory less %s in use and a %s reserve leaves none", units.Bytes(m.Mem), units.Bytes(m.Baseline), units.Bytes(m.Reserve))
		return e
	}
	ram := uint64(avail / per) // everything resident
	n := ram
	e.BindingLimit = "memory"
	if m.Swap > 0 && c.User > 0 {
		slabOnly := uint64(avail / c.Kernel)                // user pages all swapped out
		withSwap := uint64((avail + float64(m.Swap)) / per) // swap full too
		n = min(slabOnly, withSwap)
		e.Verdict = fmt.Sprintf("%s connections fit in RAM; past them user pages go to swap (the mouse lag), while the %.1f KiB per connection of kernel slab cannot; RAM is full of slab at ≈ %s connections",
			units.Approx(ram), c.Kernel/1024, units.Approx(n))
	} else {
		user := fmt.Sprintf("%.0f B of user space", c.User)
		if c.UserUnknown {
			user = "user space unknown (no run measured it: pass --from RUNDIR)"
		}
		e.Verdict = fmt.Sprintf("memory binds at ≈ %s connections: %.1f KiB of unswappable kernel memory and %s each, in %s of memory less %s in use and a %s reserve",
			units.Approx(n), c.Kernel/1024, user, units.Bytes(m.Mem), units.Bytes(m.Baseline), units.Bytes(m.Reserve))
	}
	if c.MeasuredOver > 0 && c.MeasuredOver < minCostConnections {
		e.Verdict += fmt.Sprintf(" — but the costs come from only %s connections, where fixed costs swamp the per-connection ones: measure with --conns %s or more",
			units.Count(c.MeasuredOver), units.Count(minCostConnections))
	}
	e.Connections = n
	e.KernelPerConnection, e.UserPerConnection = c.Kernel, c.User
	for _, l := range c.Lines {
		l.BytesTotal = int64(l.BytesPerConnection * float64(n))
		e.Ledger = append(e.Ledger, l)
		e.GrowthBytes += l.BytesTotal
	}
	e.Limits = []LimitLine{{
		Name: "memory", BindsAt: ptr(n),
		Value:  fmt.Sprintf("%s RAM + %s swap", units.Bytes(m.Mem), units.Bytes(m.Swap)),
		Used:   fmt.Sprintf("%s in use at idle, %s reserve", units.Bytes(m.Baseline), units.Bytes(m.Reserve)),
		Detail: "per-connection costs from " + c.Source,
	}}
	return e
}
