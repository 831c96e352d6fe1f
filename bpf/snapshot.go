package bpf

import (
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/cilium/ebpf"
)

// CacheCount is one watched kmem_cache's counts since the probes attached.
type CacheCount struct {
	WatchedCache
	Allocs    uint64 `json:"allocs"`
	Frees     uint64 `json:"frees"`
	RunAllocs uint64 `json:"run_allocs"` // by the run's processes
	RunFrees  uint64 `json:"run_frees"`
	// RunSoftirqAllocs are the RunAllocs made in a softirq served on a run
	// process's time: on loopback the server's end is made in the client's.
	RunSoftirqAllocs uint64 `json:"run_softirq_allocs"`
}

// Live is allocations less frees: objects added since the probes attached.
func (c CacheCount) Live() int64 { return int64(c.Allocs) - int64(c.Frees) }

// Snapshot is every in-kernel counter at one moment, summed over CPUs.
type Snapshot struct {
	Time                 time.Time    `json:"time"`
	Caches               []CacheCount `json:"caches"`
	SendmsgCalls         uint64       `json:"sendmsg_calls"`
	SendmsgBytes         uint64       `json:"sendmsg_bytes"`
	RunSendmsgCalls      uint64       `json:"run_sendmsg_calls"`
	RunSendmsgBytes      uint64       `json:"run_sendmsg_bytes"`
	PageAllocs           []uint64     `json:"page_allocs_by_order"`
	PageFrees            []uint64     `json:"page_frees_by_order"`
	RunPageAllocs        []uint64     `json:"run_page_allocs_by_order"`
	StateTo              []uint64     `json:"transitions_to_state"`    // indexed by TCP state
	ConnectLatencyLog2us []uint64     `json:"connect_latency_log2_us"` // slot k: [2^(k-1), 2^k) µs
	DirectReclaim        uint64       `json:"direct_reclaim"`
	MemcgReclaim         uint64       `json:"memcg_reclaim"`
	OOMVictims           uint64       `json:"oom_victims"`
	ExceedBufLimit       uint64       `json:"sock_exceed_buf_limit"`
	KmallocCalls         uint64       `json:"run_kmalloc_calls"`
	KmallocBytes         uint64       `json:"run_kmalloc_bytes"`
	StackSamples         uint64       `json:"stack_samples"`
	// StackCollisions are samples dropped because their stack hashed to a
	// stack-map bucket another stack holds: sampling error in the
	// flamegraph, not a lost event.
	StackCollisions uint64 `json:"stack_collisions"`
	Lost            Lost   `json:"lost"`
	Programs        []Cost `json:"programs"` // each attached program, in attach order
}

// Lost counts what the maps could not hold; never dropped silently.
type Lost struct {
	Sockets uint64 `json:"sockets"` // the per-socket map was full
	Stacks  uint64 `json:"stacks"`  // allocation sample map full, or no stack to read
	// CPUSamples are CPU samples the sample map had no room for.
	CPUSamples uint64 `json:"cpu_samples"`
	Kmalloc    uint64 `json:"kmalloc_sites"`
	Caches     uint64 `json:"cache_pointers"`
	// Recursion is events the kernel did not hand to a program because
	// that program was already running on the CPU: an interrupt landed in
	// it and its softirq (RCU callbacks, skb frees) fired the same
	// tracepoint. The kernel counts these per program whether or not run
	// times are enabled (bpf_prog_inc_misses_counter, Linux 5.12).
	Recursion       uint64            `json:"recursion"`
	RecursionByHook map[string]uint64 `json:"recursion_by_hook,omitempty"`
}

// Total is every loss.
func (l Lost) Total() uint64 { return l.MapsFull() + l.Recursion + l.Stacks + l.CPUSamples }

// MapsFull is what a map had no room for: a map sized too small, never
// acceptable. Recursion misses change counts too, but by a few in a million
// events; a lost stack only thins the flamegraph's sample.
func (l Lost) MapsFull() uint64 { return l.Sockets + l.Kmalloc + l.Caches }

// Snapshot reads every counter.
func (p *Probes) Snapshot() (*Snapshot, error) {
	s := &Snapshot{Time: time.Now()}
	var percpu []probesCounters
	if err := p.maps.Totals.Lookup(uint32(0), &percpu); err != nil {
		return nil, fmt.Errorf("reading counters: %w", err)
	}
	var c probesCounters
	for _, v := range percpu {
		c.SendmsgCalls += v.SendmsgCalls
		c.SendmsgBytes += v.SendmsgBytes
		c.RunSendmsgCalls += v.RunSendmsgCalls
		c.RunSendmsgBytes += v.RunSendmsgBytes
		addAll(c.PageAllocs[:], v.PageAllocs[:])
		addAll(c.PageFrees[:], v.PageFrees[:])
		addAll(c.RunPageAllocs[:], v.RunPageAllocs[:])
		addAll(c.StateTo[:], v.StateTo[:])
		addAll(c.ConnectLatency[:], v.ConnectLatency[:])
		c.DirectReclaim += v.DirectReclaim
		c.MemcgReclaim += v.MemcgReclaim
		c.OomVictims += v.OomVictims
		c.ExceedBufLimit += v.ExceedBufLimit
		c.KmallocCalls += v.KmallocCalls
		c.KmallocBytes += v.KmallocBytes
		c.LostSockets += v.LostSockets
		c.LostStacks += v.LostStacks
		c.LostKmalloc += v.LostKmalloc
		c.LostCaches += v.LostCaches
		c.LostCpuSamples += v.LostCpuSamples
		c.StackSamples += v.StackSamples
		c.StackCollisions += v.StackCollisions
	}
	s.SendmsgCalls, s.SendmsgBytes = c.SendmsgCalls, c.SendmsgBytes
	s.RunSendmsgCalls, s.RunSendmsgBytes = c.RunSendmsgCalls, c.RunSendmsgBytes
	s.PageAllocs = append([]uint64(nil), c.PageAllocs[:]...)
	s.PageFrees = append([]uint64(nil), c.PageFrees[:]...)
	s.RunPageAllocs = append([]uint64(nil), c.RunPageAllocs[:]...)
	s.StateTo = append([]uint64(nil), c.StateTo[:]...)
	s.ConnectLatencyLog2us = append([]uint64(nil), c.ConnectLatency[:]...)
	s.DirectReclaim, s.MemcgReclaim, s.OOMVictims, s.ExceedBufLimit = c.DirectReclaim, c.MemcgReclaim, c.OomVictims, c.ExceedBufLimit
	s.KmallocCalls, s.KmallocBytes, s.StackSamples = c.KmallocCalls, c.KmallocBytes, c.StackSamples
	s.StackCollisions = c.StackCollisions
	s.Lost = Lost{Sockets: c.LostSockets, Stacks: c.LostStacks, Kmalloc: c.LostKmalloc, Caches: c.LostCaches, CPUSamples: c.LostCpuSamples}
	// One read of each program's kernel stats serves both the programs'
	// cost and the events the kernel skipped.
	for i, prog := range p.progs {
		st, err := prog.Stats()
		if err != nil {
			return nil, fmt.Errorf("reading the %s program's stats: %w", p.progHooks[i], err)
		}
		s.Programs = append(s.Programs, Cost{Hook: p.progHooks[i], Runs: st.RunCount, Runtime: st.Runtime, RecursionMisses: st.RecursionMisses})
		if st.RecursionMisses > 0 {
			if s.Lost.RecursionByHook == nil {
				s.Lost.RecursionByHook = map[string]uint64{}
			}
			s.Lost.RecursionByHook[p.progHooks[i]] += st.RecursionMisses
			s.Lost.Recursion += st.RecursionMisses
		}
	}

	for i, w := range p.caches {
		var per []probesCacheStats
		if err := p.maps.CacheTotals.Lookup(uint32(i), &per); err != nil {
			return nil, fmt.Errorf("reading cache %s: %w", w.Name, err)
		}
		cc := CacheCount{WatchedCache: w}
		for _, v := range per {
			cc.Allocs += v.Allocs
			cc.Frees += v.Frees
			cc.RunAllocs += v.RunAllocs
			cc.RunFrees += v.RunFrees
			cc.RunSoftirqAllocs += v.RunSoftirqAllocs
		}
		s.Caches = append(s.Caches, cc)
	}
	return s, nil
}

func addAll(dst, src []uint64) {
	for i := range dst {
		dst[i] += src[i]
	}
}

// SocketMem is one live socket of the run as the probes last saw it.
type SocketMem struct {
	BytesSent  uint64
	Sends      uint32
	WmemQueued uint32
	FwdAlloc   int32
	RmemAlloc  uint32
}

// Buffered is the buffer memory the socket held at its last send.
func (s SocketMem) Buffered() uint64 {
	return uint64(s.WmemQueued) + uint64(max(0, s.FwdAlloc)) + uint64(s.RmemAlloc)
}

// tombstone marks a slot a closed socket left (TOMBSTONE in c10m.bpf.c).
const tombstone = 1

// Sockets returns every live socket of the run that the map holds.
func (p *Probes) Sockets() ([]SocketMem, error) {
	var out []SocketMem
	keys := make([]uint32, 4096)
	vals := make([]probesSockMem, 4096)
	var cursor ebpf.MapBatchCursor
	for {
		n, err := p.maps.Sockets.BatchLookup(&cursor, keys, vals, nil)
		for _, v := range vals[:n] {
			if v.Sk > tombstone {
				out = append(out, SocketMem{BytesSent: v.BytesSent, Sends: v.Sends, WmemQueued: v.WmemQueued, FwdAlloc: v.FwdAlloc, RmemAlloc: v.RmemAlloc})
			}
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading the socket map: %w", err)
		}
	}
}

// Stack is one sampled allocation stack, weighted in bytes.
type Stack struct {
	Frames []uint64 // kernel addresses, innermost first
	Cache  string   // the slab cache; "" for a page allocation
	Order  int      // a page allocation's order
	Bytes  uint64
}

// What names what was allocated: the cache, or pages of an order.
func (s Stack) What() string {
	if s.Cache != "" {
		return s.Cache
	}
	return fmt.Sprintf("pages order %d", s.Order)
}

// AllocStacks returns the sampled kernel stacks of the run's slab and page
// allocations, heaviest first.
func (p *Probes) AllocStacks() ([]Stack, error) {
	var out []Stack
	var key probesStackKey
	var bytes uint64
	it := p.maps.AllocStacks.Iterate()
	for it.Next(&key, &bytes) {
		frames, err := p.stackFrames(key.StackId)
		if err != nil {
			continue // evicted since: counted as lost by the kernel side
		}
		st := Stack{Frames: frames, Bytes: bytes}
		if key.Cache < uint32(len(p.caches)) {
			st.Cache = p.caches[key.Cache].Name
		} else {
			st.Order = int(key.Cache - pageCacheBase)
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Bytes > out[j].Bytes })
	return out, it.Err()
}

// pageCacheBase matches PAGE_CACHE_BASE in c10m.bpf.c.
const pageCacheBase = 64

func (p *Probes) stackFrames(id int32) ([]uint64, error) {
	f := p.frames(p.maps.Stacks, id)
	if f == nil {
		return nil, fmt.Errorf("stack %d is gone", id)
	}
	return f, nil
}

// KmallocSite is kmalloc traffic from one call site, by the run's processes.
type KmallocSite struct {
	CallSite uint64
	Calls    uint64
	Bytes    uint64
}

// KmallocSites returns the run's kmalloc call sites, heaviest first.
func (p *Probes) KmallocSites() ([]KmallocSite, error) {
	var out []KmallocSite
	var site uint64
	var v probesSiteStats
	it := p.maps.KmallocSites.Iterate()
	for it.Next(&site, &v) {
		out = append(out, KmallocSite{CallSite: site, Calls: v.Calls, Bytes: v.Bytes})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Bytes > out[j].Bytes })
	return out, it.Err()
}

// Caches returns the watched caches.
func (p *Probes) Caches() []WatchedCache { return p.caches }
