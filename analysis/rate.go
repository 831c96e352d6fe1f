package analysis

import (
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/c10mprobe/c10mprobe/internal/phase"
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
	// Netns: the hash was the run's own namespace's (--netns), not the host's.
	Netns bool `json:"netns,omitempty"`
	// PageReporting: the guest gives freed memory back to its host;
	// PageReportedKiB how much since boot (−1: not counted).
	PageReporting   bool  `json:"page_reporting,omitempty"`
	PageReportedKiB int64 `json:"page_reported_kib,omitempty"`
	// CPUShare is, for each kernel function watched (rateFuncs) and each
	// phase's top self-time functions, the share of the phase's CPU samples
	// with it on the stack: function → phase → share.
	CPUShare map[string]map[string]float64 `json:"cpu_share,omitempty"`
	// PhaseSamples are the run's CPU samples in each phase (99 Hz a CPU).
	PhaseSamples map[string]uint64 `json:"phase_samples,omitempty"`
	// TopSelf are each phase's functions by self time, most first.
	TopSelf map[string][]FuncShare `json:"top_self,omitempty"`
	// Causes are what slowed the connects, named with their numbers and
	// what would change each.
	Causes []RateCause `json:"causes,omitempty"`
}

// FuncShare is a function's share of a phase's CPU samples.
type FuncShare struct {
	Func  string  `json:"func"`
	Share float64 `json:"share"`
}

// RateCause is a named reason for a phase's time.
type RateCause struct {
	Kind   string  `json:"kind"` // port_scan, slab_pages, ehash_chains, reclaim_holds
	Phase  string  `json:"phase"`
	Func   string  `json:"func"`
	Share  float64 `json:"share"` // of the phase's CPU samples
	Detail string  `json:"detail"`
	Change string  `json:"change"` // what would change it
}

// rateFuncs are the kernel functions whose share the rate section reports in
// every phase, and what each stands for.
var rateFuncs = []struct{ fn, what string }{
	{"__inet_hash_connect", "connect's source-port choice"},
	{"__inet_check_established", "each candidate 4-tuple checked against the established hash"},
	{"inet_csk_get_port", "bind() of a chosen port"},
	{"allocate_slab", "new slab pages"},
	{"__inet_lookup_established", "established-hash lookups, one a packet"},
	{"tcp_sendmsg_locked", "sending"},
	{"tcp_recvmsg", "receiving"},
	{"do_epoll_wait", "epoll_wait"},
	{"__fput", "closing files"},
	{"tcp_v4_send_reset", "sending RSTs"},
	{"rcu_core", "RCU callbacks (freeing inodes, dentries, files)"},
}

// ratePhases are the phases of a run whose CPU the rate section reports,
// in their order.
var ratePhases = []string{string(phase.Connect), string(phase.Exchange), string(phase.Hold), string(phase.Close)}

// causeShare is a share of a phase's CPU above which a cause is named.
const causeShare = 0.10

// cpuShares fills the CPU part of the rate section from the run's CPU stacks.
func (rt *Rate) cpuShares(stacks []Stack) {
	if len(stacks) == 0 {
		return
	}
	total := map[string]uint64{}
	with := map[string]map[string]uint64{} // function → phase → samples with it on the stack
	self := map[string]map[string]uint64{} // phase → function → samples with it innermost
	for _, s := range stacks {
		ph := string(s.Phase)
		if ph == "" {
			ph = "run"
		}
		total[ph] += s.Weight
		seen := map[string]bool{}
		for _, f := range s.Frames {
			if seen[f] {
				continue
			}
			seen[f] = true
			if with[f] == nil {
				with[f] = map[string]uint64{}
			}
			with[f][ph] += s.Weight
		}
		if len(s.Frames) > 0 {
			if self[ph] == nil {
				self[ph] = map[string]uint64{}
			}
			self[ph][s.Frames[0]] += s.Weight
		}
	}
	rt.PhaseSamples = total
	rt.CPUShare = map[string]map[string]float64{}
	add := func(fn string) {
		for ph, n := range with[fn] {
			if rt.CPUShare[fn] == nil {
				rt.CPUShare[fn] = map[string]float64{}
			}
			rt.CPUShare[fn][ph] = float64(n) / float64(total[ph])
		}
	}
	for _, f := range rateFuncs {
		add(f.fn)
	}
	rt.TopSelf = map[string][]FuncShare{}
	for ph, fns := range self {
		var top []FuncShare
		for fn, n := range fns {
			top = append(top, FuncShare{fn, float64(n) / float64(total[ph])})
		}
		sort.Slice(top, func(i, j int) bool {
			if top[i].Share != top[j].Share {
				return top[i].Share > top[j].Share
			}
			return top[i].Func < top[j].Func
		})
		rt.TopSelf[ph] = top[:min(5, len(top))]
		for _, t := range rt.TopSelf[ph] {
			add(t.Func)
		}
	}
	rt.causes()
}

// share is fn's share of phase ph's CPU samples.
func (rt *Rate) share(fn, ph string) float64 { return rt.CPUShare[fn][ph] }

// causes names what took a tenth or more of the connect phase's CPU.
func (rt *Rate) causes() {
	const ph = string(phase.Connect)
	if s := rt.share("__inet_hash_connect", ph); s >= causeShare {
		check := rt.share("__inet_check_established", ph)
		rt.Causes = append(rt.Causes, RateCause{Kind: "port_scan", Phase: ph, Func: "__inet_hash_connect", Share: s,
			Detail: fmt.Sprintf("the kernel's search for a free source port at connect took %s of the connect phase's CPU (%s in __inet_check_established, one call per port tried): with the port left to the kernel (IP_BIND_ADDRESS_NO_PORT) it tries ports from a hashed offset until one is free, and the fuller a source address, the more it tries",
				pct(s), pct(check)),
			Change: "more source addresses (a lower fill) or --port-choice runner (one 4-tuple checked a connect)"})
	}
	if s := rt.share("allocate_slab", ph); s >= causeShare {
		c := RateCause{Kind: "slab_pages", Phase: ph, Func: "allocate_slab", Share: s,
			Detail: fmt.Sprintf("new slab pages for the sockets' objects took %s of the connect phase's CPU (inode constructors included)", pct(s)),
			Change: "nothing the run can choose: it is the memory itself"}
		if rt.PageReporting {
			// A new slab's freelist is written into every object: the
			// page's first touch.
			since := "its virtio balloon offers free page reporting"
			if rt.PageReportedKiB >= 0 {
				since = units.Bytes(uint64(rt.PageReportedKiB)<<10) + " since boot"
			}
			c.Detail += fmt.Sprintf("; this guest gives freed memory back to its hypervisor (free page reporting: %s), and a page it gave back faults to the host at its first touch (make bench: BenchmarkFirstTouch)", since)
			c.Change += "; on a VM, a host that backs guest memory up front"
		}
		rt.Causes = append(rt.Causes, c)
	}
	if s := rt.share("__inet_lookup_established", ph); s >= causeShare || rt.EhashChainMean >= 4 {
		rt.Causes = append(rt.Causes, RateCause{Kind: "ehash_chains", Phase: ph, Func: "__inet_lookup_established", Share: s,
			Detail: fmt.Sprintf("every packet's established-hash lookup took %s of the connect phase's CPU; at the peak its chains held ≈ %.1f of the run's sockets on average (%s buckets; an estimate, not measured)",
				pct(s), rt.EhashChainMean, units.Count(rt.EhashEntries)),
			Change: rt.ehashChange()})
	}
}

// reclaimHolds names a smaller machine's holds as a cause: the opening
// waited for reclaim, not for the CPU (runner/host.Machine.Pace).
func (rt *Rate) reclaimHolds(r Run) {
	m := r.Machine
	if m == nil || m.OpeningHolds == 0 {
		return
	}
	first, last := math.Inf(1), 0.0
	for _, s := range r.Series {
		if s.Phase == phase.Connect {
			first, last = min(first, s.Seconds), s.Seconds
		}
	}
	share := 0.0
	if last > first {
		share = min(1, m.OpeningHeldSeconds/(last-first))
	}
	rt.Causes = append(rt.Causes, RateCause{Kind: "reclaim_holds", Phase: string(phase.Connect), Share: share,
		Detail: fmt.Sprintf("the opening held %d times, %.1f s in all (%s of the connect phase), while every task stalled on memory (PSI full; the pacing's thresholds are runner/host's): reclaim writing other programs' pages to swap for the sockets' slab",
			m.OpeningHolds, m.OpeningHeldSeconds, pct(share)),
		Change: "more RAM, or a faster swap device; --rate spreads the same work out"})
}

// ehashWhose says whose established hash the run's sockets were in.
func (rt *Rate) ehashWhose() string {
	if rt.Netns {
		return "the run's own network namespace's, sized for it by --netns"
	}
	return "the host's, sized at boot: thash_entries="
}

// ehashChange is what would shorten the established hash's chains.
func (rt *Rate) ehashChange() string {
	if rt.Netns {
		return "a larger --netns hash is already one bucket a socket; nothing but fewer sockets"
	}
	return "--netns (the run in a namespace with its own hash, net.ipv4.tcp_child_ehash_entries), or thash_entries= at boot; a server in the host's namespace always sees the host's"
}

func pct(f float64) string { return fmt.Sprintf("%.0f %%", 100*f) }

// rateOf is the rate section of a run, or nil without a time series.
func rateOf(r Run) *Rate {
	if len(r.Series) < 2 || r.Connections < 10 {
		return nil
	}
	rt := &Rate{EhashEntries: r.EhashEntries, Netns: r.Netns, PageReporting: r.PageReporting, PageReportedKiB: r.PageReportedKiB}
	defer rt.reclaimHolds(r)
	if r.EhashEntries > 0 {
		// This host's ends of the run's connections over the buckets: an
		// estimate that assumes even hashing and leaves other sockets out.
		rt.EhashChainMean = float64(r.ends()*r.Connections) / float64(r.EhashEntries)
	}
	defer rt.cpuShares(r.CPU)
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
		s += fmt.Sprintf("; the established hash has %s buckets (%s), so at the peak each packet's lookup walks chains of ≈ %.1f of the run's sockets on average (an estimate: its sockets over the buckets, evenly hashed; not measured)",
			units.Count(rt.EhashEntries), rt.ehashWhose(), rt.EhashChainMean)
	}
	for _, ph := range ratePhases {
		top := rt.TopSelf[ph]
		if len(top) == 0 {
			continue
		}
		var fs []string
		for _, t := range top[:min(3, len(top))] {
			fs = append(fs, fmt.Sprintf("%s %s", t.Func, pct(t.Share)))
		}
		samples := units.Count(rt.PhaseSamples[ph]) + " CPU samples"
		if rt.PhaseSamples[ph] == 1 {
			samples = "1 CPU sample"
		}
		s += fmt.Sprintf(".\n  %s (%s): most time in %s", ph, samples, strings.Join(fs, ", "))
		if ph == string(phase.Connect) {
			var ws []string
			for _, fn := range []string{"__inet_hash_connect", "allocate_slab", "__inet_lookup_established"} {
				ws = append(ws, fmt.Sprintf("%s %s", fn, pct(rt.share(fn, ph))))
			}
			s += "; on the stack: " + strings.Join(ws, ", ")
		}
	}
	for _, c := range rt.Causes {
		s += fmt.Sprintf(".\n  Cause (%s): %s; would change it: %s", c.Kind, c.Detail, c.Change)
	}
	return s
}
