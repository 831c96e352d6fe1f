package bpf

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"reflect"
	"sync"

	"runtime/debug"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
)

// Backend is a way to attach a program to a kernel hook.
type Backend string

const (
	Fentry        Backend = "fentry"
	Kprobe        Backend = "kprobe"
	RawTracepoint Backend = "raw_tracepoint"
	Tracepoint    Backend = "tracepoint"
)

// Backends in the order they are tried.
var Backends = []Backend{Fentry, Kprobe, RawTracepoint, Tracepoint}

// ParseBackend accepts a backend name, or "auto" for the first that attaches.
func ParseBackend(s string) (Backend, error) {
	if s == "" || s == "auto" {
		return "", nil
	}
	for _, b := range Backends {
		if string(b) == s || (b == RawTracepoint && s == "rawtp") {
			return b, nil
		}
	}
	return "", fmt.Errorf("unknown backend %q (want auto, fentry, kprobe, raw_tracepoint or tracepoint)", s)
}

// variant is one program for a hook on one backend.
type variant struct {
	backend Backend
	prog    string // program name in c10m.bpf.c
	target  string // function or tracepoint name
	group   string // tracepoint group
}

// hook is one measurement point and the programs that can serve it, in
// backend order. Slab, page and socket-state events exist only as
// tracepoints on every kernel, so they have raw and classic variants; the
// raw one gets typed arguments (the kmem_cache pointer among them).
type hook struct {
	name     string
	variants []variant
}

func rawAndTP(name, group, tp, rawProg, tpProg string) hook {
	return hook{name, []variant{
		{RawTracepoint, rawProg, tp, ""},
		{Tracepoint, tpProg, tp, group},
	}}
}

var hooks = []hook{
	{"tcp_sendmsg", []variant{
		{Fentry, "fentry_tcp_sendmsg", "tcp_sendmsg", ""},
		{Kprobe, "kprobe_tcp_sendmsg", "tcp_sendmsg", ""},
		// tcp:tcp_sendmsg_locked exists from Linux 6.11.
		{RawTracepoint, "rawtp_tcp_sendmsg_locked", "tcp_sendmsg_locked", ""},
		{Tracepoint, "tp_tcp_sendmsg_locked", "tcp_sendmsg_locked", "tcp"},
	}},
	rawAndTP("kmem_cache_alloc", "kmem", "kmem_cache_alloc", "rawtp_kmem_cache_alloc", "tp_kmem_cache_alloc"),
	rawAndTP("kmem_cache_free", "kmem", "kmem_cache_free", "rawtp_kmem_cache_free", "tp_kmem_cache_free"),
	rawAndTP("kmalloc", "kmem", "kmalloc", "rawtp_kmalloc", "tp_kmalloc"),
	// Only to tell the slab allocations made in softirq: with the slab hooks.
	// Exit before entry: a softirq that begins between the two attachments
	// would otherwise count as entered forever on its CPU, and every socket
	// allocated there after as "in softirq"; an exit without its entry is
	// ignored.
	rawAndTP("softirq_exit", "irq", "softirq_exit", "rawtp_softirq_exit", "tp_softirq_exit"),
	rawAndTP("softirq_entry", "irq", "softirq_entry", "rawtp_softirq_entry", "tp_softirq_entry"),
	rawAndTP("mm_page_alloc", "kmem", "mm_page_alloc", "rawtp_mm_page_alloc", "tp_mm_page_alloc"),
	rawAndTP("mm_page_free", "kmem", "mm_page_free", "rawtp_mm_page_free", "tp_mm_page_free"),
	rawAndTP("inet_sock_set_state", "sock", "inet_sock_set_state", "rawtp_inet_sock_set_state", "tp_inet_sock_set_state"),
	rawAndTP("sock_exceed_buf_limit", "sock", "sock_exceed_buf_limit", "rawtp_sock_exceed_buf_limit", "tp_sock_exceed_buf_limit"),
	rawAndTP("direct_reclaim", "vmscan", "mm_vmscan_direct_reclaim_begin", "rawtp_direct_reclaim", "tp_direct_reclaim"),
	rawAndTP("memcg_reclaim", "vmscan", "mm_vmscan_memcg_reclaim_begin", "rawtp_memcg_reclaim", "tp_memcg_reclaim"),
	rawAndTP("oom_mark_victim", "oom", "mark_victim", "rawtp_mark_victim", "tp_mark_victim"),
}

// Config says what to watch.
type Config struct {
	Backend  Backend // "" for the first that attaches
	Conns    int     // sizes the per-socket map: two sockets a connection
	Inflight int     // connects pending at once: sizes the map of connects in flight
	RunPort  uint16  // the run's server port; its sockets are the run's
	// The plan's client ends: each connection's (source, port) is a slot
	// pair of the per-socket table.
	Sources        []netip.Addr
	PortLo         int // ip_local_port_range
	PortsPerSource int
	SampleEvery    uint32 // one allocation stack in this many (default: sized by Conns)
	Caches         []string
	// RunDir, when set, is where a tracefs mount Open makes is recorded,
	// so that RestoreTracefs undoes it after a SIGKILL.
	RunDir string
	// AutoSources: Sources are the runner's automatic ones, 127.1.0.1
	// upward, whose index the probes compute from the address.
	AutoSources bool
	// NoKmem leaves the slab hooks (kmemHooks) unattached: --kmem off.
	NoKmem bool
	// KmemConns are the connections the slab hooks will see, when a census
	// detaches them early: stack sampling is sized by them.
	KmemConns int
}

// kmemHooks are the slab hooks: ~50 events a connection, the probes' largest
// cost, which a census detaches once it has counted enough connections.
var kmemHooks = map[string]bool{"kmem_cache_alloc": true, "kmem_cache_free": true, "kmalloc": true, "softirq_entry": true, "softirq_exit": true}

// stackSamplesWanted is enough allocation stacks for a flamegraph whose
// frames of 0.1 % are seen; more only cost the run.
const stackSamplesWanted = 16384

// sampleEvery spaces stack samples so that a run of conns connections
// takes about stackSamplesWanted: a kernel stack walk is the dearest thing
// a probe does (docs/probes.md), and a fixed one in 64 of a connection's
// ~37 slab and page allocations cost as much as everything else.
func sampleEvery(conns int) uint32 {
	const allocsPerConn = 37
	every := uint32(16)
	for every < 1<<16 && uint64(conns)*allocsPerConn/uint64(every) > stackSamplesWanted {
		every *= 2
	}
	return every
}

// socketSlots sizes the per-socket table, a power of two: every slot of the
// plan, two a (source, port), where that is at most twice the four slots a
// connection (two sockets) that keep a hashed table half empty; else those,
// and the plan's slots wrap around it.
func socketSlots(cfg Config) uint32 {
	pow2 := func(n uint64) uint32 {
		p := uint64(1 << 16)
		for p < 1<<31 && p < n {
			p *= 2
		}
		return uint32(p)
	}
	least := pow2(4 * uint64(max(1, cfg.Conns)))
	plan := uint64(len(cfg.Sources)) * uint64(max(1, cfg.PortsPerSource)) * 2
	if plan <= 2*uint64(least) {
		return max(least, pow2(plan))
	}
	return least
}

// SampleEvery is the stack sampling period: one allocation in this many.
func (p *Probes) SampleEvery() uint32 { return p.sampleEvery }

// Attachment is how one hook was attached, or why each backend failed.
type Attachment struct {
	Hook     string            `json:"hook"`
	Backend  Backend           `json:"backend,omitempty"`
	Failures map[string]string `json:"failures,omitempty"` // backend → error
}

// Probes are the loaded and attached programs and their maps.
type Probes struct {
	maps        probesMaps
	links       []link.Link
	progs       []*ebpf.Program
	progHooks   []string  // the hook each of progs serves
	stats       io.Closer // held while the kernel times programs
	attachments []Attachment
	caches      []WatchedCache
	mountedFS   bool
	runDir      string
	btfCache    *btf.Cache
	cpu         *cpuSampler
	spec        *ebpf.CollectionSpec // as sized and set for the run
	sampleEvery uint32
	gen         uint64 // run_gen: bumped on every AddPID
	closeOnce   sync.Once
}

// sizeSpec sets the programs' constants and sizes the maps for the run.
func sizeSpec(spec *ebpf.CollectionSpec, cfg Config) error {
	if err := spec.Variables["run_port"].Set(cfg.RunPort); err != nil {
		return fmt.Errorf("setting run_port: %w", err)
	}
	if err := spec.Variables["sample_every"].Set(cfg.SampleEvery); err != nil {
		return fmt.Errorf("setting sample_every: %w", err)
	}
	slots := socketSlots(cfg)
	spec.Maps["sockets"].MaxEntries = slots
	// A stack map is a hash table without chaining: a stack whose bucket
	// another holds is dropped, each time it is sampled. Four times the
	// ~16k samples a run takes keeps those drops to a percent or so (at
	// as many buckets as samples they were a few percent: docs/measurements.md, "Figures behind the code").
	spec.Maps["stacks"].MaxEntries = 4 * stackSamplesWanted
	spec.Maps["run_sources"].MaxEntries = uint32(max(1, len(cfg.Sources)))
	// Room for every connect in flight twice over: a failed one leaves at
	// its CLOSE, and its sock may be reused before then.
	spec.Maps["connecting"].MaxEntries = uint32(max(1<<16, 2*cfg.Inflight))
	auto := uint32(0)
	if cfg.AutoSources {
		auto = uint32(len(cfg.Sources))
	}
	for name, v := range map[string]uint32{"socket_mask": slots - 1, "port_lo": uint32(cfg.PortLo), "ports_per_source": uint32(max(1, cfg.PortsPerSource)), "auto_sources": auto} {
		if err := spec.Variables[name].Set(v); err != nil {
			return fmt.Errorf("setting %s: %w", name, err)
		}
	}
	return nil
}

// Open loads the maps, then for each hook loads and attaches its first
// program that works, in backend order (or the forced backend's).
func Open(cfg Config) (*Probes, error) {
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("removing the memlock limit: %w", err)
	}
	spec, err := loadProbes()
	if err != nil {
		return nil, fmt.Errorf("loading the eBPF spec: %w", err)
	}
	if cfg.SampleEvery == 0 {
		cfg.SampleEvery = sampleEvery(cfg.Conns)
		if cfg.KmemConns > 0 {
			cfg.SampleEvery = sampleEvery(cfg.KmemConns)
		}
	}
	if err := sizeSpec(spec, cfg); err != nil {
		return nil, err
	}

	// One decoded kernel BTF for every program's CO-RE relocations.
	p := &Probes{btfCache: btf.NewCache(), spec: spec, sampleEvery: cfg.SampleEvery, runDir: cfg.RunDir}
	if err := spec.LoadAndAssign(&p.maps, nil); err != nil {
		return nil, fmt.Errorf("creating maps: %w", err)
	}
	for i, a := range cfg.Sources {
		if !a.Is4() {
			p.Close()
			return nil, fmt.Errorf("source address %s is not IPv4", a)
		}
		// The kernel's __be32, read back as a little- or big-endian
		// uint32 alike: the key is the address's four bytes.
		if err := p.maps.RunSources.Put(a.As4(), uint32(i)); err != nil {
			p.Close()
			return nil, fmt.Errorf("filling the source map: %w", err)
		}
	}
	watched, err := ResolveCaches(cfg.Caches)
	if err != nil {
		p.Close()
		return nil, err
	}
	if err := p.setCaches(watched); err != nil {
		p.Close()
		return nil, err
	}
	for _, h := range hooks {
		if cfg.NoKmem && kmemHooks[h.name] {
			continue
		}
		if err := p.attach(spec, h, cfg.Backend); err != nil {
			p.Close()
			return nil, err
		}
	}
	// CO-RE relocation decoded the kernel's BTF (tens of MB); nothing needs
	// it once every program is loaded, and it would count as the runner's memory.
	p.btfCache = nil
	debug.FreeOSMemory()
	return p, nil
}

func (p *Probes) setCaches(watched []WatchedCache) error {
	if len(watched) > maxCaches {
		return fmt.Errorf("too many caches to watch: %d", len(watched))
	}
	p.caches = watched
	for i, c := range watched {
		var name probesCacheName
		for j := 0; j < len(c.Name) && j < len(name.Name)-1; j++ {
			name.Name[j] = int8(c.Name[j])
		}
		if err := p.maps.CacheByName.Put(name, uint32(i)); err != nil {
			return fmt.Errorf("writing watched cache %s: %w", c.Name, err)
		}
	}
	return nil
}

// Attachments says how each hook is attached.
func (p *Probes) Attachments() []Attachment { return p.attachments }

// Backend names the backend that serves tcp_sendmsg, and so the run.
func (p *Probes) Backend() Backend {
	for _, a := range p.attachments {
		if a.Hook == "tcp_sendmsg" {
			return a.Backend
		}
	}
	return ""
}

// AddPID counts a process as part of the run, running image.
func (p *Probes) AddPID(pid int, image Image) error {
	if err := p.maps.RunPids.Put(uint32(pid), uint8(image)); err != nil {
		return fmt.Errorf("adding pid %d to the run: %w", pid, err)
	}
	// Invalidate every CPU's cached answer (in_run in c10m.bpf.c).
	p.gen++
	if err := p.maps.RunGen.Put(uint32(0), p.gen); err != nil {
		return fmt.Errorf("adding pid %d to the run: %w", pid, err)
	}
	return nil
}

// DetachKmem detaches the slab hooks. Their programs stay loaded, so the
// kernel's timing of them (--probe-cost) and their maps stay readable.
func (p *Probes) DetachKmem() error {
	var errs []error
	for i, h := range p.progHooks {
		if kmemHooks[h] && p.links[i] != nil {
			errs = append(errs, p.links[i].Close())
			p.links[i] = nil
		}
	}
	return errors.Join(errs...)
}

// Close detaches and frees everything, and unmounts tracefs if Open mounted it.
func (p *Probes) Close() error {
	var errs []error
	p.closeOnce.Do(func() {
		p.StopCPU()
		if p.stats != nil {
			errs = append(errs, p.stats.Close())
		}
		for _, l := range p.links {
			if l != nil {
				errs = append(errs, l.Close())
			}
		}
		for _, prog := range p.progs {
			errs = append(errs, prog.Close())
		}
		errs = append(errs, p.maps.Close())
		if p.mountedFS {
			errs = append(errs, p.unmountTracefs())
		}
	})
	return errors.Join(errs...)
}

// byName lists every map by its name in c10m.bpf.c, read from the
// generated struct's tags, so that each program loaded on its own shares
// them all and a new map cannot be left out.
func (m *probesMaps) byName() map[string]*ebpf.Map {
	out := map[string]*ebpf.Map{}
	v := reflect.ValueOf(m).Elem()
	for i := range v.NumField() {
		if mp, ok := v.Field(i).Interface().(*ebpf.Map); ok {
			out[v.Type().Field(i).Tag.Get("ebpf")] = mp
		}
	}
	return out
}
