package analysis

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"

	"github.com/c10mprobe/c10mprobe/internal/limit"
	"github.com/c10mprobe/c10mprobe/internal/units"
)

// Explanation is why a run held what it held, and what binds first.
type Explanation struct {
	Connections         uint64       `json:"connections"`
	Ledger              []LedgerLine `json:"ledger"`
	GrowthBytes         int64        `json:"growth_bytes"`
	UnexplainedFraction float64      `json:"unexplained_fraction"`
	KernelPerConnection float64      `json:"kernel_bytes_per_connection"` // unswappable
	UserPerConnection   float64      `json:"user_bytes_per_connection"`
	// BuffersPerConnection is queued socket data outside slab: unswappable
	// kernel memory too, and what tcp_mem limits.
	BuffersPerConnection float64 `json:"buffer_bytes_per_connection"`
	// TCPMemPerConnection is what each connection was charged against
	// tcp_mem (/proc/net/sockstat's pages).
	TCPMemPerConnection float64     `json:"tcp_mem_bytes_per_connection"`
	Limits              []LimitLine `json:"limits"`
	BindingLimit        string      `json:"binding_limit"`
	Verdict             string      `json:"verdict"`
	Myths               []Myth      `json:"myths,omitempty"`
	Rate                *Rate       `json:"rate,omitempty"` // how fast it connected as it filled
	Swap                *SwapLeg    `json:"swap,omitempty"` // a smaller machine going into swap
}

// LedgerLine is one kind of memory the connections use.
type LedgerLine struct {
	Kind               string  `json:"kind"` // slab, pages, user, buffers, unexplained
	Name               string  `json:"name"`
	BytesPerConnection float64 `json:"bytes_per_connection"`
	BytesTotal         int64   `json:"bytes_total"`
	// Per socket, each end: measured by end where the source tells ends
	// apart (sock_diag, PSS by role), else half of the connection's cost:
	// each end holds one sock, inode, dentry, file and epoll item.
	BytesPerClientSocket float64 `json:"bytes_per_client_socket"`
	BytesPerServerSocket float64 `json:"bytes_per_server_socket"`
	// SplitMeasured says the per-socket figures were measured by end; when
	// false they are half the connection's each, an assumption.
	SplitMeasured bool   `json:"split_measured"`
	Source        string `json:"source"`         // where the number comes from
	Note          string `json:"note,omitempty"` // the probes' attribution, merges
}

// LimitLine is one limit, how much of it the run used and when it binds.
type LimitLine struct {
	kind  limit.Kind // the run's limit kind this row stands for
	Name  string     `json:"name"`
	Value string     `json:"value"`
	Used  string     `json:"used"`
	// BindsAt is the connection count at which it binds; nil when it cannot
	// bind (the runner shards around it) or when the run gave no cost to scale.
	BindsAt *uint64 `json:"binds_at_connections"`
	Detail  string  `json:"detail"`
}

// Myth is a common claim beside what the run measured.
type Myth struct {
	Claim    string `json:"claim"`
	Measured string `json:"measured"`
}

// minLine is the smallest slab cache listed on its own, per connection.
const minLine = 8.0

// Explain builds the ledger and the limits table of a run.
func Explain(r Run) Explanation {
	e := Explanation{Connections: r.Connections}
	e.GrowthBytes = used(r.Peak) - used(r.Idle)
	l := &ledger{e: &e, n: float64(max(1, r.Connections))}
	skbSlab := l.slab(r)
	l.pages(r)
	l.user(r)
	// Queued skbs' truesize counts their heads too, which are slab objects
	// listed above; what remains is data in page fragments.
	l.add("buffers", "queued socket data outside slab", "sock_diag rmem_alloc + wmem_queued − the skbuff caches above",
		fmt.Sprintf("queued skbs: %s in all", units.Bytes(r.SocketBuffers)), max(0, int64(r.SocketBuffers)-int64(skbSlab)))
	l.bySide(float64(r.ClientBuffers), float64(r.ServerBuffers))
	l.unexplained()
	e.totals(r)
	e.Limits = limits(r, e)
	e.BindingLimit, e.Verdict = verdict(r, e)
	if rl := r.RunLimit; rl != nil && rl.Kind == limit.Interrupted {
		// A signal ended it: say so before where the run would have gone.
		e.Verdict = fmt.Sprintf("the run was %s at %s of %s connections, %s of them verified; had it gone on, %s",
			rl.Detail, units.Count(r.Connections), units.Count(uint64(r.Requested)), units.Count(r.Verified), e.Verdict)
	}
	if r.Mode == "serve" && r.Unaccepted > 0 {
		e.Verdict = fmt.Sprintf("the dialers brought more than --conns: serve accepted %s as asked, and %s more connections waited in its accept queue, never accepted (their dialers see them reset when serve closes its listener); %s",
			units.Count(r.Connections), units.Count(r.Unaccepted), e.Verdict)
	}
	if len(r.GoneInHold) > 0 {
		var gone []string
		var closed uint64
		for _, d := range r.GoneInHold {
			gone = append(gone, fmt.Sprintf("%s closed %s of its %s", d.Addr, units.Count(d.Closed), units.Count(d.Of)))
			closed += d.Closed
		}
		e.Verdict = fmt.Sprintf("during the hold dialers went away: %s; serve held %s of %s at its end; %s",
			strings.Join(gone, ", "), units.Count(r.Connections-min(r.Connections, closed)), units.Count(r.Connections), e.Verdict)
	}
	said := ""
	if r.Verified < uint64(r.Requested) {
		said = serverSaid(r)
	}
	if s := shortfall(r); s != "" {
		// What the clients saw comes first, then what the server said of
		// it; a host limit is only where the run would have gone.
		if said != "" {
			s += "; " + said
		}
		e.Verdict = s + "; no limit of this host was reached — had the connections been held, " + e.Verdict
	} else if said != "" {
		e.Verdict += "; " + said
	}
	e.Myths = myths(r, e)
	e.Rate = rateOf(r)
	e.Verdict = qualify(r, &e)
	return e
}

// ledger is the explanation's ledger as it is written, line by line.
type ledger struct {
	e *Explanation
	n float64 // connections
}

// add writes a line, its bytes split evenly between the two ends.
func (l *ledger) add(kind, name, source, note string, bytes int64) {
	l.e.Ledger = append(l.e.Ledger, LedgerLine{Kind: kind, Name: name, BytesTotal: bytes,
		BytesPerConnection: float64(bytes) / l.n, Source: source, Note: note,
		BytesPerClientSocket: float64(bytes) / l.n / 2, BytesPerServerSocket: float64(bytes) / l.n / 2})
}

// bySide sets the last line's per-socket figures from a measured split.
func (l *ledger) bySide(client, server float64) {
	last := &l.e.Ledger[len(l.e.Ledger)-1]
	if client+server > 0 {
		share := client / (client + server)
		last.BytesPerClientSocket = float64(last.BytesTotal) * share / l.n
		last.BytesPerServerSocket = float64(last.BytesTotal) * (1 - share) / l.n
		last.SplitMeasured = true
	}
}

// slab writes the slab, cache by cache, from /proc/slabinfo: what the
// kernel holds. The probes say who allocated it; they are the cross-check,
// not the measure. It returns the bytes of those lines that queued skbs'
// truesize counts too.
func (l *ledger) slab(r Run) (skbSlab float64) {
	probed := map[string]Cache{}
	for _, c := range r.Caches {
		probed[c.Name] = c
	}
	type grown struct {
		name  string
		bytes int64
	}
	var caches []grown
	var slabLines, small int64
	smallCount := 0
	for name, p := range r.Peak.Slabinfo {
		i := r.Idle.Slabinfo[name]
		b := (int64(p.Active) - int64(i.Active)) * int64(p.ObjSize)
		if b == 0 {
			continue
		}
		if math.Abs(float64(b))/l.n < minLine {
			small += b
			smallCount++
			continue
		}
		caches = append(caches, grown{name, b})
	}
	sort.Slice(caches, func(i, j int) bool { return caches[i].bytes > caches[j].bytes })
	for _, c := range caches {
		l.add("slab", SlabLabel(c.name, probed[c.name].Covers), "/proc/slabinfo active objects × objsize", probeNote(probed[c.name], c.bytes, r), c.bytes)
		slabLines += c.bytes
		skbSlab += skbShare(c.name, probed[c.name]) * float64(c.bytes)
	}
	if smallCount > 0 {
		l.add("slab", fmt.Sprintf("%d other caches", smallCount), "/proc/slabinfo", "", small)
		slabLines += small
	}
	if len(r.Peak.Slabinfo) > 0 {
		// Meminfo's Slab counts whole slab pages; the objects above do not
		// fill them.
		l.add("slab", "free space in slab pages", "/proc/meminfo Slab − the objects above", "",
			int64(r.Peak.Slab)-int64(r.Idle.Slab)-slabLines)
	} else {
		l.add("slab", "all caches", "/proc/meminfo Slab (no /proc/slabinfo: not root)", "", int64(r.Peak.Slab)-int64(r.Idle.Slab))
	}
	return skbSlab
}

// pages writes the kernel's page-sized allocations.
func (l *ledger) pages(r Run) {
	l.add("pages", "page tables", "/proc/meminfo PageTables", "", int64(r.Peak.PageTables)-int64(r.Idle.PageTables))
	l.add("pages", "kernel stacks", "/proc/meminfo KernelStack", "", int64(r.Peak.KernelStack)-int64(r.Idle.KernelStack))
	l.add("pages", "per-CPU allocations", "/proc/meminfo Percpu", "", int64(r.Peak.Percpu)-int64(r.Idle.Percpu))
}

// user writes user space: a brought server's own, or what swap took, or
// the anonymous pages of all processes.
func (l *ledger) user(r Run) {
	pss := fmt.Sprintf("the runner's PSS at the peak, runtime baselines included: %s", units.Bytes(r.RunnerPss))
	if server, rest, ok := broughtUser(r); ok {
		l.add("user", "the server's processes", "its smaps_rollup Pss_Anon (heap, thread stacks)",
			fmt.Sprintf("%.2f threads a connection", r.Brought.perHeld(r.Brought.ThreadsIdle, r.Brought.ThreadsPeak)), server)
		l.bySide(0, 1)
		l.add("user", "anonymous memory, all other processes", "/proc/meminfo AnonPages − the server's", pss, rest)
		l.bySide(1, 0)
	} else if swapped := swapGrowth(r); swapped > 0 {
		// Pages swapped out leave AnonPages but are still the programs':
		// the anonymous line counts them, and a line of their own takes
		// them out of RAM again.
		l.add("user", "anonymous memory, all processes, in RAM or swap", "/proc/meminfo AnonPages + swap used", pss,
			int64(r.Peak.AnonPages)-int64(r.Idle.AnonPages)+swapped)
		l.add("swap", "moved out to swap", "/proc/meminfo SwapTotal − SwapFree growth", "RAM freed for socket slab", -swapped)
	} else {
		l.add("user", "anonymous memory, all processes", "/proc/meminfo AnonPages", pss,
			int64(r.Peak.AnonPages)-int64(r.Idle.AnonPages))
		l.bySide(float64(r.ClientPss), float64(r.ServerPss))
	}
}

// unexplained writes what the lines do not account for of the growth.
func (l *ledger) unexplained() {
	e := l.e
	var explained int64
	for _, line := range e.Ledger {
		explained += line.BytesTotal
	}
	l.add("unexplained", "growth not accounted above", "(MemTotal − MemFree − per-CPU free pages − Buffers − Cached) growth − the lines above", "", e.GrowthBytes-explained)
	if e.GrowthBytes != 0 {
		e.UnexplainedFraction = float64(e.GrowthBytes-explained) / float64(e.GrowthBytes)
	}
}

// totals sums the ledger's kinds per connection.
func (e *Explanation) totals(r Run) {
	for _, l := range e.Ledger {
		switch l.Kind {
		case "slab", "pages":
			e.KernelPerConnection += l.BytesPerConnection
		case "user":
			e.UserPerConnection += l.BytesPerConnection
		case "buffers":
			e.BuffersPerConnection += l.BytesPerConnection
		}
	}
	e.TCPMemPerConnection = float64(max(0, r.Peak.TCPMemPages-r.Idle.TCPMemPages)*int64(max(1, r.Limits.PageSize))) / float64(max(1, r.Connections))
}

// qualify is the verdict with what the reader must know of how the run
// was made: a smaller machine's swap, a namespace, a census that disagrees.
func qualify(r Run, e *Explanation) string {
	v := e.Verdict
	if len(r.Deaths) > 0 {
		// What happened comes before any limit: a death ends the run.
		v = deathSentence(r) + "; " + v
	}
	if e.Swap = swapLeg(r, e.KernelPerConnection+e.UserPerConnection); e.Swap != nil {
		// On a smaller machine the question is the article's: where does
		// swapping start, and where does it end.
		v = fmt.Sprintf("on a %s machine, %s; each connection costs %.1f KiB of unswappable kernel memory",
			units.Bytes(r.Machine.MemBytes), e.Swap.Verdict, e.KernelPerConnection/1024)
	}
	if r.Netns {
		v += fmt.Sprintf("; both ends ran in a private network namespace (--netns), with its own established hash of %s buckets", units.Count(r.EhashEntries))
	}
	if len(r.KmemFlags) > 0 {
		// The census is counted on a tenth of the run and scaled: where the
		// peak's /proc/slabinfo disagrees, the reader must know.
		v += fmt.Sprintf("; the slab census of the first %s connections disagrees with /proc/slabinfo at the peak by more than 5 %%: %s (the ledger's bytes are slabinfo's; README, \"A census of the slab\")",
			units.Count(r.CensusConnections), strings.Join(r.KmemFlags, "; "))
	}
	return v
}

// used is memory in use, page cache aside: MemTotal − free − Buffers −
// Cached, where free counts the pages on per-CPU lists that MemFree omits.
func used(m Memory) int64 {
	return int64(m.MemTotal) - int64(m.MemFree) - int64(m.PCPFree) - int64(m.Buffers) - int64(m.Cached)
}

func probeNote(c Cache, slabBytes int64, r Run) string {
	if c.Name == "" {
		return ""
	}
	var parts []string
	probeBytes := c.Live * int64(c.ObjectSize)
	if n := r.CensusConnections; n > 0 && r.Connections > 0 {
		// Counted exactly over the census, scaled to the peak.
		parts = append(parts, fmt.Sprintf("census of the first %s connections: %.0f B a connection", units.Count(n), float64(probeBytes)/float64(n)))
		probeBytes = int64(float64(probeBytes) * float64(r.Connections) / float64(n))
	} else {
		parts = append(parts, fmt.Sprintf("probes: %s live", units.Bytes(uint64(max(0, probeBytes)))))
	}
	if slabBytes > 0 && probeBytes < slabBytes*9/10 {
		// Who made these is unknown: the probes saw no allocation of them.
		parts = append(parts, fmt.Sprintf("%s with no allocation event (see README)", units.Bytes(uint64(slabBytes-probeBytes))))
	} else if total := c.RunAllocs + c.OtherAllocs; total > 0 {
		s := fmt.Sprintf("%.0f %% of allocations by the run", 100*float64(c.RunAllocs)/float64(total))
		if c.RunSoftirqAllocs > 0 && c.RunAllocs > 0 {
			// A softirq runs on whatever task the CPU had: on loopback, the
			// sender's. Said apart, since the run did not ask for these.
			s += fmt.Sprintf(" (%.0f %% of those in softirq on its time)", 100*float64(c.RunSoftirqAllocs)/float64(c.RunAllocs))
		}
		parts = append(parts, s)
	}
	if o := others(c.Merged, c.Name); len(o) > 0 {
		parts = append(parts, "shared with "+strings.Join(o, ", "))
	}
	return strings.Join(parts, "; ")
}

// SlabLabel names a slab cache by what the run allocated from it, covers:
// SLUB merges caches of one size, and /proc/slabinfo shows the group under
// one of its names (skbuff_fclone_cache's objects appear as pool_workqueue
// here).
func SlabLabel(name string, covers []string) string {
	if len(covers) == 0 || slices.Contains(covers, name) {
		return name
	}
	return strings.Join(covers, ", ") + " (as " + name + ")"
}

// skbShare is how much of a slab cache's bytes queued skbs' truesize counts
// (SKB_TRUESIZE: the data, one struct sk_buff and its shared info): all of
// a head cache, and half of skbuff_fclone_cache, whose objects are a pair
// of sk_buffs (the clone loopback hands the receiver) of which truesize
// counts one. Taking all of the fclones away from truesize left a 16 KiB
// unread payload with tcp_rmem 4096 7.7 % unexplained.
func skbShare(name string, c Cache) float64 {
	names := append([]string{name}, c.Covers...)
	if len(c.Covers) == 0 {
		names = append(names, c.Merged...) // recorded before covers were
	}
	share := 0.0
	for _, n := range names {
		switch {
		case n == "skbuff_fclone_cache":
			return 0.5
		case strings.HasPrefix(n, "skbuff_"):
			share = 1
		}
	}
	return share
}

func others(all []string, self string) []string {
	var out []string
	for _, a := range all {
		if a != self {
			out = append(out, a)
		}
	}
	return out
}

// swapGrowth is swap in use at the peak less at idle.
func swapGrowth(r Run) int64 {
	used := func(m Memory) int64 { return int64(m.SwapTotal) - int64(m.SwapFree) }
	return used(r.Peak) - used(r.Idle)
}
