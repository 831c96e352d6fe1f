package analysis

import (
	"fmt"
	"strings"

	"github.com/c10mprobe/c10mprobe/internal/limit"
	"github.com/c10mprobe/c10mprobe/internal/memmodel"
	"github.com/c10mprobe/c10mprobe/internal/units"
)

// Machine is the machine to predict for.
type Machine struct {
	Mem      uint64 `json:"mem"`
	Swap     uint64 `json:"swap"`
	Baseline uint64 `json:"baseline"` // memory the system and other programs use at idle
	// BaselineSwappable is the part of Baseline that can go to swap: other
	// programs' anonymous pages (the article's desktop and JVM heap).
	BaselineSwappable uint64 `json:"baseline_swappable"`
	Reserve           uint64 `json:"reserve"` // what the run would keep free
	// Kernel sizes the machine's watermarks (memmodel.Watermarks).
	Kernel memmodel.Kernel `json:"kernel"`
}

// Costs are per-connection costs, both ends.
type Costs struct {
	Kernel  float64 `json:"kernel"`  // unswappable: slab, page tables
	Buffers float64 `json:"buffers"` // queued socket data: unswappable too
	User    float64 `json:"user"`    // swappable
	// UserUnknown says there was no run to measure user space from.
	UserUnknown bool `json:"user_unknown,omitempty"`
	// TCPMem is what a connection is charged against tcp_mem.
	TCPMem float64 `json:"tcp_mem"`
	Source string  `json:"source"` // where they come from
	// MeasuredOver is how many connections the source run held; 0 when
	// the costs were not measured.
	MeasuredOver uint64 `json:"measured_over"`
	Lines        []LedgerLine
}

// CostsOf takes per-connection costs from an explanation.
func CostsOf(e Explanation, source string) Costs {
	c := Costs{Kernel: e.KernelPerConnection, Buffers: e.BuffersPerConnection, User: e.UserPerConnection,
		TCPMem: e.TCPMemPerConnection, Source: source, MeasuredOver: e.Connections}
	for _, l := range e.Ledger {
		// What went to swap is the run's machine's, not a cost.
		if l.Kind != "unexplained" && l.Kind != "swap" && l.BytesPerConnection != 0 {
			c.Lines = append(c.Lines, l)
		}
	}
	return c
}

// tcpMemMax is net.ipv4.tcp_mem[2] as the kernel sizes it for a machine
// of mem bytes: tcp_init_mem() takes limit = nr_free_buffer_pages() / 16,
// tcp_mem[0] = limit / 4 × 3 and tcp_mem[2] = tcp_mem[0] × 2, so 3/32 of
// memory, as /proc/sys/net/ipv4/tcp_mem says on a machine of that size.
func tcpMemMax(mem uint64) uint64 { return mem / 32 * 3 }

// Predict says how many connections a machine holds and what gives first
// (memmodel, to the machine's own end). Kernel memory and queued buffers
// cannot be swapped; user pages can, so with swap the machine first swaps
// user pages out (its programs' and the connections': the article's mouse
// lag) and then runs out of RAM for the unswappable part.
func Predict(m Machine, c Costs) Explanation {
	var e Explanation
	pinned := c.Kernel + c.Buffers
	room := memmodel.ForMachine(m.Mem, m.Swap, m.Baseline+m.Reserve, m.BaselineSwappable, m.Kernel)
	p := memmodel.Project(room, memmodel.Cost{Pinned: pinned, User: c.User}, memmodel.MachineEnds, 0)
	if p.Stop == 0 {
		e.Verdict = fmt.Sprintf("nothing fits: %s of memory less %s in use, a %s reserve and the kernel's min watermark leaves none", units.Bytes(m.Mem), units.Bytes(m.Baseline), units.Bytes(m.Reserve))
		return e
	}
	n := p.Stop
	e.BindingLimit = "memory"
	user := fmt.Sprintf("%.0f B of user space", c.User)
	if c.UserUnknown {
		user = "user space unknown (no run measured it: pass --from RUNDIR)"
	}
	if m.Swap > 0 {
		why := "RAM is full of unswappable memory"
		if p.StopBy == limit.SwapFull {
			why = "swap is full and RAM with it"
		}
		e.Verdict = fmt.Sprintf("≈ %s connections fit in RAM; past them the kernel pushes user pages to swap (%s of other programs', and %s a connection: the mouse lag), while the %.1f KiB a connection of kernel memory and buffers cannot go; %s at ≈ %s connections",
			units.Approx(p.SwapStart), units.Bytes(m.BaselineSwappable), user, pinned/1024, why, units.Approx(n))
	} else {
		e.Verdict = fmt.Sprintf("memory binds at ≈ %s connections: %.1f KiB of unswappable kernel memory and buffers and %s each, in %s of memory less %s in use, a %s reserve and the kernel's min watermark",
			units.Approx(n), pinned/1024, user, units.Bytes(m.Mem), units.Bytes(m.Baseline), units.Bytes(m.Reserve))
	}
	if c.MeasuredOver > 0 && c.MeasuredOver < minCostConnections {
		e.Verdict += fmt.Sprintf(" — but the costs come from only %s connections, where fixed costs swamp the per-connection ones: measure with --conns %s or more",
			units.Count(c.MeasuredOver), units.Count(minCostConnections))
	}
	e.Connections = n
	e.KernelPerConnection, e.UserPerConnection, e.BuffersPerConnection, e.TCPMemPerConnection = c.Kernel, c.User, c.Buffers, c.TCPMem
	for _, l := range c.Lines {
		l.BytesTotal = int64(l.BytesPerConnection * float64(n))
		e.Ledger = append(e.Ledger, l)
		e.GrowthBytes += l.BytesTotal
	}
	e.Limits = []LimitLine{{
		Name: "memory", BindsAt: ptr(n),
		Value:  fmt.Sprintf("%s RAM + %s swap", units.Bytes(m.Mem), units.Bytes(m.Swap)),
		Used:   fmt.Sprintf("%s in use at idle (%s of it swappable), %s reserve", units.Bytes(m.Baseline), units.Bytes(m.BaselineSwappable), units.Bytes(m.Reserve)),
		Detail: "per-connection costs from " + c.Source,
	}}
	if c.TCPMem >= 1 {
		tm := tcpMemMax(m.Mem)
		at := uint64(float64(tm) / c.TCPMem)
		e.Limits = append(e.Limits, LimitLine{Name: "tcp_mem", BindsAt: ptr(at),
			Value:  fmt.Sprintf("%s (tcp_mem[2] as the kernel sizes it: 3/32 of memory)", units.Bytes(tm)),
			Used:   fmt.Sprintf("%.0f B per connection charged to it, as measured", c.TCPMem),
			Detail: "past it TCP refuses socket buffer memory except one in-order skb into an empty receive queue: connections still open, but their data crawls"})
		if at < n {
			e.Limits[0], e.Limits[1] = e.Limits[1], e.Limits[0]
			e.Verdict += fmt.Sprintf("; before that, at ≈ %s connections, the buffers they queue reach tcp_mem (%s here), which slows their data rather than stopping them", units.Approx(at), units.Bytes(tm))
		}
	}
	return e
}

// PredictionSources says which of a prediction's figures were measured,
// which given (given: predict's flags mem, swap, base and reserve, each
// true where the user gave it), and which modelled.
func PredictionSources(c Costs, given map[string]bool) []string {
	var out []string
	if c.MeasuredOver > 0 {
		out = append(out, fmt.Sprintf("measured: the per-connection costs, by %s over %s connections", c.Source, units.Count(c.MeasuredOver)))
	} else {
		out = append(out, "modelled: kernel bytes per connection, from slab object sizes ("+c.Source+")")
	}
	var names, defaulted []string
	for _, name := range []string{"mem", "swap", "base", "reserve"} {
		if given[name] {
			names = append(names, "--"+name)
		} else if name == "base" {
			defaulted = append(defaulted, "the baseline (what the source found in use at idle, its anonymous pages swappable)")
		}
	}
	out = append(out, "given: "+strings.Join(names, ", "))
	if len(defaulted) > 0 {
		out = append(out, "measured: "+strings.Join(defaulted, ", "))
	}
	return append(out, "modelled: the zones' watermarks and tcp_mem as the kernel sizes them for that memory (min_free_kbytes, watermark_scale_factor and THP as on this host; tcp_mem 3/32), and user pages going to swap before RAM runs out for what cannot")
}

// Ballast is a ballast of another size for PredictAgain: the run's
// (Had) and the one to predict with (Now).
type Ballast struct{ Had, Now uint64 }

// PredictAgain makes a --machine-mem run's last prediction again
// (memmodel, on the room, cost and ends the run recorded): on its own
// machine (mem 0) the number it printed; on another size the same
// programs and connections, with that size's watermarks; with b, the
// run's ballast of b.Had replaced by one of b.Now.
func PredictAgain(p memmodel.Prediction, mem, swap uint64, b *Ballast, source string) Explanation {
	held, on := "what "+source+" held besides its connections", p.On(mem, swap)
	if b != nil {
		on = p.OnReballasted(mem, swap, b.Had, b.Now)
		held = fmt.Sprintf("what %s held besides its connections, its ballast of %s as one of %s,", source, units.Bytes(b.Had), units.Bytes(b.Now))
	}
	ram, machine := p.Seen.RAM, fmt.Sprintf("its own machine (%s of RAM)", units.Bytes(p.Seen.RAM))
	if mem != 0 {
		ram, machine = mem, fmt.Sprintf("a machine of %s of RAM, with the watermarks its kernel gives that size,", units.Bytes(mem))
	}
	stop, swapStart := p.At+on.Stop, p.At+on.SwapStart
	e := Explanation{Connections: stop, BindingLimit: "memory"}
	e.Verdict = fmt.Sprintf("on %s and %s of swap, with %s at %s of them, at %s a connection: ",
		machine, units.Bytes(swap), held, units.Count(p.At), units.Bytes(uint64(p.Cost.Pinned+p.Cost.User)))
	if swap > 0 {
		e.Verdict += fmt.Sprintf("swapping begins near %s connections, and a run stops near %s (%s)", units.Count(swapStart), units.Count(stop), on.StopBy)
	} else {
		e.Verdict += fmt.Sprintf("without swap a run stops near %s connections (%s)", units.Count(stop), on.StopBy)
	}
	e.Limits = []LimitLine{{Name: "memory", BindsAt: ptr(stop), Value: fmt.Sprintf("%s RAM + %s swap", units.Bytes(ram), units.Bytes(swap)),
		Detail: "memmodel on the room the run recorded (summary.json machine.prediction)"}}
	return e
}
