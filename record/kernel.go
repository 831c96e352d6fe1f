package record

import (
	"sort"

	"github.com/c10mprobe/c10mprobe/analysis"
	"github.com/c10mprobe/c10mprobe/bpf"
	"github.com/c10mprobe/c10mprobe/internal/ksym"
	"github.com/c10mprobe/c10mprobe/runner"
)

// Kernel is summary.json's "kernel": what the probes measured between
// the idle sample (workers started, nothing opened) and the peak.
type Kernel struct {
	Backend          bpf.Backend            `json:"backend"`
	Attachments      []bpf.Attachment       `json:"attachments"`
	Caches           map[string]CacheReport `json:"caches"`
	TCPSendmsg       SendmsgReport          `json:"tcp_sendmsg"`
	SocketMemory     SocketMemory           `json:"socket_memory"`
	Pages            PagesReport            `json:"pages"`
	Pressure         PressureReport         `json:"pressure"`
	ConnectLatencyUs []uint64               `json:"connect_latency_log2_us"`
	StackSamples     uint64                 `json:"stack_samples"`
	StackCollisions  uint64                 `json:"stack_collisions"`
	StackSampleEvery uint32                 `json:"stack_sample_every"`
	// KmallocSites are the run's kmalloc() traffic by call site, heaviest
	// first (allocations, not live bytes: kfree does not say which cache).
	KmallocSites []KmallocSite `json:"kmalloc_sites"`
	// ProbeCost is the programs' CPU time to the peak, timed by the kernel
	// (--probe-cost).
	ProbeCost  *ProbeCost `json:"probe_cost,omitempty"`
	LostEvents uint64     `json:"lost_events"`
	Lost       bpf.Lost   `json:"lost"`
	Errors     []string   `json:"errors,omitempty"`
	// Kmem is how the slab hooks ran: with a census, Caches count to it.
	Kmem *KmemReport `json:"kmem,omitempty"`
}

type CacheReport struct {
	ObjectSize         uint64   `json:"object_size"`
	Allocs             uint64   `json:"allocs"`
	Frees              uint64   `json:"frees"`
	Live               int64    `json:"live"`
	Bytes              int64    `json:"bytes"`
	BytesPerConnection float64  `json:"bytes_per_connection"`
	RunAllocs          uint64   `json:"run_allocs"`         // by the run's processes
	RunSoftirqAllocs   uint64   `json:"run_softirq_allocs"` // of RunAllocs, in a softirq on a run process's time
	OtherAllocs        uint64   `json:"other_allocs"`       // by the rest of the machine
	SlabinfoDelta      int64    `json:"slabinfo_delta_objects"`
	Covers             []string `json:"covers"`           // the watched names this kmem_cache serves
	Merged             []string `json:"merged,omitempty"` // every cache SLUB merged into it
}

type KmallocSite struct {
	Function string `json:"function"`
	Calls    uint64 `json:"calls"`
	Bytes    uint64 `json:"bytes"`
}

// maxKmallocSites is how many call sites the summary lists.
const maxKmallocSites = 20

// SendmsgReport is what the tcp_sendmsg hook counted. Its bytes are the
// lengths the calls asked to send (the size argument, or what the message
// had left), not what the kernel took: a send into full buffers asks for
// all of it and takes part. The workers count what was taken
// (payload.sent).
type SendmsgReport struct {
	Calls         uint64 `json:"calls"`
	BytesAsked    uint64 `json:"bytes_asked"`
	RunCalls      uint64 `json:"run_calls"`
	RunBytesAsked uint64 `json:"run_bytes_asked"`
}

// SocketMemory is buffer memory per socket at the peak: as the probes last
// saw it (at each socket's last send), and as sock_diag reads it now.
type SocketMemory struct {
	P50      uint64                `json:"p50"`
	P99      uint64                `json:"p99"`
	Max      uint64                `json:"max"`
	Probe    analysis.Distribution `json:"probe"`
	SockDiag analysis.Distribution `json:"sock_diag"`
}

type PagesReport struct {
	AllocsByOrder    []uint64 `json:"allocs_by_order"`
	FreesByOrder     []uint64 `json:"frees_by_order"`
	RunAllocsByOrder []uint64 `json:"run_allocs_by_order"`
}

type PressureReport struct {
	DirectReclaim  uint64 `json:"direct_reclaim"`
	MemcgReclaim   uint64 `json:"memcg_reclaim"`
	OOMVictims     uint64 `json:"oom_victims"`
	ExceedBufLimit uint64 `json:"sock_exceed_buf_limit"`
	SwapIn         uint64 `json:"swap_in_pages"`  // /proc/vmstat pswpin
	SwapOut        uint64 `json:"swap_out_pages"` // /proc/vmstat pswpout
}

// kernel is the probes' account of the run, or nil without probes.
func (r *Recorder) kernel(res *runner.Result, syms *ksym.Table) *Kernel {
	idle, peak := sample(r.samples, runner.PhaseIdle), sample(r.samples, runner.PhaseExchange)
	if r.probes == nil || idle == nil || peak == nil || idle.Probe == nil || peak.Probe == nil {
		return nil
	}
	a, b := idle.Probe, peak.Probe
	k := &Kernel{
		Backend: r.probes.Backend(), Attachments: r.probes.Attachments(), Caches: map[string]CacheReport{},
		TCPSendmsg: SendmsgReport{
			Calls: b.SendmsgCalls - a.SendmsgCalls, BytesAsked: b.SendmsgBytes - a.SendmsgBytes,
			RunCalls: b.RunSendmsgCalls - a.RunSendmsgCalls, RunBytesAsked: b.RunSendmsgBytes - a.RunSendmsgBytes,
		},
		Pages: PagesReport{
			AllocsByOrder: sub(b.PageAllocs, a.PageAllocs), FreesByOrder: sub(b.PageFrees, a.PageFrees),
			RunAllocsByOrder: sub(b.RunPageAllocs, a.RunPageAllocs),
		},
		Pressure: PressureReport{
			DirectReclaim: b.DirectReclaim - a.DirectReclaim, MemcgReclaim: b.MemcgReclaim - a.MemcgReclaim,
			OOMVictims: b.OOMVictims - a.OOMVictims, ExceedBufLimit: b.ExceedBufLimit - a.ExceedBufLimit,
			SwapIn: peak.Vmstat["pswpin"] - idle.Vmstat["pswpin"], SwapOut: peak.Vmstat["pswpout"] - idle.Vmstat["pswpout"],
		},
		ConnectLatencyUs: sub(b.ConnectLatencyLog2us, a.ConnectLatencyLog2us),
		StackSamples:     b.StackSamples - a.StackSamples,
		StackCollisions:  b.StackCollisions - a.StackCollisions,
		StackSampleEvery: r.probes.SampleEvery(),
		Lost:             b.Lost,
		LostEvents:       b.Lost.Total(),
		Errors:           r.errs,
	}
	// With a census the slab hooks were detached there: the caches' counts
	// are the census's, per connection of the census.
	cb, cconns := b, res.Established
	if r.census != nil && r.census.Probe != nil {
		cb, cconns = r.census.Probe, r.census.Established
	}
	for i, c := range cb.Caches {
		c0 := a.Caches[i]
		cr := CacheReport{
			ObjectSize: c.ObjectSize, Allocs: c.Allocs - c0.Allocs, Frees: c.Frees - c0.Frees,
			RunAllocs: c.RunAllocs - c0.RunAllocs, Covers: c.Requested, Merged: c.Merged,
			RunSoftirqAllocs: c.RunSoftirqAllocs - c0.RunSoftirqAllocs,
		}
		cr.OtherAllocs = cr.Allocs - cr.RunAllocs
		cr.Live = int64(cr.Allocs) - int64(cr.Frees)
		cr.Bytes = cr.Live * int64(c.ObjectSize)
		if cconns > 0 {
			cr.BytesPerConnection = float64(cr.Bytes) / float64(cconns)
		}
		if idle.Slabinfo != nil && peak.Slabinfo != nil {
			cr.SlabinfoDelta = int64(peak.Slabinfo[c.Name].ActiveObjs) - int64(idle.Slabinfo[c.Name].ActiveObjs)
		}
		k.Caches[c.Name] = cr
	}
	k.Kmem = r.kmemReport(idle, peak, res.Established, k.Caches)
	if timed(b.Programs) && res.Established > 0 {
		k.ProbeCost = costPerConnection(b.Programs, res.Established)
	}
	probe := make([]uint64, len(r.peakSock))
	for i, s := range r.peakSock {
		probe[i] = s.Buffered()
	}
	if syms != nil {
		k.KmallocSites = kmallocSites(syms, r.sites)
	}
	k.SocketMemory.Probe = analysis.Distribute(probe)
	k.SocketMemory.SockDiag = analysis.Distribute(append([]uint64(nil), res.PeakSocketBuffered...))
	d := k.SocketMemory.SockDiag
	k.SocketMemory.P50, k.SocketMemory.P99, k.SocketMemory.Max = d.P50, d.P99, d.Max
	return k
}

type ProbeCost struct {
	NsPerConnection float64    `json:"ns_per_connection"`
	Hooks           []HookCost `json:"hooks"` // costliest first
}

type HookCost struct {
	Hook              string  `json:"hook"`
	Runs              uint64  `json:"runs"`
	RunsPerConnection float64 `json:"runs_per_connection"`
	NsPerRun          float64 `json:"ns_per_run"`
	NsPerConnection   float64 `json:"ns_per_connection"`
	RecursionMisses   uint64  `json:"recursion_misses"`
}

// timed says whether the kernel timed the programs: run times are zero
// unless BPF_ENABLE_STATS (--probe-cost) or kernel.bpf_stats_enabled held.
func timed(costs []bpf.Cost) bool {
	for _, c := range costs {
		if c.Runtime > 0 {
			return true
		}
	}
	return false
}

func costPerConnection(costs []bpf.Cost, conns uint64) *ProbeCost {
	pc := &ProbeCost{}
	n := float64(conns)
	for _, c := range costs {
		h := HookCost{Hook: c.Hook, Runs: c.Runs, RunsPerConnection: float64(c.Runs) / n,
			NsPerConnection: float64(c.Runtime.Nanoseconds()) / n, RecursionMisses: c.RecursionMisses}
		if c.Runs > 0 {
			h.NsPerRun = float64(c.Runtime.Nanoseconds()) / float64(c.Runs)
		}
		pc.NsPerConnection += h.NsPerConnection
		pc.Hooks = append(pc.Hooks, h)
	}
	sort.Slice(pc.Hooks, func(i, j int) bool { return pc.Hooks[i].NsPerConnection > pc.Hooks[j].NsPerConnection })
	return pc
}

func sub(b, a []uint64) []uint64 {
	out := make([]uint64, len(b))
	for i := range b {
		if i < len(a) {
			out[i] = b[i] - a[i]
		}
	}
	return out
}

// TopCaches lists the cache names by bytes, largest first.
func (k *Kernel) TopCaches() []string {
	var names []string
	for n := range k.Caches {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return k.Caches[names[i]].Bytes > k.Caches[names[j]].Bytes })
	return names
}

// kmallocSites names the heaviest call sites; they add up across the
// offsets of one function.
func kmallocSites(t *ksym.Table, sites []bpf.KmallocSite) []KmallocSite {
	if len(sites) == 0 {
		return nil
	}
	byFunc := map[string]*KmallocSite{}
	var out []KmallocSite
	for _, s := range sites {
		name := t.Name(s.CallSite)
		k := byFunc[name]
		if k == nil {
			k = &KmallocSite{Function: name}
			byFunc[name] = k
		}
		k.Calls += s.Calls
		k.Bytes += s.Bytes
	}
	for _, k := range byFunc {
		out = append(out, *k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Bytes > out[j].Bytes })
	return out[:min(len(out), maxKmallocSites)]
}
